"""An unstable world is survived and counted, episode after episode, without console noise."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from generators import TaskDistribution, get_family

FAMILY = get_family("inverted_pendulum")
# Near-zero pole mass with a huge actuator gain: MuJoCo's velocities blow up within a step.
SPACE = FAMILY.space.with_overrides({"pole_mass": {"low": 1e-6}, "actuator_gain": {"high": 1e4}})
EXTREME = TaskDistribution.point(SPACE, {"pole_mass": 1e-6, "actuator_gain": 1e4})


def test_thousand_unstable_episodes_batched(capfd: pytest.CaptureFixture, caplog) -> None:
    env = FAMILY.make_vector_env(64, space=SPACE, distribution=EXTREME)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    episodes = flagged = 0
    with caplog.at_level(logging.DEBUG, logger="generators.mujoco"):
        while episodes < 1000:
            obs, _, term, trunc, info = env.step(rng.uniform(-3, 3, (64, 1)))
            done = term | trunc
            episodes += int(done.sum())
            flagged += int(np.asarray(info["unstable"])[done].sum())
            assert np.isfinite(obs).all()
    env.close()
    assert flagged == episodes == env.unstable_episodes
    assert "unstable" in caplog.text  # MuJoCo's warnings reach logging ...
    assert "WARNING" not in capfd.readouterr().err  # ... not the console


def test_thousand_unstable_episodes_single_env() -> None:
    env = FAMILY.make_env(space=SPACE, distribution=EXTREME)
    rng = np.random.default_rng(1)
    for episode in range(1000):
        env.reset(seed=episode)
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(rng.uniform(-3, 3, 1))
            done = term or trunc
        assert info["unstable"] and np.isfinite(obs).all()
    assert env.unstable_episodes == 1000
