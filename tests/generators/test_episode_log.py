"""Both env kinds log every finished episode with where in Theta it ran and how it went."""

from __future__ import annotations

import numpy as np
import pytest

from generators import TaskDistribution, get_family
from generators.episodes import EpisodeLog

FAMILY = get_family("inverted_pendulum")
SPACE = FAMILY.space.with_overrides({"pole_mass": {"low": 1e-6}, "actuator_gain": {"high": 1e4}})
BOX = np.array([[0.0] * SPACE.dim, [0.5] * SPACE.dim])
UNSTABLE = {"pole_mass": 1e-6, "actuator_gain": 1e4}


def run(env, steps: int, seed: int = 0) -> list[float]:
    """Step with zero actions; return the completed episodes' returns as the env reports them."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    returns, current = [], 0.0
    for _ in range(steps):
        _, r, term, trunc, _ = env.step(rng.uniform(-0.5, 0.5, 1))
        current += r
        if term or trunc:
            returns.append(current)
            current = 0.0
            env.reset()
    return returns


def test_task_env_logs_theta_return_and_length() -> None:
    env = FAMILY.make_env(distribution=TaskDistribution.mixture([BOX]))  # a stable corner
    returns = run(env, 300)
    log = env.episode_log.drain()
    assert [e["return"] for e in log] == pytest.approx(returns)
    for e in log:
        assert all(0.0 <= u <= 0.5 + 1e-6 for u in e["theta_u"])
        assert e["fidelity"] == "fine" and e["length"] >= 1 and not e["unstable"]
    assert env.episode_log.drain() == []


def test_batched_env_logs_unstable_episodes_where_they_ran() -> None:
    nominal = SPACE.to_unit(SPACE.nominal())
    corner = SPACE.to_unit(SPACE.complete(UNSTABLE))
    dist = TaskDistribution.mixture([nominal, corner], weights=[1.0, 1.0])
    env = FAMILY.make_vector_env(8, space=SPACE, distribution=dist)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        env.step(rng.uniform(-0.5, 0.5, (8, 1)))
    log = env.episode_log.drain()
    unstable = [e for e in log if e["unstable"]]
    assert len(unstable) == env.unstable_episodes > 0
    for e in unstable:
        assert np.allclose(e["theta_u"], corner, atol=1e-4)  # all at the extreme point
    assert all(e["return"] == 0.0 for e in unstable)  # blew up on the first step
    stable = [e for e in log if not e["unstable"]]
    assert stable and all(np.allclose(e["theta_u"], nominal, atol=1e-4) for e in stable)


def test_a_full_log_drops_the_oldest_records_and_counts_them() -> None:
    log = EpisodeLog(maxlen=3)
    log.add([0.1], "fine", 1, 10, False)
    log.extend(
        np.array([[0.2], [0.3], [0.4], [0.5]]),
        np.array(["coarse"] * 4, dtype=object),
        np.array([2.0, 3.0, 4.0, 5.0]),
        np.ones(4, dtype=np.int64),
        np.ones(4, dtype=bool),
    )
    assert len(log) == 3
    assert log.dropped == 2
    records = log.drain()
    assert [r["theta_u"] for r in records] == [[0.3], [0.4], [0.5]]
    assert records[0] == {
        "theta_u": [0.3],
        "fidelity": "coarse",
        "return": 3.0,
        "length": 1,
        "unstable": True,
    }
    assert log.drain() == [] and log.dropped == 2
