"""Curriculum controllers: what the learner trains on next. Baselines and BO share one interface."""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from generators import FIDELITIES, ParamSpace, TaskDistribution

if TYPE_CHECKING:
    from loop.config import ControllerConfig


@dataclass(frozen=True)
class Proposal:
    """One training context: a box in the unit cube of Theta (a point when low == high)."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    fidelity: str
    weight: float = 1.0
    """Share of the task distribution this proposal gets (normalized over the batch)."""
    point: tuple[float, ...] | None = None
    """The unit-cube theta a model-based controller chose (the box surrounds it)."""
    explore: bool = False
    """Exploration share (uniform), not a choice the controller learns from."""

    def to_dict(self) -> dict[str, Any]:
        d = {**asdict(self), "low": list(self.low), "high": list(self.high)}
        d["point"] = None if self.point is None else list(self.point)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Proposal:
        point = d.get("point")
        return cls(
            tuple(d["low"]),
            tuple(d["high"]),
            d["fidelity"],
            float(d["weight"]),
            None if point is None else tuple(point),
            bool(d.get("explore", False)),
        )

    def contains(self, theta_u: np.ndarray, tol: float = 1e-6) -> np.ndarray:
        """Which rows of ``theta_u`` (``n x d``, unit cube) lie in this proposal's box."""
        low, high = np.asarray(self.low) - tol, np.asarray(self.high) + tol
        return np.all((low <= theta_u) & (theta_u <= high), axis=-1)


@dataclass(frozen=True)
class ProposalResult:
    """What training on a proposal taught the controller."""

    proposal: Proposal
    value: float
    """Learning signal (higher is more informative); baselines record but ignore it."""
    cost: float
    """Seconds spent on this proposal."""
    unstable: int = 0
    """Episodes of this proposal ended by the stability guard."""
    s_per_step: float = math.nan
    """Measured training cost at the proposal's fidelity (seconds per env step: the
    simulation plus the learner's share, `loop.scheduler.training_costs`)."""
    episodes: int = 0
    """Training episodes that ran in the proposal's box at its fidelity."""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "proposal": self.proposal.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProposalResult:
        return cls(
            Proposal.from_dict(d["proposal"]),
            d["value"],
            d["cost"],
            d["unstable"],
            float(d.get("s_per_step", math.nan)),
            int(d.get("episodes", 0)),
        )


def to_task_distributions(proposals: Sequence[Proposal]) -> list[tuple[TaskDistribution, float]]:
    """The learner's task distribution: per fidelity, the mixture of that fidelity's boxes
    and the share of the batch's weight it gets (cheapest fidelity first)."""
    if not proposals:
        raise ValueError("no proposals")
    total = sum(p.weight for p in proposals)
    parts = []
    for fidelity in FIDELITIES:
        group = [p for p in proposals if p.fidelity == fidelity]
        weight = sum(p.weight for p in group)
        if group and weight > 0:
            boxes = [np.array([p.low, p.high]) for p in group]
            dist = TaskDistribution.mixture(boxes, [p.weight for p in group], fidelity)
            parts.append((dist, weight / total))
    unknown = {p.fidelity for p in proposals} - set(FIDELITIES)
    if unknown or not parts:
        raise ValueError(f"proposals need a known fidelity and a positive weight ({unknown})")
    return parts


def to_task_distribution(proposals: Sequence[Proposal]) -> TaskDistribution:
    """The task distribution of a batch whose proposals share one fidelity."""
    parts = to_task_distributions(proposals)
    if len(parts) != 1:
        raise ValueError(f"one fidelity per batch expected, got {[d.fidelity for d, _ in parts]}")
    return parts[0][0]


def learning_progress(episodes: Sequence[Mapping[str, Any]], proposal: Proposal) -> float:
    """Absolute learning progress of the learner's return in `proposal`'s box (ALP).

    As in ALP-GMM, the absolute change of the return; here the change over one iteration,
    fitted by least squares to the return of the episodes that ran in the box at the
    proposal's fidelity against their finish order (`order`, 0..1 over the iteration; the
    list position when absent). A fit is robust to the few-episode noise of a difference of
    two returns. NaN with fewer than 3 such episodes.
    """
    inside = [
        e
        for e in episodes
        if e["fidelity"] == proposal.fidelity and proposal.contains(np.asarray(e["theta_u"]))
    ]
    if len(inside) < 3:
        return math.nan
    t = np.array([e.get("order", i) for i, e in enumerate(inside)], dtype=float)
    r = np.array([e["return"] for e in inside], dtype=float)
    span = float(t.max() - t.min())
    if span <= 0:
        return math.nan
    slope = np.polyfit(t - t.min(), r, 1)[0]
    return float(abs(slope) * span)


NEIGHBORS = 10
"""Episodes per window whose mean return is the return near a point (`local_progress`)."""


def local_progress(
    previous: Sequence[Mapping[str, Any]],
    current: Sequence[Mapping[str, Any]],
    points: np.ndarray,
    fidelities: Sequence[str],
    k: int = NEIGHBORS,
) -> np.ndarray:
    """Absolute learning progress at each point between two windows of training episodes.

    The return near a point is the mean return of the ``k`` episodes of a window nearest
    to it (unit-cube distance, same fidelity, stable episodes only); the progress is the
    absolute difference between the current and the previous window's (ALP, as in
    ALP-GMM, with a k-nearest-neighbour mean on each side instead of one episode, which
    cancels most of the return's variation across theta). NaN where a window has fewer
    than 3 such episodes.

    Args:
        previous: Episodes of the earlier window (``theta_u``, ``fidelity``, ``return``,
            ``unstable``).
        current: Episodes of the later window.
        points: ``m x d`` unit-cube points.
        fidelities: Fidelity of each point.
        k: Neighbours per window.
    """
    points = np.asarray(points, dtype=float).reshape(len(fidelities), -1)
    out = np.full(len(points), math.nan)

    def window(episodes: Sequence[Mapping[str, Any]], fidelity: str) -> tuple[np.ndarray, ...]:
        rows = [e for e in episodes if e["fidelity"] == fidelity and not e.get("unstable")]
        theta = np.array([e["theta_u"] for e in rows], dtype=float).reshape(-1, points.shape[1])
        return theta, np.array([e["return"] for e in rows], dtype=float)

    for fidelity in set(fidelities):
        (x0, r0), (x1, r1) = window(previous, fidelity), window(current, fidelity)
        if len(r0) < 3 or len(r1) < 3:
            continue
        idx = np.flatnonzero(np.asarray(fidelities) == fidelity)
        near = []
        for x, r in ((x0, r0), (x1, r1)):
            dist = np.linalg.norm(points[idx, None, :] - x[None, :, :], axis=-1)
            nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
            near.append(r[nearest].mean(axis=1))
        out[idx] = np.abs(near[1] - near[0])
    return out


class Controller(ABC):
    """Proposes training contexts and learns from their results.

    State is plain data (`state_dict`), checkpointed by the loop, so a resumed run proposes
    what the uninterrupted run would have.

    Args:
        space: the generator's parameter space.
        fidelity: the fidelity to train at when the method has no choice of its own.
        seed: seeds the controller's own RNG.
        config: the run's `controller` section (model-based controllers read their knobs).
    """

    def __init__(
        self,
        space: ParamSpace,
        fidelity: str,
        seed: int,
        config: ControllerConfig | None = None,
    ) -> None:
        self.space = space
        self.fidelity = fidelity
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.observations: list[ProposalResult] = []
        self.diagnostics: dict[str, Any] = {}
        """What the last `propose` did (journaled and sent to W&B by the loop)."""
        self.allowed_fidelities: list[str] | None = None
        """Fidelities with budget left, set by the loop's scheduler before each `propose`
        (None: all). Controllers that choose fidelities must stay within them."""
        self.progress = 0.0
        """Share of the run's budget spent before this `propose` (iterations or target-fidelity
        budget, whichever is further), set by the loop; 0 outside a loop."""

    @abstractmethod
    def propose(self, history: Sequence[Mapping[str, Any]]) -> list[Proposal]:
        """The next batch of proposals, given the journal records so far (oldest first)."""

    def observe(
        self,
        results: Sequence[ProposalResult],
        episodes: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Record the results of the last batch.

        Args:
            results: One per proposal of the batch.
            episodes: The iteration's training episodes (``theta_u`` in the unit cube,
                ``fidelity``, ``return`` normalized per family, ``unstable``, ``order``), for
                controllers that learn from episodes rather than proposals.
        """
        self.observations.extend(results)

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "observations": [r.to_dict() for r in self.observations],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.observations = [ProposalResult.from_dict(d) for d in state["observations"]]


CONTROLLERS: dict[str, type[Controller] | str] = {
    # Model-based controllers import torch and BoTorch; registered by "module:Class" so that
    # config validation knows their names without paying for those imports.
    "bo": "loop.bo:BOController",
}


def register_controller(name: str) -> Callable[[type[Controller]], type[Controller]]:
    """Register a controller class under the name configs use (`controller.method`)."""

    def add(cls: type[Controller]) -> type[Controller]:
        if name in CONTROLLERS:
            raise ValueError(f"controller {name!r} is already registered")
        CONTROLLERS[name] = cls
        return cls

    return add


def make_controller(
    method: str,
    space: ParamSpace,
    fidelity: str,
    seed: int,
    config: ControllerConfig | None = None,
) -> Controller:
    """Instantiate the controller registered as `method`."""
    if method not in CONTROLLERS:
        raise ValueError(f"unknown controller {method!r} (known: {', '.join(sorted(CONTROLLERS))})")
    cls = CONTROLLERS[method]
    if isinstance(cls, str):
        module, _, name = cls.partition(":")
        cls = getattr(importlib.import_module(module), name)
    return cls(space, fidelity, seed, config)


@register_controller("nominal")
class NominalController(Controller):
    """Train only at the nominal parameters: the no-randomization baseline."""

    def propose(self, history: Sequence[Mapping[str, Any]]) -> list[Proposal]:
        u = tuple(float(x) for x in self.space.to_unit(self.space.nominal()))
        return [Proposal(u, u, self.fidelity)]


@register_controller("udr")
class UniformDRController(Controller):
    """Uniform domain randomization over the whole parameter space."""

    def propose(self, history: Sequence[Mapping[str, Any]]) -> list[Proposal]:
        d = self.space.dim
        return [Proposal((0.0,) * d, (1.0,) * d, self.fidelity)]


__all__ = [
    "CONTROLLERS",
    "NEIGHBORS",
    "Controller",
    "NominalController",
    "Proposal",
    "ProposalResult",
    "UniformDRController",
    "learning_progress",
    "local_progress",
    "make_controller",
    "register_controller",
    "to_task_distribution",
    "to_task_distributions",
]
