"""`autocurriculum compare`: every controller method with every seed, tables at the end.

Per method the mean and a bootstrap interval of each metric; each method against the
baseline (`compare.baseline`), paired by seed, with the tests of `loop.stats`.

Each (method, seed) is an ordinary run under `<run.dir>/<method>-s<seed>/`, so a comparison
that was killed picks up where it was: finished runs are reused, an interrupted one resumes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from loop.config import Config, derive
from loop.journal import jsonable
from loop.runner import BUDGET_EXHAUSTED, COMPLETED, Loop
from loop.stats import CONFIDENCE, mean_interval, paired_test

FINISHED = (COMPLETED, BUDGET_EXHAUSTED)


TESTED = ("real_return", "transfer_ratio")
"""Summary keys each method is tested on against the baseline."""


def _aggregate(values: list[float | None]) -> dict[str, Any]:
    xs = np.array([v for v in values if v is not None], dtype=float)
    if xs.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "ci": None}
    std = float(xs.std(ddof=1)) if xs.size > 1 else 0.0
    return {
        "mean": float(xs.mean()),
        "std": std,
        "min": float(xs.min()),
        "max": float(xs.max()),
        "ci": mean_interval(xs),
    }


def _by_seed(runs: list[dict[str, Any]], method: str, key: str) -> dict[int, float]:
    return {
        r["seed"]: float(r[key]) for r in runs if r["method"] == method and r.get(key) is not None
    }


def _tests(runs: list[dict[str, Any]], methods: list[str], baseline: str) -> dict[str, Any]:
    """Each method against the baseline, paired by seed (`loop.stats.paired_test`)."""
    return {
        m: {
            key: paired_test(_by_seed(runs, m, key), _by_seed(runs, baseline, key))
            for key in TESTED
        }
        for m in methods
        if m != baseline
    }


def compare(cfg: Config, resolved: DictConfig, console: Console) -> dict[str, Any]:
    """Run (or reuse) every method x seed; write `<run.dir>/compare.json` and return it."""
    base = cfg.run_dir()
    runs: list[dict[str, Any]] = []
    for method in cfg.compare.methods:
        for seed in cfg.compare.seeds:
            run_dir = base / f"{method}-s{seed}"
            summary_path = run_dir / "summary.json"
            summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
            if summary is None or summary.get("status") not in FINISHED:
                console.rule(f"{method}, seed {seed}")
                sub_cfg, sub_resolved = derive(
                    resolved,
                    [
                        f"controller.method={method}",
                        f"seed={seed}",
                        f"run.dir={run_dir}",
                        f"name={cfg.name}-{method}-s{seed}",
                        f"wandb.group={cfg.name}",
                    ],
                )
                resume = (run_dir / "run.json").is_file()
                summary = Loop(sub_cfg, sub_resolved, console).run(resume=resume)
            runs.append({"method": method, "seed": seed, "run_dir": str(run_dir), **summary})
    methods = {
        m: {
            key: _aggregate([r.get(key) for r in runs if r["method"] == m])
            for key in ("transfer_ratio", "real_return", "wall_s")
        }
        for m in cfg.compare.methods
    }
    baseline = cfg.compare.baseline_method()
    result = {
        "name": cfg.name,
        "task": cfg.task,
        "methods": methods,
        "baseline": baseline,
        "tests": _tests(runs, list(cfg.compare.methods), baseline),
        "runs": runs,
    }
    _write(base / "compare.json", result)
    console.print(_table(result, cfg))
    if result["tests"]:
        console.print(_tests_table(result))
    return result


def _table(result: dict[str, Any], cfg: Config) -> Table:
    table = Table(title=f"{cfg.name}: transfer ratio on {cfg.reality.env}")
    table.add_column("method")
    table.add_column("transfer ratio (mean ± std)", justify="right")
    table.add_column("per seed", justify="right")
    table.add_column("real return (mean)", justify="right")
    table.add_column(f"{CONFIDENCE:.0%} CI", justify="right")
    for method, stats in result["methods"].items():
        tr = stats["transfer_ratio"]
        per_seed = [
            "-" if r.get("transfer_ratio") is None else f"{r['transfer_ratio']:.2f}"
            for r in result["runs"]
            if r["method"] == method
        ]
        table.add_row(
            method,
            "-" if tr["mean"] is None else f"{tr['mean']:.3f} ± {tr['std']:.3f}",
            " ".join(per_seed),
            "-" if stats["real_return"]["mean"] is None else f"{stats['real_return']['mean']:.1f}",
            _interval(stats["real_return"]["ci"]),
        )
    return table


def _interval(ci: tuple[float, float] | list[float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:.1f}, {ci[1]:.1f}]"


def _tests_table(result: dict[str, Any]) -> Table:
    table = Table(
        title=f"real return against {result['baseline']}, paired by seed",
        caption="W/L/T: seeds won, lost, tied; P(X>Y): probability of improvement",
    )
    table.add_column("method")
    for name in ("diff", f"{CONFIDENCE:.0%} CI", "W/L/T", "Wilcoxon p", "P(X>Y)"):
        table.add_column(name, justify="right", no_wrap=True)
    for method, tests in result["tests"].items():
        t = tests["real_return"]
        table.add_row(
            method,
            "-" if t["mean_difference"] is None else f"{t['mean_difference']:+.1f}",
            _interval(t["difference_ci"]),
            f"{t['wins']}/{t['losses']}/{t['ties']}",
            "-" if t["wilcoxon_p"] is None else f"{t['wilcoxon_p']:.3f}",
            "-"
            if t["probability_of_improvement"] is None
            else f"{t['probability_of_improvement']:.2f}",
        )
    return table


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(data), indent=2, allow_nan=False))
    os.replace(tmp, path)
