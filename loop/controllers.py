"""Curriculum controllers: what the learner trains on next. Baselines and BO share one interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from generators import ParamSpace, TaskDistribution


@dataclass(frozen=True)
class Proposal:
    """One training context: a box in the unit cube of Theta (a point when low == high)."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    fidelity: str
    weight: float = 1.0
    """Share of the task distribution this proposal gets (normalized over the batch)."""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "low": list(self.low), "high": list(self.high)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Proposal:
        return cls(tuple(d["low"]), tuple(d["high"]), d["fidelity"], float(d["weight"]))


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

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "proposal": self.proposal.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProposalResult:
        return cls(Proposal.from_dict(d["proposal"]), d["value"], d["cost"], d["unstable"])


def to_task_distribution(proposals: Sequence[Proposal]) -> TaskDistribution:
    """The learner's task distribution: the proposals' boxes, weighted, at their fidelity."""
    fidelities = {p.fidelity for p in proposals}
    if len(fidelities) != 1:
        raise ValueError(f"one fidelity per batch expected, got {sorted(fidelities)}")
    boxes = [np.array([p.low, p.high]) for p in proposals]
    return TaskDistribution.mixture(boxes, [p.weight for p in proposals], fidelities.pop())


class Controller(ABC):
    """Proposes training contexts and learns from their results.

    State is plain data (`state_dict`), checkpointed by the loop, so a resumed run proposes
    what the uninterrupted run would have.

    Args:
        space: the generator's parameter space.
        fidelity: the fidelity to train at when the method has no choice of its own.
        seed: seeds the controller's own RNG.
    """

    def __init__(self, space: ParamSpace, fidelity: str, seed: int) -> None:
        self.space = space
        self.fidelity = fidelity
        self.rng = np.random.default_rng(seed)
        self.observations: list[ProposalResult] = []

    @abstractmethod
    def propose(self, history: Sequence[Mapping[str, Any]]) -> list[Proposal]:
        """The next batch of proposals, given the journal records so far (oldest first)."""

    def observe(self, results: Sequence[ProposalResult]) -> None:
        """Record the results of the last batch."""
        self.observations.extend(results)

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "observations": [r.to_dict() for r in self.observations],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.observations = [ProposalResult.from_dict(d) for d in state["observations"]]


CONTROLLERS: dict[str, type[Controller]] = {}


def register_controller(name: str) -> Callable[[type[Controller]], type[Controller]]:
    """Register a controller class under the name configs use (`controller.method`)."""

    def add(cls: type[Controller]) -> type[Controller]:
        if name in CONTROLLERS:
            raise ValueError(f"controller {name!r} is already registered")
        CONTROLLERS[name] = cls
        return cls

    return add


def make_controller(method: str, space: ParamSpace, fidelity: str, seed: int) -> Controller:
    """Instantiate the controller registered as `method`."""
    if method not in CONTROLLERS:
        raise ValueError(f"unknown controller {method!r} (known: {', '.join(sorted(CONTROLLERS))})")
    return CONTROLLERS[method](space, fidelity, seed)


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
    "Controller",
    "NominalController",
    "Proposal",
    "ProposalResult",
    "UniformDRController",
    "make_controller",
    "register_controller",
    "to_task_distribution",
]
