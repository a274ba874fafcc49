"""Multi-fidelity scheduler: budgets per fidelity, the measured cost model, when to stop.

Each fidelity has a budget in training env steps and, optionally, in simulation seconds
(measured seconds per env step times the steps spent at it). The cost per fidelity is what
the batched envs measured while stepping (exponentially smoothed over iterations), never
assumed. The scheduler tells the controller which fidelities still have budget, caps an
iteration so that no fidelity overspends, and ends the run when the target fidelity's
budget is spent. What a controller weighs information against is the whole training step
(`training_costs`: the simulation plus the learner's share).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FidelityBudget:
    """What one fidelity may spend; None means unlimited."""

    env_steps: int | None = None
    sim_s: float | None = None


@dataclass
class Scheduler:
    """Budget bookkeeping per fidelity.

    Args:
        budgets: budget per fidelity name.
        target: the fidelity whose exhausted budget ends the run.
        smoothing: weight of the newest measured cost in the smoothed cost per step.
    """

    budgets: dict[str, FidelityBudget]
    target: str
    smoothing: float = 0.5
    env_steps: dict[str, int] = field(default_factory=dict)
    """Training env steps spent per fidelity."""
    sim_s: dict[str, float] = field(default_factory=dict)
    """Simulation seconds spent per fidelity (steps x measured cost)."""
    s_per_step: dict[str, float] = field(default_factory=dict)
    """Smoothed measured seconds per env step per fidelity."""

    def __post_init__(self) -> None:
        if self.target not in self.budgets:
            raise ValueError(f"target fidelity {self.target!r} has no budget")
        for name in self.budgets:
            self.env_steps.setdefault(name, 0)
            self.sim_s.setdefault(name, 0.0)

    def record(self, steps: Mapping[str, int], costs: Mapping[str, float]) -> None:
        """Charge the steps of an iteration, costed with this iteration's measured costs."""
        for name, c in costs.items():
            if math.isfinite(c) and c > 0:
                old = self.s_per_step.get(name)
                a = self.smoothing
                self.s_per_step[name] = c if old is None else a * c + (1 - a) * old
        for name, n in steps.items():
            self.env_steps[name] = self.env_steps.get(name, 0) + int(n)
            cost = costs.get(name, self.s_per_step.get(name, math.nan))
            if math.isfinite(cost):
                self.sim_s[name] = self.sim_s.get(name, 0.0) + n * cost

    def remaining_steps(self, name: str) -> float:
        """Env steps `name` may still train (inf when unlimited; 0 without a budget)."""
        budget = self.budgets.get(name)
        if budget is None:
            return 0.0
        left = math.inf
        if budget.env_steps is not None:
            left = budget.env_steps - self.env_steps.get(name, 0)
        if budget.sim_s is not None:
            cost = self.s_per_step.get(name)
            seconds_left = budget.sim_s - self.sim_s.get(name, 0.0)
            if cost is not None:
                left = min(left, seconds_left / cost)
            elif seconds_left <= 0:
                left = 0.0
        return max(left, 0.0)

    def available(self) -> list[str]:
        """Fidelities with at least one env step of budget left (in budget order)."""
        return [name for name in self.budgets if self.remaining_steps(name) >= 1]

    def target_spent(self) -> float:
        """Share of the target fidelity's budget spent (env steps or simulation seconds,
        whichever is further; 0 when it is unlimited)."""
        budget = self.budgets[self.target]
        spent = 0.0
        if budget.env_steps:
            spent = self.env_steps.get(self.target, 0) / budget.env_steps
        if budget.sim_s:
            spent = max(spent, self.sim_s.get(self.target, 0.0) / budget.sim_s)
        return min(spent, 1.0)

    def exhausted(self) -> bool:
        """Whether the target fidelity's budget is spent (the run ends `budget_exhausted`)."""
        return self.remaining_steps(self.target) < 1

    def plan(self, shares: Mapping[str, float], steps: int) -> int:
        """Env steps for an iteration that splits `steps` by `shares` without overspending."""
        total = float(steps)
        for name, share in shares.items():
            if share > 0:
                total = min(total, self.remaining_steps(name) / share)
        return int(total)

    def spent_shares(self) -> dict[str, float]:
        """Share of the simulation seconds (env steps where no cost is known) per fidelity."""
        seconds = sum(self.sim_s.values())
        if seconds > 0:
            return {name: s / seconds for name, s in self.sim_s.items()}
        steps = sum(self.env_steps.values())
        return {name: (n / steps if steps else 0.0) for name, n in self.env_steps.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "env_steps": dict(self.env_steps),
            "sim_s": dict(self.sim_s),
            "s_per_step": dict(self.s_per_step),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.env_steps = {k: int(v) for k, v in state["env_steps"].items()}
        self.sim_s = {k: float(v) for k, v in state["sim_s"].items()}
        self.s_per_step = {k: float(v) for k, v in state["s_per_step"].items()}

    def to_dict(self) -> dict[str, Any]:
        """Budgets and spending as plain data (for the summary)."""
        return {
            "budgets": {k: asdict(v) for k, v in self.budgets.items()},
            **self.state_dict(),
            "shares": self.spent_shares(),
        }


def training_costs(
    sim_costs: Mapping[str, float],
    steps: Mapping[str, int],
    train_s: float,
) -> tuple[dict[str, float], float]:
    """Seconds one training env step costs at each fidelity: its simulation plus the learner.

    The batched envs time only the simulation; the rest of a training step (the policy's
    forward pass, sampling bookkeeping, the PPO update) costs the same at every fidelity. A
    controller that weighs information by cost needs the whole step: with the learner at
    nine tenths of it, a fidelity whose physics is half as dear saves a twentieth, not half.

    Args:
        sim_costs: measured simulation seconds per env step by fidelity.
        steps: env steps trained by fidelity in the same interval.
        train_s: wall time of that training.

    Returns:
        ``({fidelity: training seconds per env step}, learner seconds per env step)``; the
        learner's share is the wall time the simulation does not explain, spread evenly over
        the steps (0 when nothing was trained).
    """
    total = sum(int(n) for n in steps.values())
    if total <= 0:
        return {}, 0.0
    sim = sum(
        int(n) * sim_costs[f]
        for f, n in steps.items()
        if f in sim_costs and math.isfinite(sim_costs[f])
    )
    learner = max(0.0, train_s - sim) / total
    return {f: c + learner for f, c in sim_costs.items() if math.isfinite(c)}, learner


__all__ = ["FidelityBudget", "Scheduler", "training_costs"]
