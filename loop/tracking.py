"""Weights & Biases logging: every journal scalar, per-region maps, artifacts; offline default."""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluators import RegionResult


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The numeric, non-bool top-level entries of a journal record."""
    return {
        k: float(v)
        for k, v in record.items()
        if isinstance(v, numbers.Real) and not isinstance(v, bool)
    }


def region_grid(results: Sequence[RegionResult], bins: int, dims: int) -> np.ndarray:
    """Mean return per region as a `bins x bins` array (first dim rows), for 1 or 2 dims."""
    values = np.array([r.mean_return for r in results], dtype=float)
    return values.reshape(bins, bins) if dims == 2 else values.reshape(1, bins)


def region_figure(results: Sequence[RegionResult], dim_names: Sequence[str], bins: int) -> Any:
    """A heatmap of mean return per region over the region dims (unit-cube axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = region_grid(results, bins, len(dim_names))
    fig, ax = plt.subplots(figsize=(4, 3.4))
    extent = (0.0, 1.0, 0.0, 1.0)
    im = ax.imshow(grid.T if len(dim_names) == 2 else grid, origin="lower", extent=extent)
    ax.set_xlabel(f"{dim_names[0]} (unit)")
    ax.set_ylabel(f"{dim_names[1]} (unit)" if len(dim_names) == 2 else "")
    fig.colorbar(im, ax=ax, label="mean return")
    fig.tight_layout()
    return fig


def posterior_figure(mean: np.ndarray, std: np.ndarray, dim_names: Sequence[str]) -> Any:
    """Side-by-side heatmaps of a GP's posterior mean and std over one or two unit axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    extent = (0.0, 1.0, 0.0, 1.0)
    for ax, grid, label in ((axes[0], mean, "posterior mean"), (axes[1], std, "posterior std")):
        im = ax.imshow(grid.T if len(dim_names) == 2 else grid, origin="lower", extent=extent)
        ax.set_xlabel(f"{dim_names[0]} (unit)")
        ax.set_ylabel(f"{dim_names[1]} (unit)" if len(dim_names) == 2 else "")
        fig.colorbar(im, ax=ax, label=label)
    fig.tight_layout()
    return fig


class Tracker:
    """One W&B run per autocurriculum run; a resumed run continues the same W&B run id."""

    def __init__(
        self,
        mode: str,
        project: str,
        entity: str | None,
        group: str | None,
        name: str,
        run_dir: Path,
        run_id: str,
        config: Mapping[str, Any],
    ) -> None:
        self.run = None
        if mode == "disabled":
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        self._wandb = wandb
        self.run = wandb.init(
            project=project,
            entity=entity,
            group=group,
            name=name,
            id=run_id,
            dir=str(run_dir),
            mode=mode,
            config=dict(config),
            resume="allow",
        )

    def log(self, record: Mapping[str, Any], step: int) -> None:
        """Log every scalar of a journal record at `step`."""
        if self.run is not None:
            self.run.log(scalars(record), step=step)

    def log_regions(
        self, results: Sequence[RegionResult], dim_names: Sequence[str], bins: int, step: int
    ) -> None:
        """The per-region table and heatmap."""
        if self.run is None:
            return
        import matplotlib.pyplot as plt

        columns = ["index", "label", "mean_return", "error", "stderr", "episodes", "unstable"]
        table = self._wandb.Table(
            columns=columns, data=[[getattr(r, c) for c in columns] for r in results]
        )
        fig = region_figure(results, dim_names, bins)
        self.run.log({"regions/table": table, "regions/map": self._wandb.Image(fig)}, step=step)
        plt.close(fig)

    def log_proposals(
        self, rows: Sequence[Mapping[str, Any]], names: Sequence[str], step: int
    ) -> None:
        """The iteration's proposals as a table: fidelity, weight, learning signal and the
        proposed theta in physical units (empty for box-only proposals)."""
        if self.run is None:
            return
        columns = ["fidelity", "weight", "explore", "signal", *names]
        data = [[r["fidelity"], r["weight"], r["explore"], r["signal"], *r["theta"]] for r in rows]
        self.run.log(
            {"controller/proposals": self._wandb.Table(columns=columns, data=data)}, step=step
        )

    def log_posterior(
        self, mean: np.ndarray, std: np.ndarray, dim_names: Sequence[str], step: int
    ) -> None:
        """Heatmaps of the controller's GP posterior (mean and std of its learning signal)
        over the region dims, at the target fidelity and the latest time."""
        if self.run is None:
            return
        import matplotlib.pyplot as plt

        fig = posterior_figure(mean, std, dim_names)
        self.run.log({"controller/posterior": self._wandb.Image(fig)}, step=step)
        plt.close(fig)

    def log_artifact(self, path: Path, name: str, kind: str) -> None:
        """Upload (offline: stage) a file or directory as a versioned artifact."""
        if self.run is None:
            return
        artifact = self._wandb.Artifact(name, type=kind)
        if path.is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def finish(self, summary: Mapping[str, Any]) -> None:
        if self.run is None:
            return
        for key, value in scalars(summary).items():
            self.run.summary[key] = value
        self.run.summary["status"] = summary.get("status")
        self.run.finish()
