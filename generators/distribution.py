"""The learner's task distribution: weighted boxes in the unit cube plus a fidelity.

It is plain data (floats, lists, a string) so it pickles to Ray workers, goes into the journal
as JSON, and means the same thing in every process that holds the same :class:`ParamSpace`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from generators.families import FIDELITIES
from generators.space import ParamSpace, Region

Component = tuple[float, list[float], list[float]]


@dataclass
class TaskDistribution:
    """A mixture of uniform boxes in the unit cube, from which each episode's theta is drawn.

    A point is a box with ``low == high``. Weights need not sum to one; they are normalized
    when sampling.

    Attributes:
        components: ``(weight, low, high)`` triples; ``low`` and ``high`` have length ``d``
            (the space's dimension) and satisfy ``0 <= low <= high <= 1``.
        fidelity: How the episodes are simulated, one of :data:`FIDELITIES`.

    Raises:
        ValueError: On negative or non-finite weights, a zero total weight, inconsistent
            dimensions, boxes outside the unit cube or an unknown fidelity.
    """

    components: list[Component]
    fidelity: str = "fine"
    _probs: np.ndarray = field(init=False, repr=False, compare=False)
    _boxes: list[tuple[np.ndarray, np.ndarray] | None] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.fidelity not in FIDELITIES:
            raise ValueError(
                f"fidelity: unknown fidelity {self.fidelity!r} (known: {', '.join(FIDELITIES)})"
            )
        if not self.components:
            raise ValueError("components: need at least one component")
        normalized: list[Component] = []
        dim = None
        for i, component in enumerate(self.components):
            try:
                weight, low, high = component
            except (TypeError, ValueError):
                raise ValueError(
                    f"components[{i}]: expected (weight, low, high), got {component!r}"
                ) from None
            weight = float(weight)
            lo = np.asarray(low, dtype=float).reshape(-1)
            hi = np.asarray(high, dtype=float).reshape(-1)
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"components[{i}]: weight must be finite and >= 0 ({weight})")
            if lo.shape != hi.shape:
                raise ValueError(f"components[{i}]: low has {lo.size} dims, high has {hi.size}")
            if dim is None:
                dim = lo.size
            elif lo.size != dim:
                raise ValueError(f"components[{i}]: has {lo.size} dims, components[0] has {dim}")
            if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
                raise ValueError(f"components[{i}]: bounds must be finite")
            if np.any(lo > hi) or np.any(lo < 0.0) or np.any(hi > 1.0):
                raise ValueError(f"components[{i}]: need 0 <= low <= high <= 1")
            normalized.append((weight, lo.tolist(), hi.tolist()))
        total = sum(w for w, _, _ in normalized)
        if total <= 0:
            raise ValueError("components: weights must have a positive sum")
        self.components = normalized
        self._probs = np.array([w / total for w, _, _ in normalized])
        # Low corner and widths for drawing (None for a point, which draws no randomness).
        self._boxes = [
            None if lo == hi else (np.array(lo), np.array(hi) - np.array(lo))
            for _, lo, hi in normalized
        ]

    @property
    def dim(self) -> int:
        """Dimension of the unit cube the components live in."""
        return len(self.components[0][1])

    @classmethod
    def point(
        cls, space: ParamSpace, theta: Mapping[str, float] | None = None, fidelity: str = "fine"
    ) -> TaskDistribution:
        """Put every episode at one theta (missing names -> nominal; ``None`` -> nominal)."""
        theta = space.complete(theta)
        outside = [
            f"{p.name}={theta[p.name]} not in [{p.low}, {p.high}]"
            for p in space
            if not p.low <= theta[p.name] <= p.high
        ]
        if outside:
            raise ValueError(
                f"theta lies outside the parameter space ({'; '.join(outside)}); "
                "widen it with ParamSpace.with_overrides"
            )
        u = np.clip(space.to_unit(theta), 0.0, 1.0).tolist()
        return cls([(1.0, u, u)], fidelity)

    @classmethod
    def uniform(cls, space: ParamSpace, fidelity: str = "fine") -> TaskDistribution:
        """Spread episodes uniformly over the unit cube (uniform domain randomization)."""
        return cls([(1.0, [0.0] * space.dim, [1.0] * space.dim)], fidelity)

    @classmethod
    def mixture(
        cls,
        items: Sequence[Region | Sequence[float] | Sequence[Sequence[float]] | np.ndarray],
        weights: Sequence[float] | None = None,
        fidelity: str = "fine",
    ) -> TaskDistribution:
        """Build a weighted mixture of regions, boxes and points in the unit cube.

        Args:
            items: Each a :class:`Region`, a ``(low, high)`` pair (array shape ``(2, d)``) or a
                point (shape ``(d,)``), all in unit-cube coordinates.
            weights: One non-negative weight per item; ``None`` means equal weights.
            fidelity: Simulation fidelity of the episodes.
        """
        if weights is None:
            weights = [1.0] * len(items)
        if len(weights) != len(items):
            raise ValueError(f"got {len(items)} items but {len(weights)} weights")
        components: list[Component] = []
        for i, (item, weight) in enumerate(zip(items, weights, strict=True)):
            if isinstance(item, Region):
                low, high = item.low, item.high
            else:
                arr = np.asarray(item, dtype=float)
                if arr.ndim == 1:
                    low = high = arr
                elif arr.ndim == 2 and arr.shape[0] == 2:
                    low, high = arr
                else:
                    raise ValueError(
                        f"items[{i}]: expected a Region, a point (d,) or a box (2, d), "
                        f"got shape {arr.shape}"
                    )
            components.append((float(weight), list(low), list(high)))
        return cls(components, fidelity)

    def with_fidelity(self, fidelity: str) -> TaskDistribution:
        """Return the same boxes at another fidelity."""
        return TaskDistribution(list(self.components), fidelity)

    def sample_unit(self, rng: np.random.Generator) -> np.ndarray:
        """Draw one unit-cube point, shape ``(d,)``: a component by weight, then uniformly.

        A single component is not drawn and a point is not jittered, so a point distribution
        consumes no randomness (its env's reset noise then matches the reference env's).
        """
        return self.draw_unit(rng)[0]

    def draw_unit(self, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        """A unit-cube point and whether it came from a box (rather than a point).

        :meth:`sample` without the map to theta: a batched env maps many draws at once
        (``ParamSpace.snap`` on the box draws, then ``ParamSpace.from_unit_array``).
        """
        k = 0 if len(self.components) == 1 else int(rng.choice(len(self.components), p=self._probs))
        box = self._boxes[k]
        if box is None:
            return np.array(self.components[k][1]), False
        low, width = box
        # What rng.uniform(low, high) computes, bit for bit, without its broadcasting cost.
        return low + width * rng.random(low.size), True

    def sample(self, space: ParamSpace, rng: np.random.Generator) -> dict[str, float]:
        """Draw one theta for ``space`` (whose dimension must match).

        A draw from a box snaps parameters with ``levels`` to their cell centres
        (:meth:`ParamSpace.snap`); a point is kept as it is.
        """
        self.check_space(space)
        u, box = self.draw_unit(rng)
        return space.from_unit(space.snap(u) if box else u)

    def check_space(self, space: ParamSpace) -> None:
        """Raise ``ValueError`` unless the distribution lives in ``space``'s unit cube."""
        if space.dim != self.dim:
            raise ValueError(
                f"task distribution has {self.dim} dims, parameter space has {space.dim} "
                f"({', '.join(space.names)})"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON data: ``{"components": [[w, low, high], ...], "fidelity": f}``."""
        return {
            "components": [[w, list(lo), list(hi)] for w, lo, hi in self.components],
            "fidelity": self.fidelity,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskDistribution:
        """Inverse of :meth:`to_dict`."""
        unknown = set(d) - {"components", "fidelity"}
        if unknown:
            raise ValueError(f"unknown task distribution keys: {', '.join(sorted(unknown))}")
        return cls([tuple(c) for c in d["components"]], d.get("fidelity", "fine"))
