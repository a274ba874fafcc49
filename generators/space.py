"""Named, bounded generator parameters and their map to and from the unit cube.

The controller, the task distribution and the per-region maps all work in the unit cube
``[0, 1]^d``; the physics works in parameter units. :class:`ParamSpace` is the one place that
converts between the two, so a log-scale or integer parameter behaves the same everywhere.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

SCALES = ("linear", "log")
_OVERRIDABLE = ("low", "high", "nominal", "scale", "levels")


@dataclass(frozen=True)
class Param:
    """One generator parameter: bounds, nominal value and how it maps to ``[0, 1]``.

    Attributes:
        name: Parameter name, as used in configs and theta dicts.
        low: Lower bound (inclusive), in parameter units.
        high: Upper bound (inclusive), in parameter units.
        nominal: The reference value; missing theta entries take it.
        scale: ``"linear"`` or ``"log"``; log maps ``log(x)`` linearly to the unit interval,
            so a scale factor in ``[0.5, 2]`` puts its nominal 1.0 at the centre.
        integer: Whether values are whole numbers. The unit interval is split into
            ``high - low + 1`` equal bins, one per integer, so uniform sampling in the unit
            cube gives every integer the same probability and ``to_unit`` returns bin centres.
        levels: ``0`` (continuous) or the number of equal cells of the unit interval whose
            centres random draws of a task distribution snap to (:meth:`ParamSpace.snap`).
            Families set it on structural parameters (lengths): a model compiled once per
            cell is then rewritten in place per episode instead of compiling one per draw
            (:mod:`generators.models`).

    Raises:
        ValueError: On invalid fields; the message starts with the offending field name.
    """

    name: str
    low: float
    high: float
    nominal: float
    scale: str = "linear"
    integer: bool = False
    levels: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: must be a non-empty string (got {self.name!r})")
        for field in ("low", "high", "nominal"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"{field}: must be a number (got {value!r})")
            if not math.isfinite(value):
                raise ValueError(f"{field}: must be finite (got {value})")
            object.__setattr__(self, field, float(value))
        if not self.low < self.high:
            raise ValueError(f"low: must be < high ({self.low} >= {self.high})")
        if self.scale not in SCALES:
            raise ValueError(f"scale: must be 'linear' or 'log' (got {self.scale!r})")
        if self.scale == "log" and self.low <= 0:
            raise ValueError(f"low: must be > 0 for log scale (got {self.low})")
        if not self.low <= self.nominal <= self.high:
            raise ValueError(
                f"nominal: must be within [low, high] ({self.nominal} not in "
                f"[{self.low}, {self.high}])"
            )
        if isinstance(self.levels, bool) or not isinstance(self.levels, int | np.integer):
            raise ValueError(f"levels: must be a whole number (got {self.levels!r})")
        if self.levels < 0 or self.levels == 1:
            raise ValueError(f"levels: must be 0 (continuous) or >= 2 (got {self.levels})")
        if self.levels and self.integer:
            raise ValueError("levels: an integer parameter is discrete already")
        object.__setattr__(self, "levels", int(self.levels))
        if self.integer:
            for field in ("low", "high", "nominal"):
                value = getattr(self, field)
                if not float(value).is_integer():
                    raise ValueError(
                        f"{field}: must be a whole number for an integer parameter (got {value})"
                    )

    def _span(self) -> tuple[float, float]:
        """Return the interval mapped to ``[0, 1]``, in transformed (linear or log) units."""
        low, high = self.low, self.high
        if self.integer:
            low, high = low - 0.5, high + 0.5
        if self.scale == "log":
            return math.log(low), math.log(high)
        return low, high

    def to_unit(self, x: float) -> float:
        """Map a value in parameter units to the unit interval (not clipped).

        Values outside ``[low, high]`` map outside ``[0, 1]``, so callers can tell that a
        point (e.g. a reality parameter) lies outside the space.
        """
        a, b = self._span()
        if self.scale == "log":
            if x <= 0:
                raise ValueError(f"{self.name}: log-scale value must be > 0 (got {x})")
            return (math.log(x) - a) / (b - a)
        return (float(x) - a) / (b - a)

    def from_unit(self, u: float) -> float:
        """Map a unit-interval coordinate (clipped to ``[0, 1]``) to parameter units."""
        a, b = self._span()
        t = a + min(max(float(u), 0.0), 1.0) * (b - a)
        x = math.exp(t) if self.scale == "log" else t
        if self.integer:
            x = float(round(x))
        return min(max(x, self.low), self.high)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields other than ``name`` as plain JSON data."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}


@dataclass(frozen=True, eq=False)
class Region:
    """An axis-aligned cell of the unit cube, the unit of per-region maps.

    Attributes:
        index: Position of the cell in the partition that made it.
        low: Lower corner, shape ``(d,)``, unit-cube coordinates over all dims of the space.
        high: Upper corner, shape ``(d,)``.
        label: Human-readable cell name, e.g. ``"pole_mass[0/2],pole_length[1/2]"``.
    """

    index: int
    low: np.ndarray
    high: np.ndarray
    label: str

    def center(self) -> np.ndarray:
        """Return the cell centre, shape ``(d,)``."""
        return (self.low + self.high) / 2.0

    def contains(self, u: np.ndarray | Sequence[float]) -> bool:
        """Whether unit-cube point ``u`` lies in the cell.

        Cells are half-open ``[low, high)`` except on the upper face of the cube, so the
        cells of one partition never share a point and together cover ``[0, 1]^d``.
        """
        u = np.asarray(u, dtype=float)
        if u.shape != self.low.shape:
            raise ValueError(f"point has shape {u.shape}, region has {self.low.shape}")
        below_high = (u < self.high) | ((self.high >= 1.0) & (u <= self.high))
        return bool(np.all((u >= self.low) & below_high))

    def to_dict(self) -> dict[str, Any]:
        """Return the region as plain JSON data."""
        return {
            "index": self.index,
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Region:
        """Inverse of :meth:`to_dict`."""
        return cls(
            index=int(d["index"]),
            low=np.asarray(d["low"], dtype=float),
            high=np.asarray(d["high"], dtype=float),
            label=str(d["label"]),
        )


class ParamSpace:
    """An ordered set of :class:`Param` with maps to and from the unit cube.

    Args:
        params: The parameters; their order fixes the order of unit-cube coordinates.

    Raises:
        ValueError: If the space is empty or names repeat.
    """

    def __init__(self, params: Sequence[Param]) -> None:
        params = tuple(params)
        if not params:
            raise ValueError("a ParamSpace needs at least one parameter")
        names = [p.name for p in params]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate parameter names: {', '.join(dupes)}")
        self._params = params
        self._by_name = {p.name: p for p in params}
        self._levels = np.array([p.levels for p in params], dtype=float)
        self._snapped = np.flatnonzero(self._levels)
        # The maps' constants, precomputed: they run at every episode's draw.
        spans = np.array([p._span() for p in params])
        self._span_low, self._span_width = spans[:, 0], spans[:, 1] - spans[:, 0]
        self._log = np.array([p.scale == "log" for p in params])
        self._integer = np.array([p.integer for p in params])
        self._low = np.array([p.low for p in params], dtype=float)
        self._high = np.array([p.high for p in params], dtype=float)
        self._from_unit = tuple(
            (p.name, a, b - a, p.scale == "log", p.integer, p.low, p.high)
            for p, (a, b) in zip(params, spans.tolist(), strict=True)
        )

    @property
    def names(self) -> list[str]:
        """Parameter names in coordinate order."""
        return [p.name for p in self._params]

    @property
    def params(self) -> tuple[Param, ...]:
        """The parameters in coordinate order."""
        return self._params

    @property
    def dim(self) -> int:
        """Number of parameters (dimension of the unit cube)."""
        return len(self._params)

    def __getitem__(self, name: str) -> Param:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(self._unknown(name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._params)

    def __iter__(self) -> Iterator[Param]:
        return iter(self._params)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParamSpace):
            return NotImplemented
        return self._params == other._params

    def __hash__(self) -> int:
        return hash(self._params)

    def __repr__(self) -> str:
        return f"ParamSpace({list(self._params)!r})"

    def _unknown(self, name: str) -> str:
        return f"unknown parameter {name!r} (known: {', '.join(self.names)})"

    def nominal(self) -> dict[str, float]:
        """Return the nominal theta."""
        return {p.name: p.nominal for p in self._params}

    def complete(self, theta: Mapping[str, float] | None) -> dict[str, float]:
        """Return ``theta`` with every parameter present, in coordinate order.

        Missing names take their nominal value.

        Raises:
            ValueError: If ``theta`` names a parameter the space does not have.
        """
        theta = {} if theta is None else theta
        for name in theta:
            if name not in self._by_name:
                raise ValueError(self._unknown(name))
        return {p.name: float(theta.get(p.name, p.nominal)) for p in self._params}

    def to_unit(self, theta: Mapping[str, float]) -> np.ndarray:
        """Map theta (missing names -> nominal) to unit-cube coordinates, shape ``(d,)``."""
        full = self.complete(theta)
        return np.array([p.to_unit(full[p.name]) for p in self._params], dtype=float)

    def to_unit_array(self, values: np.ndarray) -> np.ndarray:
        """Map rows of full thetas in coordinate order, shape ``(n, d)``, to the unit cube.

        The vectorized :meth:`to_unit` for callers that keep thetas as arrays.
        """
        values = np.asarray(values, dtype=float)
        if values.ndim != 2 or values.shape[1] != self.dim:
            raise ValueError(f"values have shape {values.shape}, expected (n, {self.dim})")
        log = self._log
        if (values[:, log] <= 0).any():
            raise ValueError("log-scale values must be > 0")
        x = values.copy()
        x[:, log] = np.log(x[:, log])
        return (x - self._span_low) / self._span_width

    def snap(self, u: np.ndarray | Sequence[float]) -> np.ndarray:
        """Unit point(s) ``u`` (shape ``(d,)`` or ``(n, d)``) with every parameter that has
        ``levels`` moved to the centre of its cell; the others unchanged."""
        u = np.array(u, dtype=float)
        j = self._snapped
        if j.size:
            levels = self._levels[j]
            cell = np.minimum(np.floor(np.clip(u[..., j], 0.0, 1.0) * levels), levels - 1)
            u[..., j] = (cell + 0.5) / levels
        return u

    def from_unit(self, u: np.ndarray | Sequence[float]) -> dict[str, float]:
        """Map unit-cube coordinates, shape ``(d,)``, to theta (clipped to the bounds)."""
        u = np.asarray(u, dtype=float)
        if u.shape != (self.dim,):
            raise ValueError(f"unit point has shape {u.shape}, expected ({self.dim},)")
        theta = {}
        for (name, a, width, log, integer, low, high), ui in zip(
            self._from_unit, u.tolist(), strict=True
        ):  # Param.from_unit's arithmetic, inlined
            x = a + min(max(ui, 0.0), 1.0) * width
            if log:
                x = math.exp(x)
            if integer:
                x = float(round(x))
            theta[name] = min(max(x, low), high)
        return theta

    def from_unit_array(self, u: np.ndarray) -> np.ndarray:
        """Map rows of unit points, shape ``(n, d)``, to thetas in coordinate order.

        The vectorized :meth:`from_unit` (the same values bit for bit): a batched env draws
        every resetting sub-env's theta at once.
        """
        u = np.asarray(u, dtype=float)
        if u.ndim != 2 or u.shape[1] != self.dim:
            raise ValueError(f"unit points have shape {u.shape}, expected (n, {self.dim})")
        x = self._span_low + np.clip(u, 0.0, 1.0) * self._span_width
        for j in np.flatnonzero(self._log).tolist():  # math.exp, as from_unit: no 1-ulp drift
            x[:, j] = [math.exp(t) for t in x[:, j].tolist()]
        x[:, self._integer] = np.round(x[:, self._integer])  # half to even, as round()
        return np.minimum(np.maximum(x, self._low), self._high)

    def sample(self, rng: np.random.Generator, n: int) -> list[dict[str, float]]:
        """Draw ``n`` thetas uniformly in the unit cube (log params are log-uniform)."""
        if n < 0:
            raise ValueError(f"n must be >= 0 (got {n})")
        return [self.from_unit(u) for u in rng.random((n, self.dim))]

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> ParamSpace:
        """Return a copy with some fields of some parameters replaced.

        Args:
            overrides: ``{param: {field: value}}`` with fields among ``low``, ``high``,
                ``nominal``, ``scale``; ``None`` values are ignored (unset config keys).

        Raises:
            ValueError: For an unknown parameter or field, or an invalid result; the message
                starts with ``"<param>.<field>: "``.
        """
        params = dict(self._by_name)
        for name, changes in overrides.items():
            if name not in params:
                raise ValueError(self._unknown(name))
            if changes is None:
                continue
            if not isinstance(changes, Mapping):
                raise ValueError(f"{name}: override must be a mapping of fields (got {changes!r})")
            kwargs: dict[str, Any] = {}
            for field, value in changes.items():
                if field not in _OVERRIDABLE:
                    raise ValueError(
                        f"{name}.{field}: unknown field (allowed: {', '.join(_OVERRIDABLE)})"
                    )
                if value is not None:
                    kwargs[field] = value
            try:
                params[name] = replace(params[name], **kwargs)
            except ValueError as err:
                raise ValueError(f"{name}.{err}") from None
        return ParamSpace([params[n] for n in self.names])

    def regions(self, dims: Sequence[str], bins: int) -> list[Region]:
        """Partition the unit cube into a grid over ``dims``.

        Args:
            dims: Names of the partitioned parameters; the others span ``[0, 1]``.
            bins: Cells per partitioned dimension.

        Returns:
            ``bins ** len(dims)`` regions; the last of ``dims`` varies fastest. With no
            ``dims`` the single region is the whole cube, labelled ``"all"``.
        """
        if bins < 1:
            raise ValueError(f"bins must be >= 1 (got {bins})")
        if len(set(dims)) != len(dims):
            raise ValueError(f"dims repeat a name: {list(dims)}")
        axes = []
        for name in dims:
            if name not in self._by_name:
                raise ValueError(self._unknown(name))
            axes.append(self.names.index(name))
        edges = np.linspace(0.0, 1.0, bins + 1)
        regions = []
        for index, cell in enumerate(itertools.product(range(bins), repeat=len(dims))):
            low, high = np.zeros(self.dim), np.ones(self.dim)
            for axis, k in zip(axes, cell, strict=True):
                low[axis], high[axis] = edges[k], edges[k + 1]
            label = ",".join(f"{n}[{k}/{bins}]" for n, k in zip(dims, cell, strict=True))
            regions.append(Region(index=index, low=low, high=high, label=label or "all"))
        return regions

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Return ``{name: {low, high, nominal, scale, integer, levels}}`` as plain JSON data."""
        return {p.name: p.to_dict() for p in self._params}

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> ParamSpace:
        """Inverse of :meth:`to_dict` (order of keys is the coordinate order)."""
        params = []
        for name, spec in d.items():
            try:
                params.append(Param(name=name, **dict(spec)))
            except TypeError as err:
                raise ValueError(f"{name}: {err}") from None
            except ValueError as err:
                raise ValueError(f"{name}.{err}") from None
        return cls(params)
