"""Config schemas of evaluation (`eval`) and the oracle (`oracle`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    """Per-region evaluation on high-fidelity sim and the real-proxy cadence."""

    region_dims: list[str] = field(default_factory=list)
    """Parameters whose grid makes the regions; empty: the family's first two."""
    region_bins: int = 2
    """Cells per region dimension."""
    episodes_per_region: int = 4
    """Evaluation episodes per region and evaluation."""
    fidelity: str = "fine"
    """Fidelity of the per-region evaluation."""
    real_every: int = 1
    """Evaluate on the reality proxy every this many iterations (and always at the end)."""
    deploy: str = "best"
    """Policy sent to the reality proxy: `best` (highest mean region return on sim so far, a
    validation choice that uses no real data; once a controller has identified the real
    system, the highest mean sim return on the identified thetas) or `last` (the latest
    iterate)."""

    def validate(self) -> None:
        """Raise `ValueError("<field>: reason")` on values that cannot work."""
        if self.deploy not in ("best", "last"):
            raise ValueError(f"deploy: must be best or last (got {self.deploy!r})")
        for name in ("region_bins", "episodes_per_region", "real_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0 (got {getattr(self, name)})")


@dataclass
class OracleConfig:
    """How the transfer ratio's denominator is obtained."""

    env_steps: int = 200_000
    """Env steps to train the oracle on the reality proxy (once per reality config)."""
    cache_dir: str = "~/.cache/autocurriculum/oracles"
    """Where trained oracles are kept and reused across runs."""
    eval_episodes: int = 20
    """Real-proxy episodes that measure the oracle's return (not charged to the run)."""
    checkpoints: int = 4
    """The oracle's training is measured on the proxy after each of this many equal parts and
    the best policy is kept: PPO on one system can regress late, and the denominator of the
    transfer ratio should be the best the oracle's training found (1: the last policy)."""
    reference_return: float | None = None
    """A known reference return (e.g. of a physical system's controller): skips the oracle."""

    def validate(self) -> None:
        """Raise `ValueError("<field>: reason")` on values that cannot work."""
        for name in ("env_steps", "eval_episodes", "checkpoints"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0 (got {getattr(self, name)})")
        if self.checkpoints > self.env_steps:
            raise ValueError(
                f"checkpoints: must be <= env_steps ({self.checkpoints} > {self.env_steps})"
            )
        if self.reference_return is not None and not math.isfinite(self.reference_return):
            raise ValueError(f"reference_return: must be finite (got {self.reference_return})")
