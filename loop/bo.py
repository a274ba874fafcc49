"""The `bo` controller: multi-fidelity Bayesian optimization of the learner's learning progress.

Every iteration it proposes ``q`` points of the unit cube, each at a fidelity, by maximizing
information gain per unit cost (`loop.mfbo.MultiFidelityBO`, cost-aware MF-MES by default)
over a drifting multi-fidelity GP of the learning signal. The learner then trains on a
mixture of small boxes around those points (`controller.radius`) plus a uniform exploration
share at the target fidelity (`controller.explore_share`). What it observes per proposal is
the absolute learning progress there (`loop.controllers.learning_progress`, normalized by
the loop), the measured seconds per env step at that fidelity, and whether the simulation
went unstable there (the feasibility model steers proposals away from such regions).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from generators import ParamSpace
from loop.controllers import Controller, Proposal, ProposalResult
from loop.mfbo import MFBOSettings, MultiFidelityBO

if TYPE_CHECKING:
    from loop.config import ControllerConfig


class BOController(Controller):
    """Cost-aware multi-fidelity BO over Theta and the fidelities `controller.fidelities`.

    A proposal at a fidelity without budget left (`allowed_fidelities`) moves to the
    cheapest allowed fidelity above it, or the target.
    """

    def __init__(
        self,
        space: ParamSpace,
        fidelity: str,
        seed: int,
        config: ControllerConfig | None = None,
    ) -> None:
        from loop.config import ControllerConfig

        config = config or ControllerConfig(method="bo")
        super().__init__(space, fidelity, seed, config)
        self.config: ControllerConfig = config
        self.fidelities = list(config.fidelities)
        settings = MFBOSettings(
            acquisition=config.acquisition,
            drift=config.drift,
            use_feasibility=config.feasibility,
        )
        self.bo = MultiFidelityBO(space.dim, self.fidelities, seed=seed, settings=settings)
        self._last_cost: dict[str, float] = {}

    @property
    def target(self) -> str:
        return self.fidelities[-1]

    def _allowed(self, fidelity: str) -> str:
        allowed = self.allowed_fidelities
        if not allowed or fidelity in allowed:
            return fidelity
        above = self.fidelities[self.fidelities.index(fidelity) :]
        return next((f for f in above if f in allowed), self.target)

    def propose(self, history: Sequence[Mapping[str, Any]]) -> list[Proposal]:
        cfg = self.config
        points = self.bo.propose(cfg.q)
        weight = (1.0 - cfg.explore_share) / len(points)
        proposals = []
        for x, k in points:
            low = np.clip(x - cfg.radius, 0.0, 1.0)
            high = np.clip(x + cfg.radius, 0.0, 1.0)
            proposals.append(
                Proposal(
                    tuple(float(v) for v in low),
                    tuple(float(v) for v in high),
                    self._allowed(self.fidelities[k]),
                    weight,
                    point=tuple(float(v) for v in x),
                )
            )
        if cfg.explore_share > 0:
            d = self.space.dim
            proposals.append(
                Proposal(
                    (0.0,) * d,
                    (1.0,) * d,
                    self._allowed(self.target),
                    cfg.explore_share,
                    explore=True,
                )
            )
        self.diagnostics = _plain(self.bo.diagnostics)
        return proposals

    def observe(self, results: Sequence[ProposalResult]) -> None:
        super().observe(results)
        learn = [r for r in results if not r.proposal.explore and r.proposal.point is not None]
        if not learn:
            return
        costs = []
        for r in learn:
            fid = r.proposal.fidelity
            if math.isfinite(r.s_per_step) and r.s_per_step > 0:
                self._last_cost[fid] = r.s_per_step
            costs.append(self._last_cost.get(fid, 1.0))
        self.bo.observe(
            [r.proposal.point for r in learn],
            [self.fidelities.index(r.proposal.fidelity) for r in learn],
            [r.value for r in learn],
            costs,
            unstable=[r.unstable > 0 for r in learn],
        )

    def posterior_slice(
        self, dims: Sequence[str], n: int = 25
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """GP posterior mean and std of the learning signal over two (or one) parameters at
        the target fidelity and the latest time; other parameters at the cube's center.
        None before the GP exists."""
        if self.bo.num_observations < 2:
            return None
        idx = [self.space.names.index(name) for name in dims]
        return self.bo.posterior_slice(idx, n)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "bo": self.bo.state_dict(),
            "last_cost": dict(self._last_cost),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.bo.load_state_dict(state["bo"])
        self._last_cost = dict(state["last_cost"])


def _plain(value: Any) -> Any:
    """Diagnostics as JSON-friendly data (numpy scalars to floats, tuples to lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


__all__ = ["BOController"]
