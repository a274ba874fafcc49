"""TaskEnv: task distribution, latency, observation noise, determinism, stability guard."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env

from generators import Family, ParamSpace, TaskDistribution, TaskEnv

Rollout = Callable[..., dict]


def test_passes_gymnasium_env_checker(family: Family) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # only advice about unbounded/unnormalized boxes
        check_env(family.make_env(), skip_render_check=True)


def test_info_keys(family: Family) -> None:
    env = family.make_env({"pole_mass": 1.5}, "coarse")
    _, info = env.reset(seed=0)
    assert set(info) == {"theta", "fidelity", "unstable"}
    assert info["theta"] == pytest.approx({**family.space.nominal(), "pole_mass": 1.5})
    assert info["fidelity"] == "coarse" and info["unstable"] is False
    _, reward, terminated, truncated, info = env.step(np.zeros(1, np.float32))
    assert set(info) == {"theta", "fidelity", "unstable"}
    assert isinstance(reward, float) and reward == 1.0
    assert terminated is False and truncated is False
    info["theta"]["pole_mass"] = -1.0  # callers may mutate what they get
    assert env.step(np.zeros(1))[4]["theta"]["pole_mass"] == pytest.approx(1.5)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_latency_delays_the_action_by_exactly_k_steps(
    family: Family, rollout: Rollout, k: int
) -> None:
    push, rest = np.array([1.0]), np.zeros(1)
    delayed = rollout(family.make_env({"latency_steps": k}), [push] + [rest] * 7, steps=8)
    shifted = rollout(family.make_env(), [rest] * k + [push] + [rest] * (7 - k), steps=8)
    np.testing.assert_array_equal(np.array(delayed["obs"]), np.array(shifted["obs"]))
    assert delayed["info"][0]["theta"]["latency_steps"] == k
    immediate = rollout(family.make_env(), [push] + [rest] * 7, steps=8)
    assert not np.allclose(immediate["obs"][1], delayed["obs"][1])


def test_latency_buffer_restarts_with_zeros(family: Family) -> None:
    env = family.make_env({"latency_steps": 2})
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.array([3.0]))
    ref = family.make_env()
    obs, _ = env.reset(seed=1)
    ref_obs, _ = ref.reset(seed=1)
    np.testing.assert_array_equal(obs, ref_obs)
    np.testing.assert_array_equal(env.step(np.array([3.0]))[0], ref.step(np.zeros(1))[0])


def test_observation_noise_has_the_configured_std(family: Family, balance: Callable) -> None:
    std = 0.03
    env = family.make_env({"obs_noise_std": std})
    obs, _ = env.reset(seed=0)
    errors = []
    for t in range(500):
        errors.append(obs - env.task.observation(env.model, env.data))
        obs, _, terminated, truncated, _ = env.step(balance(t, obs))
        if terminated or truncated:
            obs, _ = env.reset()
    errors = np.array(errors)
    assert errors.std() == pytest.approx(std, rel=0.05)
    assert abs(errors.mean()) < 0.003
    np.testing.assert_allclose(errors.std(axis=0), std, rtol=0.15)  # every entry is noisy


def test_reward_and_termination_use_the_true_state(family: Family, rollout: Rollout) -> None:
    actions = [np.array([0.4])] * 40
    clean = rollout(family.make_env(), actions, steps=40)
    noisy = rollout(family.make_env({"obs_noise_std": 0.05}), actions, steps=40)
    assert clean["reward"] == noisy["reward"]
    assert clean["terminated"] == noisy["terminated"]
    assert clean["terminated"][-1]  # the pole fell, on the same step in both
    assert not np.allclose(clean["obs"], noisy["obs"])


def test_same_seed_same_trajectories(family: Family, rollout: Rollout) -> None:
    def run(seed: int) -> tuple[list, list, list]:
        env = family.make_env(distribution=TaskDistribution.uniform(family.space))
        actions = np.random.default_rng(0).uniform(-3, 3, size=(120, 1))
        obs, rewards, thetas = [], [], []
        for episode in range(3):
            out = rollout(env, list(actions), seed=seed if episode == 0 else None, steps=120)
            obs += out["obs"]
            rewards += out["reward"]
            thetas.append(out["info"][0]["theta"])
        return obs, rewards, thetas

    obs_a, rewards_a, thetas_a = run(123)
    obs_b, rewards_b, thetas_b = run(123)
    np.testing.assert_array_equal(np.array(obs_a), np.array(obs_b))
    assert rewards_a == rewards_b
    assert thetas_a == thetas_b
    assert len({t["pole_mass"] for t in thetas_a}) == 3  # a new theta each episode
    assert any(t["obs_noise_std"] > 0 for t in thetas_a)
    assert run(124)[2] != thetas_a


def test_nan_and_inf_actions(family: Family) -> None:
    def first_step(action: np.ndarray) -> np.ndarray:
        env = family.make_env()
        env.reset(seed=5)
        return env.step(action)[0]

    np.testing.assert_array_equal(first_step(np.array([np.nan])), first_step(np.zeros(1)))
    np.testing.assert_array_equal(first_step(np.array([np.inf])), first_step(np.array([3.0])))
    np.testing.assert_array_equal(first_step(np.array([-50.0])), first_step(np.array([-3.0])))
    np.testing.assert_array_equal(first_step(np.float32(0.5)), first_step(np.array([0.5])))


def test_misuse_raises(family: Family) -> None:
    env = family.make_env()
    with pytest.raises(ResetNeeded):
        env.step(np.zeros(1))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action has 2 entries, expected 1"):
        env.step(np.zeros(2))


# --- stability guard --------------------------------------------------------------------------


def test_corrupted_velocity_is_caught(family: Family) -> None:
    env = family.make_env()
    env.reset(seed=0)
    env.data.qvel[:] = 1e30
    obs, reward, terminated, _, info = env.step(np.zeros(1))
    assert terminated and info["unstable"] and reward == 0.0
    assert np.isfinite(obs).all()
    assert env.unstable_episodes == 1
    obs, _, _, _, info = env.step(np.zeros(1))  # the simulation was put back to a safe state
    assert np.isfinite(obs).all() and not info["unstable"]
    env.data.qpos[:] = np.nan  # a second blow-up in the same episode counts once
    _, _, terminated, _, info = env.step(np.zeros(1))
    assert terminated and info["unstable"] and env.unstable_episodes == 1
    env.reset()
    env.data.qvel[:] = 1e30
    env.step(np.zeros(1))
    assert env.unstable_episodes == 2


@pytest.mark.parametrize(
    "theta",
    [
        {"pole_mass": 1e-4},
        {"actuator_gain": 1e4},
        {"pole_mass": 1e-4, "actuator_gain": 1e4},
    ],
)
def test_extreme_theta_ends_episodes_without_raising(
    family: Family, rollout: Rollout, theta: dict
) -> None:
    wide = family.space.with_overrides({"pole_mass": {"low": 1e-4}, "actuator_gain": {"high": 1e4}})
    env = family.make_env(theta, space=wide)
    rng = np.random.default_rng(0)
    for episode in range(3):
        out = rollout(env, lambda t, obs: rng.uniform(-3, 3, 1), seed=episode, steps=50)
        assert out["terminated"][-1] and out["info"][-1]["unstable"]
        assert out["reward"][-1] == 0.0
        assert np.isfinite(np.array(out["obs"])).all()
    assert env.unstable_episodes == 3


# --- task distribution ------------------------------------------------------------------------


def test_set_task_distribution_applies_at_next_reset(family: Family, space: ParamSpace) -> None:
    env = family.make_env()
    env.reset(seed=0)
    pole = env.model.body("pole").id
    nominal_mass = env.model.body_mass[pole]
    env.set_task_distribution(
        TaskDistribution.point(space, {"pole_mass": 2.0}, fidelity="coarse").to_dict()
    )
    assert env.model.body_mass[pole] == nominal_mass  # the running episode is unchanged
    assert env.step(np.zeros(1))[4]["fidelity"] == "fine"
    _, info = env.reset()
    assert info["theta"]["pole_mass"] == 2.0 and info["fidelity"] == "coarse"
    assert env.model.body_mass[pole] == pytest.approx(2.0 * nominal_mass)
    assert env.model.opt.timestep == 0.04 and env.fidelity == "coarse"


def test_set_task_distribution_validates(family: Family, space: ParamSpace) -> None:
    env = family.make_env()
    with pytest.raises(ValueError, match=f"2 dims, parameter space has {space.dim} "):
        env.set_task_distribution(TaskDistribution([(1.0, [0.5, 0.5], [0.5, 0.5])]))
    with pytest.raises(ValueError, match="cannot simulate fidelity 'surrogate'"):
        env.set_task_distribution(TaskDistribution.uniform(space, fidelity="surrogate"))
    with pytest.raises(TypeError):
        env.set_task_distribution([1, 2, 3])


def test_reset_options_theta(family: Family) -> None:
    env = family.make_env()
    _, info = env.reset(seed=0, options={"theta": {"cart_mass": 1.5}})
    assert info["theta"]["cart_mass"] == 1.5 and env.theta["cart_mass"] == 1.5
    _, info = env.reset()
    assert info["theta"]["cart_mass"] == 1.0


def test_models_are_cached_per_theta(family: Family, space: ParamSpace) -> None:
    env = family.make_env({"hinge_damping": 2.0, "obs_noise_std": 0.01})
    env.reset(seed=0)
    model = env.model
    env.reset()
    assert env.model is model
    env.reset(options={"theta": {"hinge_damping": 2.0, "latency_steps": 1}})
    assert env.model is model  # channel parameters do not need a new model
    env.reset(options={"theta": {"hinge_damping": 3.0}})
    assert env.model is not model
    uniform = family.make_env(distribution=TaskDistribution.uniform(space))
    masses = set()
    for seed in range(40):  # more distinct thetas than the cache holds
        uniform.reset(seed=seed)
        masses.add(float(uniform.model.body_mass[2]))
    assert len(masses) == 40


def test_constructor_validation(family: Family, space: ParamSpace) -> None:
    with pytest.raises(ValueError, match="either theta or distribution"):
        family.make_env({"pole_mass": 1.2}, distribution=TaskDistribution.uniform(space))
    with pytest.raises(ValueError, match="disagrees"):
        family.make_env(fidelity="fine", distribution=TaskDistribution.uniform(space, "coarse"))
    with pytest.raises(ValueError, match="foo: not a parameter of family 'inverted_pendulum'"):
        family.make_env(space=ParamSpace.from_dict({"foo": {"low": 0, "high": 1, "nominal": 0}}))
    bad = space.with_overrides({"actuator_gain": {"low": 0.0}})
    with pytest.raises(ValueError, match=r"actuator_gain\.low: a scale factor must be > 0"):
        family.make_env(space=bad)
    with pytest.raises(ValueError, match="outside the parameter space"):
        family.make_env({"pole_mass": 100.0})


def test_env_config_mapping(family: Family, space: ParamSpace) -> None:
    sub = space.with_overrides({"pole_mass": {"high": 4.0}})
    dist = TaskDistribution.point(sub, {"pole_mass": 3.0}, fidelity="coarse")
    config = {
        "family": "inverted_pendulum",
        "space": sub.to_dict(),
        "distribution": dist.to_dict(),
        "worker_index": 1,  # RLlib adds such keys; they are ignored
    }
    for env in (TaskEnv(config), TaskEnv.from_config(config)):
        _, info = env.reset(seed=0)
        assert info["theta"]["pole_mass"] == 3.0 and info["fidelity"] == "coarse"
        assert env.space == sub and env.family is family
    assert TaskEnv("inverted_pendulum").reset(seed=0)[1]["theta"] == family.space.nominal()
    with pytest.raises(ValueError, match="'family' key"):
        TaskEnv({"fidelity": "fine"})
    with pytest.raises(ValueError, match="unknown task family 'nope'"):
        TaskEnv({"family": "nope"})


def test_vector_env(family: Family, space: ParamSpace) -> None:
    venv = family.make_vector_env(3, distribution=TaskDistribution.uniform(space))
    obs, infos = venv.reset(seed=0)
    assert obs.shape == (3, 4)
    assert len(set(infos["theta"]["pole_mass"])) == 3
    obs, rewards, *_ = venv.step(np.zeros((3, 1), np.float32))
    assert obs.shape == (3, 4) and rewards.shape == (3,)
    venv.call("set_task_distribution", TaskDistribution.point(space, {"cart_mass": 0.7}))
    _, infos = venv.reset(seed=1)
    np.testing.assert_allclose(infos["theta"]["cart_mass"], 0.7)
    venv.close()
    with pytest.raises(ValueError, match="n must be >= 1"):
        family.make_vector_env(0)


def test_env_pickles_mid_episode(family: Family, space: ParamSpace) -> None:
    env = family.make_env(distribution=TaskDistribution.uniform(space))
    env.reset(seed=4)
    env.step(np.array([0.3]))
    clone = pickle.loads(pickle.dumps(env))
    for action in ([0.5], [-1.0], [2.0]):
        a, b = env.step(np.array(action)), clone.step(np.array(action))
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:4] == b[1:4]
