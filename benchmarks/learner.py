"""Where a training env step's time goes: the simulation against the learner.

Usage: ``python benchmarks/learner.py [--quick] [--out PATH]``

Each case trains the RLlib learner (the loop's default `LearnerConfig`: PPO, sampling in the
driver process, 8 batched sub-envs) on uniform domain randomization, after a warm-up, each
case in a fresh child process. Cases: family, ``fidelities`` (``fine``, or ``coarse+fine``:
half the sub-envs each) and ``torch_threads`` (`LearnerConfig.torch_threads`: ``1``, the
default, or ``0``, torch's own choice of one thread per core); fine-only cases also run
with ``neighbour=busy``: another process spinning on one core, as another job on the host.

Metrics (per env step):

- ``train_step_s``: wall seconds of a training env step (sampling, simulation, PPO update).
- ``sim_step_s`` (and ``fidelity``): the simulation's share, as the batched envs measured it.
- ``learner_step_s``: the rest (`loop.scheduler.training_costs`), the same at every
  fidelity; what a cheaper fidelity cannot save.
- ``cpu_step_s``: process CPU seconds per env step (above ``train_step_s`` when threads spin).

``--quick`` trains fewer steps on ``inverted_pendulum`` only (< 3 min).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _report import write_results
from rich.console import Console
from rich.table import Table

DEFAULT_OUT = Path(__file__).parent / "results" / "learner.json"
ROOT = Path(__file__).resolve().parents[1]


def measure(family: str, fidelities: str, steps: int, threads: int) -> dict[str, Any]:
    """Train ``steps`` env steps after a warm-up; return the timings (run in the child)."""
    # Run as a script, this directory comes first on the path and its generators.py would
    # shadow the package.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    import ray
    import torch

    from generators import TaskDistribution, get_family
    from learners import LearnerConfig, RLlibLearner
    from loop.scheduler import training_costs

    fam = get_family(family)
    fine = TaskDistribution.uniform(fam.space, "fine")
    spec = {
        "kind": "family",
        "family": fam.name,
        "fidelity": "fine",
        "space": fam.space.to_dict(),
        "distribution": fine.to_dict(),
    }
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        learner = RLlibLearner(LearnerConfig(torch_threads=threads), spec, seed=0)
        if fidelities == "coarse+fine":
            coarse = TaskDistribution.uniform(fam.space, "coarse")
            learner.set_task_distributions([(coarse, 0.5), (fine, 0.5)])
        learner.train(4000)  # warm-up: compiled models, RLlib's first iteration
        cpu0 = time.process_time()
        stats = learner.train(steps)
        cpu = time.process_time() - cpu0
        sim = learner.sim_costs()
        by_fidelity = stats.env_steps_by_fidelity
        _, learner_s = training_costs(sim, by_fidelity, stats.train_s)
        learner.stop()
    finally:
        ray.shutdown()
    return {
        "torch_threads": torch.get_num_threads(),
        "train_step_s": stats.train_s / stats.env_steps,
        "sim_step_s": sim,
        "learner_step_s": learner_s,
        "cpu_step_s": cpu / stats.env_steps,
    }


def run(quick: bool) -> list[dict[str, Any]]:
    """Every case in its own child process; the records of all metrics."""
    families = ["inverted_pendulum"] if quick else ["inverted_pendulum", "cartpole_swingup"]
    steps = 6000 if quick else 16000
    cases = [
        (family, fidelities, threads, neighbour)
        for family in families
        for fidelities in ("fine", "coarse+fine")
        for threads in (1, 0)
        for neighbour in (("idle", "busy") if fidelities == "fine" else ("idle",))
    ]
    results: list[dict[str, Any]] = []
    for family, fidelities, threads, neighbour in cases:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        child = ["--child", family, fidelities, str(steps), str(threads)]
        # A busy neighbour: one process spinning on a core, as another job on the host.
        spin = [sys.executable, "-c", "while 1: pass"]
        busy = subprocess.Popen(spin) if neighbour == "busy" else None
        try:
            out = subprocess.run(
                [sys.executable, __file__, *child],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        m = json.loads(out.stdout.strip().splitlines()[-1])
        case = {
            "family": family,
            "fidelities": fidelities,
            "torch_threads": threads,
            "neighbour": neighbour,
        }
        rows = [(case, "train_step_s", m["train_step_s"])]
        rows += [
            ({**case, "fidelity": fid}, "sim_step_s", c)
            for fid, c in sorted(m["sim_step_s"].items())
        ]
        rows += [(case, "learner_step_s", m["learner_step_s"])]
        rows += [(case, "cpu_step_s", m["cpu_step_s"])]
        results += [{"case": c, "metric": k, "value": v, "unit": "s/env_step"} for c, k, v in rows]
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    """Print the results as a rich table (microseconds)."""
    table = Table(title="benchmark: learner (us per env step)")
    for column in ("metric", "case", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for r in results:
        case = ", ".join(f"{k}={v}" for k, v in r["case"].items())
        table.add_row(r["metric"], case, f"{r['value'] * 1e6:,.1f}")
    Console(width=120).print(table)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, write the JSON and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, inverted_pendulum")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    parser.add_argument("--child", nargs=4, metavar=("FAMILY", "FIDELITIES", "STEPS", "THREADS"))
    args = parser.parse_args(argv)
    if args.child:
        family, fidelities, steps, threads = args.child
        print(json.dumps(measure(family, fidelities, int(steps), int(threads))))
        return 0
    start = time.perf_counter()
    write_results("learner", run(args.quick), args.out, start, print_table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
