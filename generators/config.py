"""Config schemas owned by the generators: parameter-space overrides and the reality proxy."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ParamOverride:
    """Overrides of one generator parameter's range (unset fields keep the family's)."""

    low: float | None = None
    high: float | None = None
    nominal: float | None = None
    scale: str | None = None
    """`linear` or `log`."""
    levels: int | None = None
    """Cells random draws snap to (0: continuous); the families set it on lengths."""


@dataclass
class RealityConfig:
    """The held-out system standing in for the real world."""

    env: str = "gymnasium/InvertedPendulum-v5"
    """Reality proxy name (see `generators.REALITIES`)."""
    params: dict[str, float] = field(default_factory=dict)
    """Hidden changes, same names and semantics as the generator's parameters."""
    deadzone: float = 0.0
    """Unmodeled actuator deadzone, as a fraction of the control range."""
    episodes: int = 20
    """Real-proxy episodes per evaluation (a budgeted, scarce resource)."""
