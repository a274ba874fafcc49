"""Importing RLlib (which imports dm_control) must not re-route MuJoCo's warnings to stderr."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from generators import TaskDistribution, get_family


def test_mujoco_warnings_stay_in_the_log_after_importing_the_learner(
    capfd: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    import learners.rllib_learner  # noqa: F401  (imports RLlib, and with it dm_control)

    family = get_family("inverted_pendulum")
    space = family.space.with_overrides(
        {"pole_mass": {"low": 1e-6}, "actuator_gain": {"high": 1e4}}
    )
    dist = TaskDistribution.point(space, {"pole_mass": 1e-6, "actuator_gain": 1e4})
    env = family.make_env(space=space, distribution=dist)
    with caplog.at_level(logging.DEBUG, logger="generators.mujoco"):
        env.reset(seed=0)
        *_, info = env.step(np.array([3.0]))
    assert info["unstable"]
    assert "unstable" in caplog.text
    assert "WARNING" not in capfd.readouterr().err
