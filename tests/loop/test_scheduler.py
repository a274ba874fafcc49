"""The scheduler keeps each fidelity within its budget and says when the run must stop."""

from __future__ import annotations

import math

import pytest

from loop.scheduler import FidelityBudget, Scheduler, training_costs


def make(**kw) -> Scheduler:
    budgets = {
        "coarse": FidelityBudget(env_steps=kw.get("coarse_steps"), sim_s=kw.get("coarse_s")),
        "fine": FidelityBudget(env_steps=kw.get("fine_steps"), sim_s=kw.get("fine_s")),
    }
    return Scheduler(budgets, target="fine")


def test_step_budgets_cap_the_iteration_and_end_the_run() -> None:
    s = make(coarse_steps=1000, fine_steps=3000)
    assert s.available() == ["coarse", "fine"]
    # Half the sub-envs at each fidelity: the coarse budget limits the iteration to 2000.
    assert s.plan({"coarse": 0.5, "fine": 0.5}, 10_000) == 2000
    s.record({"coarse": 1000, "fine": 1000}, {"coarse": 1e-4, "fine": 4e-4})
    assert s.available() == ["fine"] and not s.exhausted()
    assert s.plan({"fine": 1.0}, 10_000) == 2000
    s.record({"fine": 2000}, {"fine": 4e-4})
    assert s.exhausted() and s.available() == []


def test_seconds_budget_uses_the_measured_cost() -> None:
    s = make(fine_s=1.0)
    assert s.remaining_steps("fine") == math.inf  # no cost measured yet
    s.record({"fine": 1000}, {"fine": 5e-4})  # 0.5 s spent at 0.5 ms per step
    assert s.sim_s["fine"] == pytest.approx(0.5)
    assert s.remaining_steps("fine") == pytest.approx(1000)
    s.record({"fine": 1000}, {"fine": 5e-4})
    assert s.exhausted()


def test_cost_is_smoothed_and_shares_are_of_seconds() -> None:
    s = make()
    s.record({"coarse": 1000, "fine": 1000}, {"coarse": 1e-4, "fine": 3e-4})
    s.record({"coarse": 1000}, {"coarse": 3e-4, "fine": float("nan")})
    assert s.s_per_step["coarse"] == pytest.approx(2e-4)  # 0.5 * new + 0.5 * old
    assert s.s_per_step["fine"] == pytest.approx(3e-4)  # NaN measurements are ignored
    shares = s.spent_shares()
    assert shares["coarse"] == pytest.approx(0.4 / 0.7)
    assert sum(shares.values()) == pytest.approx(1.0)


def test_target_spent_is_the_further_of_steps_and_seconds() -> None:
    assert make().target_spent() == 0.0  # unlimited
    s = make(fine_steps=4000, fine_s=1.0, coarse_steps=10)
    s.record({"coarse": 10, "fine": 1000}, {"coarse": 1e-4, "fine": 5e-4})
    assert s.target_spent() == pytest.approx(0.5)  # 0.5 s of 1 s; 1000 of 4000 steps
    s.record({"fine": 3000}, {"fine": 1e-5})
    assert s.target_spent() == pytest.approx(1.0)  # the steps are spent (seconds: 0.53)


def test_state_round_trip() -> None:
    s = make(fine_steps=5000)
    s.record({"coarse": 10, "fine": 20}, {"coarse": 1e-4, "fine": 2e-4})
    t = make(fine_steps=5000)
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict()
    assert t.remaining_steps("fine") == 4980


def test_target_needs_a_budget() -> None:
    with pytest.raises(ValueError, match="no budget"):
        Scheduler({"coarse": FidelityBudget()}, target="fine")


def test_training_cost_adds_the_learners_share_to_each_fidelitys_simulation() -> None:
    # 1000 coarse steps at 50 us and 3000 fine at 100 us of simulation: 0.35 s of 4.35 s.
    costs, learner = training_costs(
        {"coarse": 5e-5, "fine": 1e-4}, {"coarse": 1000, "fine": 3000}, train_s=4.35
    )
    assert learner == pytest.approx(1e-3)  # the 4 s the simulation does not explain
    assert costs == pytest.approx({"coarse": 1.05e-3, "fine": 1.1e-3})
    # Halving the physics saves under a twentieth of the step, which the cost model sees.
    assert costs["coarse"] / costs["fine"] > 0.95
    # Unmeasured fidelities stay out; nothing trained means no learner share.
    costs, learner = training_costs({"coarse": math.nan, "fine": 1e-4}, {"fine": 10}, 0.01)
    assert set(costs) == {"fine"} and learner == pytest.approx(9e-4)
    assert training_costs({"fine": 1e-4}, {}, 1.0) == ({}, 0.0)
    # Wall time below the simulation's (clock noise) gives a zero share, never a negative one.
    assert training_costs({"fine": 1e-4}, {"fine": 100}, 0.005)[1] == 0.0
