"""System identification finds where the real data came from, and says how sure it is."""

from __future__ import annotations

import numpy as np
import pytest

from evaluators import Windows, evaluate_policy, identify, make_windows, prediction_errors
from generators import get_family, get_reality

CARTPOLE = get_family("cartpole_swingup")
PENDULUM = get_family("inverted_pendulum")


def pumping(seed: int):
    """A noisy bang-bang policy that swings the cart-pole (action units, batched)."""
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        push = np.sign(obs[:, 4:5]) * 0.8 - 0.5 * obs[:, :1]
        return np.clip(push + rng.normal(0.0, 0.3, push.shape), -1.0, 1.0)

    return act


def balance(obs: np.ndarray) -> np.ndarray:
    k = np.array([1.0, 10.0, 1.0, 1.5])
    return np.clip(obs @ k[:, None], -3, 3)


def record(env, policy, episodes: int = 1, seed: int = 7):
    stats = evaluate_policy(policy, [env], episodes, seed, record=True)
    return list(stats.trajectories)


@pytest.mark.parametrize("family", [CARTPOLE, PENDULUM])
def test_state_from_observation_inverts_the_observation(family) -> None:
    env = family.make_env(theta={})
    obs, _ = env.reset(seed=3)
    for _ in range(20):
        obs, *_ = env.step(env.action_space.sample())
    qpos, qvel = family.task.state_from_observation(obs[None])
    assert np.allclose(np.cos(qpos[0]), np.cos(env.data.qpos))
    assert np.allclose(np.sin(qpos[0]), np.sin(env.data.qpos))
    assert np.allclose(qvel[0], env.data.qvel)


def test_recorded_trajectories_hold_every_step_with_clipped_actions() -> None:
    env = PENDULUM.make_env(theta={})
    big = lambda obs: np.full((obs.shape[0], 1), 10.0)  # noqa: E731  (beyond the +-3 range)
    stats = evaluate_policy(big, [env], 2, 0, record=True)
    assert len(stats.trajectories) == 2
    for traj, length in zip(stats.trajectories, stats.lengths, strict=True):
        assert traj.observations.shape == (length + 1, 4)
        assert traj.actions.shape == (length, 1)
        assert np.all(traj.actions == 3.0)
    assert evaluate_policy(big, [env], 2, 0).trajectories is None


def test_the_theta_that_made_the_data_predicts_it_exactly() -> None:
    theta = {"pole_mass": 1.6, "actuator_gain": 0.8, "latency_steps": 2, "gravity": 1.1}
    real = record(CARTPOLE.make_env(theta=theta), pumping(0))
    space = CARTPOLE.space
    windows = make_windows(real, 5, 3, 256, np.random.default_rng(0))
    truth = space.to_unit(space.complete(theta))
    others = [
        space.to_unit(space.complete({**theta, "latency_steps": 1})),
        space.to_unit(space.complete({**theta, "pole_mass": 1.0})),
        space.to_unit(space.complete({**theta, "actuator_gain": 1.0})),
        space.to_unit(space.nominal()),
    ]
    errors = prediction_errors(CARTPOLE, space, np.array([truth, *others]), windows)
    # Same model, no noise: the replay is the data, up to the solver's warm start.
    assert errors[0] < 1e-7
    assert np.all(errors[1:] > 1e3 * errors[0]), errors


def test_identify_pins_latency_on_the_reality_proxy() -> None:
    """dm_control's own XML with hidden changes and noise: the box keeps the true latency
    and narrows it, and the consistent thetas predict far better than the nominal model.
    (Masses, gain and gravity trade off along ridges of equal dynamics, so their boxes
    stay wide; the consistent thetas lie on the ridge.)"""
    params = {"pole_mass": 1.6, "actuator_gain": 0.8, "latency_steps": 2, "obs_noise_std": 0.02}
    env = get_reality("dm_control/cartpole-swingup").make_env(params)
    real = record(env, pumping(1), episodes=2)
    space = CARTPOLE.space
    found = identify(CARTPOLE, space, real, seed=0, population=48, rounds=4, max_windows=256)
    truth = space.to_unit(space.complete(params))
    lat = space.names.index("latency_steps")
    assert found.low[lat] <= truth[lat] <= found.high[lat]
    assert found.high[lat] - found.low[lat] < 0.5  # latency: one or two of 0..3 steps
    assert space.from_unit(found.best)["latency_steps"] == 2
    assert found.best_error < 0.5 * found.nominal_error
    assert np.all(found.consistent_errors <= found.best_error * 1.1 + 1e-15)
    assert np.array_equal(found.consistent[0], found.best)
    again = identify(CARTPOLE, space, real, seed=0, population=48, rounds=4, max_windows=256)
    assert np.array_equal(again.consistent, found.consistent)  # one seed, one answer


def test_data_that_excite_nothing_identify_nothing() -> None:
    """A pendulum left hanging tells little: many thetas stay consistent and the box stays
    wide, instead of a confident wrong answer."""
    env = CARTPOLE.make_env(theta={"pole_mass": 1.8, "obs_noise_std": 0.01})
    zero = lambda obs: np.zeros((obs.shape[0], 1))  # noqa: E731
    real = record(env, zero)
    found = identify(CARTPOLE, CARTPOLE.space, real, seed=1, population=32, rounds=3)
    assert len(found.consistent) > 32
    assert np.mean(found.high - found.low) > 0.5


def test_a_family_without_state_observations_cannot_identify() -> None:
    hopper = get_family("hopper")
    assert hopper.task.state_from_observation(np.zeros((1, 11))) is None


def test_a_prediction_that_blows_up_never_counts_as_a_match() -> None:
    """MuJoCo resets a simulation that blew up and carries on from its reference state; a
    model must not look consistent with real data that way."""
    real = record(PENDULUM.make_env(theta={}), balance)
    windows = make_windows(real, 3, 0, 16, np.random.default_rng(0))
    nominal = PENDULUM.space.to_unit(PENDULUM.space.nominal())[None]
    sane = prediction_errors(PENDULUM, PENDULUM.space, nominal, windows)
    assert sane[0] < 1e-6  # the model that made the data
    wild = Windows(windows.start_obs * 0 + 1e30, windows.targets, windows.actions, 0)
    blown = prediction_errors(PENDULUM, PENDULUM.space, nominal, wild)
    assert blown[0] == 1e12


def test_episodes_shorter_than_the_horizon_cannot_be_identified_from() -> None:
    real = record(PENDULUM.make_env(theta={}), lambda obs: np.full((len(obs), 1), 3.0))
    assert len(real[0].actions) < 200  # the pole falls
    with pytest.raises(ValueError, match="stable transitions"):
        make_windows(real, 200, 0, 16, np.random.default_rng(0))
