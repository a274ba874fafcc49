"""The `bo` controller: multi-fidelity Bayesian optimization of the learner's learning progress.

Every iteration it proposes ``q`` points of the unit cube, each at a fidelity, by maximizing
information gain per unit cost (`loop.mfbo.MultiFidelityBO`, cost-aware MF-MES by default)
over a drifting multi-fidelity GP of the learning signal. The learner then trains on a
mixture of boxes around those points plus a uniform exploration share at the target
fidelity (`controller.explore_share`; with `controller.explore_final` it rises as the budget
is spent, so that the curriculum ends on uniform domain randomization over the space, as
self-paced curricula end on their target distribution). What it observes per proposal is
the absolute learning progress there (`loop.controllers.learning_progress`, normalized by
the loop), the measured training seconds per env step at that fidelity (simulation plus
the learner's share, `loop.scheduler.training_costs`; or `controller.costs`, fixed
ones, so that a run repeats whatever the host's load; a cheaper fidelity that costs no less
than the target is not proposed, `MultiFidelityBO.dominated`), and whether the simulation
went unstable there (the feasibility model steers proposals away from such regions). With
`controller.signal: local` it observes instead the change of return between this
iteration's and the previous one's training episodes nearest a point
(`loop.controllers.local_progress`), at its proposals and at `controller.episode_points`
training-episode thetas: four times the observations per iteration, exploration included.

Relevance-focused boxes. A box of half-width 0.25 in every one of a task's 8-11 dimensions
is 0.5^d of the cube (under 0.4%), so a mixture of a few such boxes trains on almost nothing
of the dimensions the learning signal does not depend on, and loses to uniform domain
randomization there. So each box is narrow (half-width `radius` around its
point) only in the `controller.focus_dims` dimensions the GP finds most relevant (inverse
ARD length scales, `MultiFidelityBO.relevance`; ties go to the lower index) and spans
``[0, 1]`` in all others: the mixture concentrates where the signal varies and keeps the
uniform marginal everywhere else. Before any ranking exists (the initial design) each box
is narrow in its own `focus_dims` dimensions, dealt from a permutation of all dimensions
drawn from the seed, so the first iteration too trains on the uniform marginal almost everywhere and
its observations vary as many dimensions as the boxes can. ``focus_dims: null`` (or a value
>= the space's dimension) keeps boxes narrow in every dimension.

Identification (`controller.identify.episodes` > 0). After an iteration the loop records a
few real-proxy episodes of the current policy (charged to `real_episodes`) and hands them to
`observe_real`, which searches Theta for the thetas whose models predict those episodes
(`evaluators.identify`: open-loop multi-step replay of the recorded observations and
actions, cross-entropy search). From then on BO chooses its `q` points among the thetas
consistent with the real data (`particles`), each trained in a small box in every
dimension, and the exploration share is spread over all of them: the curriculum trains
where the real system can be, not over the whole space. Parameters the data cannot pin
down (observation noise; masses, gain and gravity along ridges of equal dynamics) stay
spread over the particles.

With `controller.relevance: returns` the ranking comes instead from a GP of the latest
training episodes' returns on (theta, fidelity): up to 256 episodes, each iteration's mean
return removed so that the learner's progress between iterations is not read as a
dependence on theta. Each parameter's main effect on its posterior mean (how far the return
moves along that parameter alone, `surrogates.main_effects`) says along which parameters the
learner's competence varies, from hundreds of episodes, where the learning-signal GP sees
``q`` observations per iteration in 8-11 dimensions and its ranking can wander. Main
effects, not length scales: in a first cartpole_swingup run the shortest return length
scale was gravity's, whose effect on the return was a fifth of actuator gain's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from evaluators import Identification, Trajectory, identify
from generators import Family, ParamSpace
from loop.controllers import Controller, Proposal, ProposalResult, local_progress
from loop.mfbo import MFBOSettings, MultiFidelityBO
from surrogates import fit_unit_cube_gp, main_effects

if TYPE_CHECKING:
    from loop.config import ControllerConfig


_WINDOW_CAP = 4096
"""Most recent stable episodes kept as the previous window of `signal: local`."""

_RETURN_EPISODES = 256
"""Most recent stable episodes `relevance: returns` fits its GP to (0.2-3 s on 2 cores)."""

_EFFECT_ROWS = 64
"""Episode thetas `relevance: returns` averages each main effect over."""


class BOController(Controller):
    """Cost-aware multi-fidelity BO over Theta and the fidelities `controller.fidelities`.

    Each proposed point becomes a box: half-width `controller.radius` in the
    `controller.focus_dims` dimensions the GP finds most relevant, ``[0, 1]`` in the others
    (see the module docstring). A proposal at a fidelity without budget left
    (`allowed_fidelities`) moves to the cheapest allowed fidelity above it, or the target.

    `diagnostics` holds the optimizer's (`MultiFidelityBO.diagnostics`) plus
    ``relevance`` (per parameter, None before the GP exists), ``focus_dims`` (indices of
    the parameters the boxes are narrow in, ascending), ``focus_params`` (their names) and
    ``box_dims`` (each box's narrow dims: one hand per box in the initial design).
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
        prior = None if config.costs is None else [config.costs[f] for f in self.fidelities]
        self.bo = MultiFidelityBO(
            space.dim, self.fidelities, seed=seed, settings=settings, cost_prior=prior
        )
        self._last_cost: dict[str, float] = {}
        self._previous: list[dict[str, Any]] = []  # last iteration's episodes (signal: local)
        self._returns: list[dict[str, Any]] = []  # latest episodes (relevance: returns)
        self._real: list[Trajectory] = []  # latest real episodes (identify)
        self.identification: Identification | None = None
        self._identifications = 0

    @property
    def target(self) -> str:
        return self.fidelities[-1]

    def _allowed(self, fidelity: str) -> str:
        allowed = self.allowed_fidelities
        if not allowed or fidelity in allowed:
            return fidelity
        above = self.fidelities[self.fidelities.index(fidelity) :]
        return next((f for f in above if f in allowed), self.target)

    def focus(self) -> tuple[list[int], np.ndarray | None]:
        """The dims the next boxes are narrow in (ascending) and their relevance.

        The `controller.focus_dims` most relevant dims (ties go to the lower index) by the
        GP the last `propose` fitted, or with `relevance: returns` by the episode-return GP
        (`return_relevance`); every dim without a GP yet or when `focus_dims` is null or at
        least the space's dimension.
        """
        d = self.space.dim
        relevance = None
        if self.config.relevance == "returns":
            relevance = self.return_relevance()
        elif self.bo.diagnostics.get("fallback") != "initial_design":
            relevance = self.bo.relevance()
        k = self.config.focus_dims
        if relevance is None or k is None or k >= d:
            return list(range(d)), relevance
        score = np.nan_to_num(relevance, nan=0.0, posinf=np.finfo(float).max)
        order = sorted(range(d), key=lambda i: (-score[i], i))
        return sorted(order[:k]), relevance

    def _focus_count(self) -> int:
        """How many dims a box is narrow in: `controller.focus_dims`, clamped to the space."""
        k = self.config.focus_dims
        return self.space.dim if k is None else min(k, self.space.dim)

    def _dealt_dims(self, n: int) -> list[list[int]]:
        """Narrow dims of ``n`` boxes without a relevance ranking: consecutive
        `controller.focus_dims`-sized hands (ascending) of a permutation of the dims drawn
        from the seed, cycling through it when the boxes need more dims than there are."""
        k = self._focus_count()
        order = np.random.default_rng(self.bo.seed).permutation(self.space.dim).tolist()
        cycle = order * (n * k // len(order) + 1)
        return [sorted(set(cycle[j * k : (j + 1) * k])) for j in range(n)]

    def return_relevance(self) -> np.ndarray | None:
        """Per theta dimension, the main effect (`surrogates.main_effects`) of a GP of the
        latest training episodes' returns (centred per iteration) on theta and fidelity, at
        the target fidelity; None with fewer than ``max(16, 2 d)`` episodes. Deterministic
        given the kept episodes."""
        rows = self._returns
        d = self.space.dim
        if len(rows) < max(16, 2 * d):
            return None
        top = max(len(self.fidelities) - 1, 1)
        x = torch.tensor([r["theta_u"] + [r["fidelity"] / top] for r in rows], dtype=torch.float64)
        y = torch.tensor([r["return"] for r in rows], dtype=torch.float64)
        with torch.random.fork_rng():
            torch.manual_seed(self.bo.seed)
            model = fit_unit_cube_gp(x, y)
        base = x[:: max(len(rows) // _EFFECT_ROWS, 1)][:_EFFECT_ROWS].clone()
        base[:, d] = 1.0  # the target fidelity
        return main_effects(model, base, range(d)).numpy()

    def explore_share(self) -> float:
        """This iteration's uniform exploration share: `controller.explore_share`, rising
        linearly to `controller.explore_final` with the budget's `progress`."""
        cfg = self.config
        if cfg.explore_final is None:
            return cfg.explore_share
        p = min(max(self.progress, 0.0), 1.0)
        return cfg.explore_share + (cfg.explore_final - cfg.explore_share) * p

    def observe_real(self, trajectories: Sequence[Trajectory], family: Family) -> Identification:
        """Identify where the real system lies from the latest `identify.keep` real episodes
        (`evaluators.identify`); from the next `propose` on, the curriculum trains around
        the thetas consistent with them (`particles`)."""
        cfg = self.config.identify
        self._real = (self._real + list(trajectories))[-cfg.keep :]
        self._identifications += 1
        self.identification = identify(
            family,
            self.space,
            self._real,
            seed=self.bo.seed * 7919 + self._identifications,
            horizon=cfg.horizon,
            rounds=cfg.rounds,
            population=cfg.population,
            elites=cfg.elites,
            tolerance=cfg.tolerance,
            min_halfwidth=cfg.radius,
            max_windows=cfg.windows,
            fidelity=self.target,
        )
        return self.identification

    def particles(self) -> np.ndarray | None:
        """At most `identify.particles` thetas consistent with the real data, spaced evenly
        over their error ranking (unit cube, ``m x d``, lowest error first), or None before
        any identification."""
        if self.identification is None:
            return None
        consistent = self.identification.consistent
        m = self.config.identify.particles
        if len(consistent) <= m:
            return consistent
        # Evenly over the error ranking: the support's spread, not only its best corner.
        return consistent[np.linspace(0, len(consistent) - 1, m).round().astype(int)]

    def propose(self, history: Sequence[Mapping[str, Any]]) -> list[Proposal]:
        particles = self.particles()
        if particles is not None:
            return self._propose_identified(particles)
        cfg = self.config
        points = self.bo.propose(cfg.q)
        t0 = time.perf_counter()
        dims, relevance = self.focus()
        relevance_s = time.perf_counter() - t0
        box_dims = [dims] * len(points)
        if relevance is None and len(dims) > self._focus_count():
            box_dims = self._dealt_dims(len(points))
        explore = self.explore_share()
        weight = (1.0 - explore) / len(points)
        proposals = []
        for (x, k), narrow in zip(points, box_dims, strict=True):
            low = np.zeros_like(x)
            high = np.ones_like(x)
            low[narrow] = np.clip(x[narrow] - cfg.radius, 0.0, 1.0)
            high[narrow] = np.clip(x[narrow] + cfg.radius, 0.0, 1.0)
            proposals.append(
                Proposal(
                    tuple(float(v) for v in low),
                    tuple(float(v) for v in high),
                    self._allowed(self.fidelities[k]),
                    weight,
                    point=tuple(float(v) for v in x),
                )
            )
        if explore > 0:
            d = self.space.dim
            proposals.append(
                Proposal(
                    (0.0,) * d,
                    (1.0,) * d,
                    self._allowed(self.target),
                    explore,
                    explore=True,
                )
            )
        focus = sorted({i for narrow in box_dims for i in narrow})
        self.diagnostics = _plain(
            {
                **self.bo.diagnostics,
                "relevance": None if relevance is None else relevance.tolist(),
                "focus_dims": focus,
                "focus_params": [self.space.names[i] for i in focus],
                "box_dims": box_dims,
                "relevance_source": cfg.relevance,
                "relevance_s": relevance_s,
                "explore_share": explore,
            }
        )
        return proposals

    def _propose_identified(self, particles: np.ndarray) -> list[Proposal]:
        """Proposals once the real system is identified: BO chooses `q` of the consistent
        thetas, each trained in a box of half-width `identify.radius` in every dimension,
        and the exploration share is spread over all of them (the posterior's support)."""
        cfg = self.config
        r = cfg.identify.radius
        points = self.bo.propose(cfg.q, candidates=particles)
        explore = self.explore_share()

        def box(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
            low, high = np.clip(x - r, 0.0, 1.0), np.clip(x + r, 0.0, 1.0)
            return tuple(float(v) for v in low), tuple(float(v) for v in high)

        proposals = [
            Proposal(
                *box(x),
                self._allowed(self.fidelities[k]),
                (1.0 - explore) / len(points),
                point=tuple(float(v) for v in x),
            )
            for x, k in points
        ]
        if explore > 0:
            proposals += [
                Proposal(
                    *box(x), self._allowed(self.target), explore / len(particles), explore=True
                )
                for x in particles
            ]
        self.diagnostics = _plain(
            {
                **self.bo.diagnostics,
                "relevance": None,
                "focus_dims": list(range(self.space.dim)),
                "focus_params": list(self.space.names),
                "box_dims": [list(range(self.space.dim))] * len(points),
                "relevance_source": "identify",
                "relevance_s": 0.0,
                "explore_share": explore,
                "particles": len(particles),
            }
        )
        return proposals

    def observe(
        self,
        results: Sequence[ProposalResult],
        episodes: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().observe(results)
        for r in results:
            if math.isfinite(r.s_per_step) and r.s_per_step > 0:
                self._last_cost[r.proposal.fidelity] = r.s_per_step
        learn = [r for r in results if not r.proposal.explore and r.proposal.point is not None]
        points = [r.proposal.point for r in learn]
        fids = [r.proposal.fidelity for r in learn]
        values = [r.value for r in learn]
        unstable = [r.unstable > 0 for r in learn]
        if self.config.relevance == "returns":
            self._keep_returns(episodes or [])
        if self.config.signal == "local":
            points, fids, values, unstable = self._local_signal(learn, list(episodes or []))
        if not points:
            return
        self.bo.observe(
            points,
            [self.fidelities.index(f) for f in fids],
            values,
            [self._cost(f) for f in fids],
            unstable=unstable,
        )

    def _cost(self, fidelity: str) -> float:
        """Seconds per env step the cost model sees: `controller.costs`, else measured."""
        if self.config.costs is not None:
            return float(self.config.costs[fidelity])
        return self._last_cost.get(fidelity, 1.0)

    def _keep_returns(self, episodes: Sequence[Mapping[str, Any]]) -> None:
        """Add this iteration's stable episodes (return minus their mean, in finish order)
        to the window `return_relevance` fits, keeping the latest `_RETURN_EPISODES`."""
        kept = [
            e
            for e in episodes
            if not e["unstable"] and e["fidelity"] in self.fidelities and math.isfinite(e["return"])
        ]
        if not kept:
            return
        kept.sort(key=lambda e: e.get("order", 0))
        mean = float(np.mean([e["return"] for e in kept]))
        rows = [
            {
                "theta_u": [float(v) for v in e["theta_u"]],
                "fidelity": self.fidelities.index(e["fidelity"]),
                "return": float(e["return"]) - mean,
            }
            for e in kept
        ]
        self._returns = (self._returns + rows)[-_RETURN_EPISODES:]

    def _local_signal(
        self, learn: Sequence[ProposalResult], episodes: list[Mapping[str, Any]]
    ) -> tuple[list, list[str], list[float], list[bool]]:
        """Observations of `signal: local` (see `loop.local_progress`).

        At each proposed point and at `episode_points` thetas drawn from this iteration's
        training episodes (its own RNG), the change of return since the previous
        iteration's episodes. The first iteration compares its own earlier and later
        halves (by finish order).
        """
        kept = [e for e in episodes if e["fidelity"] in self.fidelities]
        current = [{k: e[k] for k in ("theta_u", "fidelity", "return", "unstable")} for e in kept]
        previous, window = self._previous, current
        if not previous:  # first iteration: its earlier half against its later half
            ranked = sorted(range(len(kept)), key=lambda i: kept[i].get("order", i))
            half = len(ranked) // 2
            previous = [current[i] for i in ranked[:half]]
            window = [current[i] for i in ranked[half:]]
        points = [tuple(r.proposal.point) for r in learn]
        fids = [r.proposal.fidelity for r in learn]
        unstable = [r.unstable > 0 for r in learn]
        m = min(self.config.episode_points, len(current))
        if m:
            for i in self.rng.choice(len(current), size=m, replace=False):
                e = current[int(i)]
                points.append(tuple(float(v) for v in e["theta_u"]))
                fids.append(e["fidelity"])
                unstable.append(bool(e["unstable"]))
        values = local_progress(previous, window, np.array(points), fids) if points else []
        self._previous = [e for e in current if not e["unstable"]][-_WINDOW_CAP:]
        return points, fids, [float(v) for v in values], unstable

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
            "previous_episodes": [dict(e, theta_u=list(e["theta_u"])) for e in self._previous],
            "return_episodes": [dict(e) for e in self._returns],
            "real_episodes": [
                {
                    "observations": torch.from_numpy(t.observations),
                    "actions": torch.from_numpy(t.actions),
                    "unstable": t.unstable,
                }
                for t in self._real
            ],
            "identification": (
                None if self.identification is None else self.identification.to_dict()
            ),
            "identifications": self._identifications,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.bo.load_state_dict(state["bo"])
        self._last_cost = dict(state["last_cost"])
        self._previous = [dict(e) for e in state.get("previous_episodes", [])]
        self._returns = [dict(e) for e in state.get("return_episodes", [])]
        self._real = [
            Trajectory(t["observations"].numpy(), t["actions"].numpy(), bool(t["unstable"]))
            for t in state.get("real_episodes", [])
        ]
        ident = state.get("identification")
        self.identification = None if ident is None else Identification.from_dict(ident)
        self._identifications = int(state.get("identifications", 0))


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
