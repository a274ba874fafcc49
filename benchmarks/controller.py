"""Benchmark the multi-fidelity BO core (`loop.mfbo.MultiFidelityBO`).

Metrics (JSON rows ``{"case", "metric", "value", "unit"}``):

* ``cost_to_regret`` (case: problem, method, target regret, seeds, reached): total cost spent
  until the simple regret of the recommended point (posterior-mean maximizer at the target
  fidelity, evaluated at fidelity 1 without charging) first falls below the target, averaged
  over the seeds that reached it; ``null`` when no seed reached it within the budget.
  Problems: BoTorch's ``AugmentedBranin`` (2-d + fidelity) and ``AugmentedHartmann``
  (6-d + fidelity), maximized (negated). Three fidelities ``z in {0, 0.5, 1}`` evaluate the
  problem at fidelity ``0.5 + 0.5 z`` and cost ``1 + 9 z`` (affine, the cheapest a tenth of
  the target). Methods: ``multi_fidelity`` (MF-MES over the three fidelities) and
  ``top_fidelity`` (the same optimizer, MES, restricted to the target fidelity).
* ``final_regret`` (case: problem, method): mean simple regret when the budget is spent.
* ``propose_s`` (case: n_obs, dims, fit): wall seconds of one ``propose(q=4)`` with three
  fidelities; ``fit="warm"`` is the loop's steady state (the GP warm-started from the
  previous round after 4 new observations), ``fit="cold"`` the first propose of a process.
  ``load_avg_1m`` in the case records how busy the machine was.
* ``propose_cpu_s`` (same cases): CPU seconds of that propose (torch runs on one thread while
  proposing, so this approximates the wall time on a quiet machine).

* ``propose_share`` (case: config, run, iterations): share of an iteration's wall time the
  `bo` controller's ``propose`` took in a real loop run (journal ``controller/propose_share``;
  mean and max over the GP iterations, the initial design excluded). Measured on the runs
  given with ``--runs`` (e.g. a comparison's ``bo-s*`` directories), otherwise (full mode) by
  running ``configs/default.yaml`` with ``controller.method=bo`` for 4 iterations.

Usage: ``python benchmarks/controller.py [--quick] [--runs RUN_DIR ...] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from botorch.test_functions.multi_fidelity import AugmentedBranin, AugmentedHartmann
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loop.mfbo import MFBOSettings, MultiFidelityBO

FIDELITY_Z = (0.0, 0.5, 1.0)
"""Optimizer fidelity values (cheapest first)."""


def cost_of(z: float) -> float:
    """Cost of one evaluation at optimizer fidelity ``z``: fixed 1 + 9 z."""
    return 1.0 + 9.0 * z


class Problem:
    """A BoTorch multi-fidelity test function seen from the unit cube, maximized."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.fn = {"branin": AugmentedBranin, "hartmann": AugmentedHartmann}[name](negate=True)
        self.bounds = self.fn.bounds.to(torch.float64)
        self.dim = self.fn.dim - 1
        self.optimum = float(self.fn.optimal_value)

    def __call__(self, x: np.ndarray, z: float) -> float:
        u = torch.as_tensor(x, dtype=torch.float64)
        lo, hi = self.bounds[0, :-1], self.bounds[1, :-1]
        point = torch.cat([lo + (hi - lo) * u, torch.tensor([0.5 + 0.5 * z], dtype=torch.float64)])
        return float(self.fn(point.unsqueeze(0)))  # negated, noise-free

    def regret(self, x: np.ndarray) -> float:
        return max(self.optimum - self(x, 1.0), 0.0)


def run_bo(
    problem: Problem, method: str, seed: int, budget: float, q: int = 4
) -> list[tuple[float, float]]:
    """One BO run; returns ``(cumulative cost, simple regret)`` after each round."""
    zs = FIDELITY_Z if method == "multi_fidelity" else (1.0,)
    names = [f"z{z}" for z in zs]
    opt = MultiFidelityBO(problem.dim, names, seed=seed, settings=MFBOSettings(drift=False))
    spent, trace = 0.0, []
    while spent < budget:
        props = opt.propose(q, budget_remaining=budget - spent)
        ys = [problem(x, zs[k]) for x, k in props]
        costs = [cost_of(zs[k]) for _, k in props]
        opt.observe([x for x, _ in props], [k for _, k in props], ys, costs)
        spent += sum(costs)
        trace.append((spent, problem.regret(opt.recommend())))
    return trace


def cost_to(trace: list[tuple[float, float]], target: float, budget: float) -> float:
    """First cumulative cost at which the regret is below ``target`` (inf if not in budget)."""
    return next((c for c, r in trace if r < target and c <= budget), math.inf)


def time_propose(n_obs: int, dims: int, seed: int = 0) -> dict[str, float]:
    """Wall seconds of one q=4 propose at ``n_obs`` observations (cold and warm fit)."""
    rng = np.random.default_rng(seed)
    opt = MultiFidelityBO(dims, ["low", "mid", "high"], seed=seed)
    centre = rng.random(dims)

    def observe(n: int) -> None:
        x = rng.random((n, dims))
        k = rng.integers(0, 3, n)
        y = np.exp(-3 * ((x - centre) ** 2).sum(1)) + 0.05 * (2 - k) * x[:, 0]
        opt.observe(x, k, y + 0.01 * rng.standard_normal(n), [cost_of(FIDELITY_Z[i]) for i in k])

    def timed() -> tuple[float, float]:
        cpu = time.process_time()
        opt.propose(4)
        return opt.diagnostics["propose_s"], time.process_time() - cpu

    for _ in range(n_obs // 4):
        observe(4)
    cold, cold_cpu = timed()
    observe(4)
    warm, warm_cpu = timed()
    return {"cold": cold, "warm": warm, "cold_cpu": cold_cpu, "warm_cpu": warm_cpu}


def propose_shares(run_dir: Path) -> dict[str, Any]:
    """``controller/propose_share`` of a loop run's GP iterations, read from its journal."""
    records = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    shares = [
        r["controller/propose_share"]
        for r in records
        if r.get("controller/diagnostics", {}).get("acquisition") not in (None, "sobol")
    ]
    config = OmegaConf.load(run_dir / "config.yaml").name
    return {"config": config, "run": run_dir.name, "iterations": len(shares), "shares": shares}


def run_default_bo(iterations: int) -> Path:
    """Run the default config with the `bo` controller (the main job's budget per iteration)."""
    root = Path(__file__).resolve().parents[1]
    run_dir = Path(tempfile.mkdtemp(prefix="propose-share-")) / "bo"
    cmd = [
        sys.executable,
        "-m",
        "loop.cli",
        "run",
        "configs/default.yaml",
        "controller.method=bo",
        f"budget.iterations={iterations}",
        f"run.dir={run_dir}",
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few seeds, small budgets (< 2 min)")
    parser.add_argument("--out", default="benchmarks/results/controller.json")
    parser.add_argument(
        "--runs", nargs="*", default=None, help="bo run directories to read propose_share from"
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # BoTorch's optimizer warnings; the numbers speak

    if args.quick:
        seeds = [0, 1]
        cases = {"branin": (120.0, [1.0, 0.2]), "hartmann": (160.0, [1.0, 0.5])}
        timing = [(50, 6), (200, 8)]
    else:
        seeds = [0, 1, 2]
        cases = {"branin": (400.0, [1.0, 0.1]), "hartmann": (600.0, [0.5, 0.2])}
        timing = [(50, 6), (50, 8), (200, 6), (200, 8)]

    results: list[dict[str, Any]] = []
    for n_obs, dims in timing:
        t = time_propose(n_obs, dims)
        load = round(os.getloadavg()[0], 2)
        for fit in ("warm", "cold"):
            case = {"n_obs": n_obs, "dims": dims, "fit": fit, "load_avg_1m": load}
            results.append({"case": case, "metric": "propose_s", "value": t[fit], "unit": "s"})
            results.append(
                {"case": case, "metric": "propose_cpu_s", "value": t[f"{fit}_cpu"], "unit": "s"}
            )

    for name, (budget, targets) in cases.items():
        problem = Problem(name)
        for method in ("multi_fidelity", "top_fidelity"):
            traces = [run_bo(problem, method, seed, budget) for seed in seeds]
            for target in targets:
                costs = [cost_to(tr, target, budget) for tr in traces]
                reached = [c for c in costs if math.isfinite(c)]
                results.append(
                    {
                        "case": {
                            "problem": name,
                            "method": method,
                            "target_regret": target,
                            "budget": budget,
                            "seeds": len(seeds),
                            "reached": len(reached),
                        },
                        "metric": "cost_to_regret",
                        "value": float(np.mean(reached)) if reached else None,
                        "unit": "cost",
                    }
                )
            results.append(
                {
                    "case": {"problem": name, "method": method, "budget": budget},
                    "metric": "final_regret",
                    "value": float(np.mean([tr[-1][1] for tr in traces])),
                    "unit": "regret",
                }
            )

    runs = [Path(r) for r in args.runs] if args.runs else []
    if not runs and not args.quick:
        runs = [run_default_bo(4)]
    for run_dir in runs:
        got = propose_shares(run_dir)
        case = {k: got[k] for k in ("config", "run", "iterations")}
        for stat, fn in (("mean", np.mean), ("max", np.max)):
            if got["shares"]:
                results.append(
                    {
                        "case": {**case, "stat": stat},
                        "metric": "propose_share",
                        "value": float(fn(got["shares"])),
                        "unit": "fraction",
                    }
                )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "controller", "results": results}, indent=2) + "\n")

    table = Table(title=f"controller benchmark{' (quick)' if args.quick else ''}")
    for col in ("metric", "case", "value", "unit"):
        table.add_column(col)
    for r in results:
        v = r["value"]
        table.add_row(
            r["metric"],
            ", ".join(f"{k}={v}" for k, v in r["case"].items()),
            "never" if v is None else f"{v:.3g}",
            r["unit"],
        )
    Console().print(table)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
