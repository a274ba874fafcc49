"""`autocurriculum`: run, resume and evaluate closed-loop curriculum runs.

Config errors are found before Ray or torch is imported and reported as one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from loop.config import Config, ConfigError, derive, load_config

EXIT_CONFIG = 2

_EPILOG = """\
commands:
  run CONFIG [key=value ...]    start a run from a YAML config plus OmegaConf dotlist overrides
                                (e.g. controller.method=nominal budget.iterations=3 seed=1)
  resume RUN_DIR [key=value ...]  continue a killed or finished run from its last complete
                                iteration (overrides may extend budgets, e.g. budget.iterations=10)
  eval RUN_DIR [key=value ...]  evaluate the run's deployed policy on the reality proxy
                                (e.g. reality.episodes=50 reality.params.pole_mass=2.0;
                                eval.deploy=last: its latest iterate instead)
  compare CONFIG [key=value ...]  run every compare.methods x compare.seeds (default: nominal
                                and udr, seeds 0 1 2) under run.dir; reuses finished runs,
                                resumes interrupted ones; prints a table, writes compare.json

A run directory holds config.yaml, journal.jsonl, checkpoints/, summary.json and the W&B
files (offline unless wandb.mode=online). Exit codes: 0 ok, 1 run failed, 2 bad config.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autocurriculum",
        description="Self-improving closed-loop curriculum: RLlib learner, MuJoCo generators, "
        "curriculum controllers, transfer to a held-out reality proxy.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="start a run: train, evaluate, checkpoint, log",
        description="Start a run from CONFIG (YAML) with key=value overrides; it trains, "
        "evaluates on the reality proxy, writes the run directory and prints the transfer ratio.",
    )
    run.add_argument("config", help="YAML config, e.g. configs/default.yaml")
    run.add_argument("overrides", nargs="*", help="OmegaConf dotlist overrides key=value")
    resume = sub.add_parser(
        "resume",
        help="continue a run from its last complete iteration",
        description="Continue RUN_DIR from its last complete checkpoint; the journal continues "
        "with no missing or duplicate iteration. Overrides may extend its budgets.",
    )
    resume.add_argument("run_dir", help="a run directory written by `run`")
    resume.add_argument("overrides", nargs="*", help="OmegaConf dotlist overrides key=value")
    ev = sub.add_parser(
        "eval",
        help="evaluate a run's deployed policy on the reality proxy",
        description="Evaluate the policy RUN_DIR deployed at its latest checkpoint (with "
        "eval.deploy=last: the latest iterate) on the reality proxy (no Ray needed unless the "
        "oracle for a changed reality config must be trained); prints real return and "
        "transfer ratio and writes RUN_DIR/eval.json.",
    )
    ev.add_argument("run_dir", help="a run directory written by `run`")
    ev.add_argument("overrides", nargs="*", help="OmegaConf dotlist overrides key=value")
    cmp = sub.add_parser(
        "compare",
        help="run several controllers over several seeds and tabulate transfer ratios",
        description="Run CONFIG once per method in compare.methods and seed in compare.seeds "
        "(each a normal run under run.dir/<method>-s<seed>); finished runs are reused and "
        "interrupted ones resumed; prints transfer ratio per method and writes compare.json.",
    )
    cmp.add_argument("config", help="YAML config, e.g. configs/default.yaml")
    cmp.add_argument("overrides", nargs="*", help="OmegaConf dotlist overrides key=value")
    return parser


def _load(config: Path, overrides: Sequence[str], run_dir: Path | None = None):
    """Load a config; a new run without `run.dir` gets a fresh `runs/<name>-<time>` dir."""
    if run_dir is not None:
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError("run_dir", f"{run_dir} holds no config.yaml")
        return load_config(config, [*overrides, f"run.dir={run_dir}"])
    cfg, resolved = load_config(config, overrides)
    if cfg.run.dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        cfg, resolved = derive(resolved, [f"run.dir=runs/{cfg.name}-{stamp}"])
    return cfg, resolved


def _run(cfg: Config, resolved, resume: bool) -> int:
    from rich.console import Console

    from loop.runner import Loop

    console = Console()
    summary = Loop(cfg, resolved, console).run(resume=resume)
    _report(console, summary, cfg)
    return 0


def _report(console, summary: dict, cfg: Config) -> None:
    ratio = summary.get("transfer_ratio")
    steps = ", ".join(f"{k} {v:,}" for k, v in summary["env_steps"].items() if v)
    console.print(
        f"[bold]{summary['status']}[/]: {summary['iterations']} iterations, {steps} env steps, "
        f"{summary['real_episodes']} real episodes, {summary['wall_s']:.0f} s"
    )
    if summary.get("real_return") is not None:
        normalized = summary.get("transfer_ratio_normalized")
        ratio_text = "n/a (oracle return <= 0)" if ratio is None else f"{ratio:.3f}"
        norm_text = "n/a" if normalized is None else f"{normalized:.3f}"
        console.print(
            f"[bold]transfer ratio: {ratio_text}[/] (real return {summary['real_return']:.1f} / "
            f"oracle {summary['oracle_return']:.1f}); normalized by the do-nothing return "
            f"{summary['floor_return']:.1f}: {norm_text}"
        )
    console.print(f"run directory: {cfg.run_dir()}")


def _compare(cfg: Config, resolved) -> int:
    from rich.console import Console

    from loop.compare import compare

    compare(cfg, resolved, Console())
    print(f"written to {cfg.run_dir() / 'compare.json'}")
    return 0


def _eval(cfg: Config) -> int:
    from rich.console import Console

    from evaluators import OracleCache, normalized_transfer_ratio, oracle_key, transfer_ratio
    from learners import MLPPolicy
    from loop.checkpoint import Checkpoints, load_state
    from loop.journal import jsonable
    from loop.runner import (
        evaluate_real,
        floor_return,
        get_oracle,
        oracle_spec,
        start_ray,
    )

    console = Console()
    run_dir = cfg.run_dir()
    latest = Checkpoints(run_dir / "checkpoints").latest()
    if latest is None:
        console.print(f"{run_dir} has no checkpoint yet")
        return 1
    # `eval.deploy` picks the iterate: the one the run deployed, or the latest (which a
    # `best` run may not have deployed; comparing the two separates learning from selection).
    state = load_state(latest / "state.pt")
    if cfg.eval.deploy == "last":
        policy_file, iteration = "policy.pt", state["record"]["iteration"]
    else:
        policy_file = "deploy_policy.pt"
        iteration = (state["loop"].get("deployed") or state["record"])["iteration"]
    policy = MLPPolicy.load(latest / policy_file)
    stats = evaluate_real(policy, cfg, cfg.reality.episodes)
    floor = floor_return(cfg)
    if cfg.oracle.reference_return is not None:
        oracle_return = float(cfg.oracle.reference_return)
    else:
        record = OracleCache(cfg.oracle.cache_dir).get(oracle_key(oracle_spec(cfg)))
        if record is None:
            start_ray(cfg)
            record = get_oracle(cfg, console)
        oracle_return = record.real_return
    result = {
        "checkpoint": latest.name,
        "deploy": cfg.eval.deploy,
        "iteration": iteration,
        "reality": cfg.reality.env,
        "reality_params": dict(cfg.reality.params),
        "real_return": stats.mean,
        "real_return_stderr": stats.stderr,
        "real_episodes": stats.episodes,
        "unstable": stats.unstable,
        "oracle_return": oracle_return,
        "transfer_ratio": transfer_ratio(stats.mean, oracle_return) if oracle_return > 0 else None,
        "floor_return": floor,
        "transfer_ratio_normalized": (
            normalized_transfer_ratio(stats.mean, oracle_return, floor)
            if oracle_return > floor
            else None
        ),
    }
    normalized = result["transfer_ratio_normalized"]
    norm_text = "n/a" if normalized is None else f"{normalized:.3f}"
    (run_dir / "eval.json").write_text(json.dumps(jsonable(result), indent=2))
    console.print(
        f"[bold]normalized transfer ratio: {norm_text}[/] (iteration {iteration}'s policy, "
        f"eval.deploy={cfg.eval.deploy}: real return {stats.mean:.1f} ± {stats.stderr:.1f} "
        f"over {stats.episodes} episodes, oracle "
        f"{oracle_return:.1f}, do-nothing {floor:.1f}); written to {run_dir / 'eval.json'}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `autocurriculum` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            cfg, resolved = _load(Path(args.config), args.overrides)
            return _run(cfg, resolved, resume=False)
        if args.command == "compare":
            cfg, resolved = _load(Path(args.config), args.overrides)
            return _compare(cfg, resolved)
        run_dir = Path(args.run_dir)
        cfg, resolved = _load(run_dir / "config.yaml", args.overrides, run_dir)
        if args.command == "resume":
            return _run(cfg, resolved, resume=True)
        return _eval(cfg)
    except ConfigError as exc:
        print(f"autocurriculum: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("autocurriculum: interrupted; `autocurriculum resume` continues", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
