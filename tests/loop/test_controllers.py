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
    learning_progress,
    make_controller,
    register_controller,
    to_task_distribution,
    to_task_distributions,
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


def test_mixed_fidelities_become_one_part_per_fidelity() -> None:
    d = SPACE.dim
    a = Proposal((0.0,) * d, (0.5,) * d, "fine", weight=1.0)
    b = Proposal((0.5,) * d, (1.0,) * d, "coarse", weight=2.0)
    c = Proposal((0.0,) * d, (1.0,) * d, "fine", weight=1.0, explore=True)
    parts = to_task_distributions([a, b, c])
    assert [(dist.fidelity, share) for dist, share in parts] == [("coarse", 0.5), ("fine", 0.5)]
    assert len(parts[1][0].components) == 2
    with pytest.raises(ValueError, match="one fidelity"):
        to_task_distribution([a, b])


def test_proposals_round_trip_with_their_point_and_exploration_flag() -> None:
    d = SPACE.dim
    p = Proposal((0.1,) * d, (0.3,) * d, "coarse", 0.4, point=(0.2,) * d, explore=False)
    q = Proposal((0.0,) * d, (1.0,) * d, "fine", 0.2, explore=True)
    for x in (p, q):
        assert Proposal.from_dict(x.to_dict()) == x
    r = ProposalResult(p, 0.5, 2.0, unstable=1, s_per_step=1e-4, episodes=12)
    assert ProposalResult.from_dict(r.to_dict()) == r


def episode(u: float, ret: float, order: float, fidelity: str = "fine") -> dict:
    return {"theta_u": [u] * SPACE.dim, "fidelity": fidelity, "return": ret, "order": order}


def test_learning_progress_is_the_fitted_change_of_return_in_the_box() -> None:
    d = SPACE.dim
    box = Proposal((0.0,) * d, (0.5,) * d, "fine")
    rising = [episode(0.2, 100.0 + 50.0 * i, i / 9) for i in range(10)]
    falling = [episode(0.2, 500.0 - 50.0 * i, i / 9) for i in range(10)]
    flat = [episode(0.2, 300.0 + (-1) ** i, i / 9) for i in range(10)]
    assert learning_progress(rising, box) == pytest.approx(450.0)
    assert learning_progress(falling, box) == pytest.approx(450.0)  # absolute, as in ALP-GMM
    assert learning_progress(flat, box) < 5.0
    # Episodes outside the box or at another fidelity do not count.
    others = [episode(0.9, 1e4 * i, i / 9) for i in range(10)]
    others += [episode(0.2, 1e4 * i, i / 9, "coarse") for i in range(10)]
    assert learning_progress(flat + others, box) < 5.0
    assert np.isnan(learning_progress(rising[:2], box))


def test_registry_rejects_duplicates_and_unknown_names() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_controller("udr")
        class Again(Controller):  # pragma: no cover - never instantiated
            def propose(self, history):
                return []

    with pytest.raises(ValueError, match="unknown controller"):
        make_controller("nope", SPACE, "fine", 0)
    assert {"nominal", "udr", "bo"} <= set(CONTROLLERS)
