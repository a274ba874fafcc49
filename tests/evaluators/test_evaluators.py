"""Evaluation is deterministic, budget-exact and independent of how it is parallelized."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluators import (
    OracleCache,
    evaluate_policy,
    evaluate_regions,
    normalized_transfer_ratio,
    oracle_key,
    transfer_ratio,
    zero_policy,
)
from generators import get_family, get_reality

FAMILY = get_family("inverted_pendulum")


def balance(obs: np.ndarray) -> np.ndarray:
    """A hand-tuned linear balancing controller for the cart-pole (action units)."""
    k = np.array([1.0, 10.0, 1.0, 1.5])
    return np.clip(obs @ k[:, None], -3, 3)


def zero(obs: np.ndarray) -> np.ndarray:
    return np.zeros((obs.shape[0], 1))


def test_episode_count_and_seeds_do_not_depend_on_env_count() -> None:
    make = lambda: FAMILY.make_env(theta={"obs_noise_std": 0.01})  # noqa: E731
    a = evaluate_policy(zero, [make()], episodes=6, seed=5)
    b = evaluate_policy(zero, [make() for _ in range(4)], episodes=6, seed=5)
    assert a.episodes == b.episodes == 6
    assert np.array_equal(a.returns, b.returns)
    assert np.array_equal(a.lengths, b.lengths)
    assert a.env_steps == int(a.lengths.sum())


def test_a_balancing_policy_beats_doing_nothing_on_the_reality_proxy() -> None:
    proxy = get_reality("gymnasium/InvertedPendulum-v5")
    envs = [proxy.make_env({}) for _ in range(2)]
    good = evaluate_policy(balance, envs, episodes=4, seed=0)
    bad = evaluate_policy(zero, envs, episodes=4, seed=0)
    assert good.mean > 10 * bad.mean


def test_regions_report_return_and_regret_per_cell() -> None:
    space = FAMILY.space
    regions = space.regions(["pole_mass", "actuator_gain"], 2)
    res = evaluate_regions(
        zero, FAMILY, space, regions, fidelity="fine", episodes_per_region=2, seed=0
    )
    assert [r.index for r in res] == [r.index for r in regions]
    for r in res:
        assert r.episodes == 2
        assert r.error == pytest.approx(FAMILY.max_return - r.mean_return)
    again = evaluate_regions(
        zero, FAMILY, space, regions[1:2], fidelity="fine", episodes_per_region=2, seed=0
    )
    assert again[0].mean_return == res[1].mean_return  # a region's seeds are its own


def test_transfer_ratio() -> None:
    assert transfer_ratio(800.0, 1000.0) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        transfer_ratio(1.0, 0.0)


def test_normalized_ratio_orders_policies_correctly_with_negative_returns() -> None:
    # Reacher-like returns: the oracle at -4, doing nothing at -40.
    better = normalized_transfer_ratio(-8.0, -4.0, floor=-40.0)
    worse = normalized_transfer_ratio(-30.0, -4.0, floor=-40.0)
    assert 0 < worse < better < 1
    assert normalized_transfer_ratio(-4.0, -4.0, floor=-40.0) == pytest.approx(1.0)
    assert normalized_transfer_ratio(-40.0, -4.0, floor=-40.0) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        normalized_transfer_ratio(0.0, -50.0, floor=-40.0)


def test_zero_policy_does_nothing_on_every_family() -> None:
    proxy = get_reality("gymnasium/Reacher-v5")
    env = proxy.make_env({})
    act = zero_policy(env.action_space.shape[0])(np.zeros((3, env.observation_space.shape[0])))
    assert act.shape == (3, 2) and not act.any()
    assert evaluate_policy(zero_policy(2), [env], episodes=2, seed=0).mean < 0


class Saved:
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return zero(obs)

    def save(self, path: Path) -> None:
        Path(path).write_text("weights")


def test_oracle_is_trained_once_per_spec_and_reused(tmp_path: Path) -> None:
    cache = OracleCache(tmp_path)
    calls = []

    def train():
        calls.append(1)
        yield Saved(), 123, 4.5

    spec = {"reality": {"params": {"pole_mass": 1.5}}, "env_steps": 10}
    first = cache.get_or_train(spec, train, lambda p: (900.0, 3.0, 20))
    second = OracleCache(tmp_path).get_or_train(spec, train, lambda p: (0.0, 0.0, 1))
    assert calls == [1]
    assert first == second and second.real_return == 900.0
    assert (tmp_path / first.key / "policy.pt").read_text() == "weights"
    assert json.loads((tmp_path / first.key / "oracle.json").read_text())["spec"] == spec
    other = {"reality": {"params": {"pole_mass": 1.6}}, "env_steps": 10}
    assert oracle_key(other) != first.key
    cache.get_or_train(other, train, lambda p: (1.0, 0.0, 1))
    assert calls == [1, 1]


def test_oracle_keeps_its_best_checkpoint(tmp_path: Path) -> None:
    """PPO on one system can regress: the oracle is the checkpoint with the best proxy return."""
    policies = [Saved(), Saved(), Saved()]
    returns = {id(policies[0]): 300.0, id(policies[1]): 800.0, id(policies[2]): 450.0}

    def train():
        for k, policy in enumerate(policies):
            yield policy, 100 * (k + 1), 2.0 * (k + 1)

    record = OracleCache(tmp_path).get_or_train(
        {"env_steps": 300}, train, lambda p: (returns[id(p)], 1.0, 20)
    )
    assert record.real_return == 800.0
    assert record.checkpoint_returns == [300.0, 800.0, 450.0]
    assert record.checkpoint_env_steps == [100, 200, 300]
    assert (record.train_env_steps, record.train_s) == (300, 6.0)
    assert OracleCache(tmp_path).get(record.key) == record
    with pytest.raises(ValueError, match="no checkpoint"):
        OracleCache(tmp_path).get_or_train({"env_steps": 1}, lambda: iter(()), lambda p: (0, 0, 1))
