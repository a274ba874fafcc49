"""Baseline controllers propose what they claim, and their state round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from generators import get_family
from loop.controllers import (
    CONTROLLERS,
    Controller,
    Proposal,
    ProposalResult,
    make_controller,
    register_controller,
    to_task_distribution,
)

SPACE = get_family("inverted_pendulum").space


def test_nominal_trains_only_at_the_nominal_theta() -> None:
    ctrl = make_controller("nominal", SPACE, "fine", seed=0)
    dist = to_task_distribution(ctrl.propose([]))
    rng = np.random.default_rng(0)
    for _ in range(20):
        theta = dist.sample(SPACE, rng)
        for name in SPACE.names:
            assert theta[name] == pytest.approx(SPACE[name].nominal)


def test_udr_covers_the_whole_space() -> None:
    ctrl = make_controller("udr", SPACE, "coarse", seed=0)
    dist = to_task_distribution(ctrl.propose([]))
    assert dist.fidelity == "coarse"
    rng = np.random.default_rng(0)
    u = np.array([SPACE.to_unit(dist.sample(SPACE, rng)) for _ in range(2000)])
    assert (u.min(axis=0) < 0.15).all() and (u.max(axis=0) > 0.85).all()
    assert np.allclose(u.mean(axis=0), 0.5, atol=0.05)


def test_state_dict_round_trip_restores_observations_and_rng() -> None:
    ctrl = make_controller("udr", SPACE, "fine", seed=3)
    p = ctrl.propose([])[0]
    ctrl.observe([ProposalResult(p, value=1.5, cost=2.0, unstable=1)])
    ctrl.rng.random(5)
    other = make_controller("udr", SPACE, "fine", seed=99)
    other.load_state_dict(ctrl.state_dict())
    assert other.observations == ctrl.observations
    assert other.rng.random() == ctrl.rng.random()


def test_mixed_fidelities_in_one_batch_are_rejected() -> None:
    d = SPACE.dim
    with pytest.raises(ValueError, match="one fidelity"):
        to_task_distribution(
            [Proposal((0.0,) * d, (1.0,) * d, "fine"), Proposal((0.0,) * d, (1.0,) * d, "coarse")]
        )


def test_registry_rejects_duplicates_and_unknown_names() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_controller("udr")
        class Again(Controller):  # pragma: no cover - never instantiated
            def propose(self, history):
                return []

    with pytest.raises(ValueError, match="unknown controller"):
        make_controller("nope", SPACE, "fine", 0)
    assert {"nominal", "udr"} <= set(CONTROLLERS)
