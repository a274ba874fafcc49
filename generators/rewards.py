"""Smooth reward shaping in numpy, as in dm_control's ``dm_control.utils.rewards``.

dm_control's suite rewards are products of soft indicators: :func:`tolerance` is 1 inside a
target interval and falls off smoothly outside it, reaching ``value_at_margin`` at distance
``margin``. Reimplemented here so that families do not import dm_control's Python runtime
(which is tied to a MuJoCo version).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

DEFAULT_VALUE_AT_MARGIN = 0.1
SIGMOIDS = (
    "gaussian",
    "hyperbolic",
    "long_tail",
    "reciprocal",
    "cosine",
    "linear",
    "quadratic",
    "tanh_squared",
)
_ZERO_ALLOWED = ("cosine", "linear", "quadratic")


def sigmoids(x: ArrayLike, value_at_1: float, kind: str) -> np.ndarray:
    """Return a bump that is 1 at ``x == 0``, ``value_at_1`` at ``|x| == 1``, in ``[0, 1]``.

    Args:
        x: Distance(s) in units of the margin (``x >= 0`` in :func:`tolerance`).
        value_at_1: Output at ``|x| == 1``; in ``(0, 1)``, or ``[0, 1)`` for the
            ``cosine``, ``linear`` and ``quadratic`` kinds, which reach 0 at finite ``x``.
        kind: One of :data:`SIGMOIDS`.

    Raises:
        ValueError: For an unknown kind or a ``value_at_1`` out of range.
    """
    if kind not in SIGMOIDS:
        raise ValueError(f"unknown sigmoid {kind!r} (known: {', '.join(SIGMOIDS)})")
    low_ok = value_at_1 >= 0 if kind in _ZERO_ALLOWED else value_at_1 > 0
    if not (low_ok and value_at_1 < 1):
        bound = "[0, 1)" if kind in _ZERO_ALLOWED else "(0, 1)"
        raise ValueError(f"value_at_1: must be in {bound} for {kind!r} (got {value_at_1})")
    x = np.asarray(x, dtype=np.float64)
    if kind == "gaussian":
        scale = math.sqrt(-2.0 * math.log(value_at_1))
        return np.exp(-0.5 * (x * scale) ** 2)
    if kind == "hyperbolic":
        return 1.0 / np.cosh(x * math.acosh(1.0 / value_at_1))
    if kind == "long_tail":
        return 1.0 / ((x * math.sqrt(1.0 / value_at_1 - 1.0)) ** 2 + 1.0)
    if kind == "reciprocal":
        return 1.0 / (np.abs(x) * (1.0 / value_at_1 - 1.0) + 1.0)
    if kind == "tanh_squared":
        return 1.0 - np.tanh(x * math.atanh(math.sqrt(1.0 - value_at_1))) ** 2
    # Compact-support kinds: 0 beyond |scaled x| >= 1.
    if kind == "cosine":
        scaled = x * math.acos(2.0 * value_at_1 - 1.0) / math.pi
        bump = (1.0 + np.cos(np.pi * np.clip(scaled, -1.0, 1.0))) / 2.0
    elif kind == "linear":
        scaled = x * (1.0 - value_at_1)
        bump = 1.0 - scaled
    else:  # quadratic
        scaled = x * math.sqrt(1.0 - value_at_1)
        bump = 1.0 - scaled**2
    return np.where(np.abs(scaled) < 1.0, bump, 0.0)


def tolerance(
    x: ArrayLike,
    bounds: tuple[float, float] = (0.0, 0.0),
    margin: float = 0.0,
    sigmoid: str = "gaussian",
    value_at_margin: float = DEFAULT_VALUE_AT_MARGIN,
) -> np.ndarray | float:
    """Return 1 where ``x`` lies in ``bounds``, decaying smoothly with distance outside.

    Args:
        x: A scalar or array.
        bounds: Inclusive ``(lower, upper)`` target interval (may be infinite or a point).
        margin: Distance from the nearest bound at which the output is ``value_at_margin``;
            0 makes the output a hard 0/1 indicator.
        sigmoid: Shape of the decay, one of :data:`SIGMOIDS`.
        value_at_margin: Output at distance ``margin`` (ignored when ``margin == 0``).

    Returns:
        A float for scalar ``x``, else an array of ``x``'s shape, with values in ``[0, 1]``.

    Raises:
        ValueError: If ``lower > upper`` or ``margin < 0``.
    """
    lower, upper = bounds
    if lower > upper:
        raise ValueError(f"bounds: lower must be <= upper (got {bounds})")
    if margin < 0:
        raise ValueError(f"margin: must be >= 0 (got {margin})")
    values = np.asarray(x, dtype=np.float64)
    in_bounds = (lower <= values) & (values <= upper)
    if margin == 0:
        out = np.where(in_bounds, 1.0, 0.0)
    else:
        distance = np.where(values < lower, lower - values, values - upper) / margin
        out = np.where(in_bounds, 1.0, sigmoids(distance, value_at_margin, sigmoid))
    return float(out) if np.ndim(x) == 0 else out
