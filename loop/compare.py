"""`autocurriculum compare`: every controller method with every seed, one table at the end.

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

FINISHED = (COMPLETED, BUDGET_EXHAUSTED)


def _aggregate(values: list[float | None]) -> dict[str, float | None]:
    xs = np.array([v for v in values if v is not None], dtype=float)
    if xs.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None}
    std = float(xs.std(ddof=1)) if xs.size > 1 else 0.0
    return {"mean": float(xs.mean()), "std": std, "min": float(xs.min()), "max": float(xs.max())}


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
    result = {"name": cfg.name, "task": cfg.task, "methods": methods, "runs": runs}
    _write(base / "compare.json", result)
    console.print(_table(result, cfg))
    return result


def _table(result: dict[str, Any], cfg: Config) -> Table:
    table = Table(title=f"{cfg.name}: transfer ratio on {cfg.reality.env}")
    table.add_column("method")
    table.add_column("transfer ratio (mean ± std)", justify="right")
    table.add_column("per seed", justify="right")
    table.add_column("real return (mean)", justify="right")
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
        )
    return table


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(data), indent=2, allow_nan=False))
    os.replace(tmp, path)
