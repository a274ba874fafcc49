"""The reacher family: Gymnasium Reacher-v5 parity, every parameter, reality proxy."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import generators
from generators import Family, RealityProxy, TaskDistribution
from generators.reacher import TASK

Rollout = Callable[..., dict]
NAME, REALITY = "reacher", "gymnasium/Reacher-v5"
PHYSICAL = [
    "link_mass",
    "armature",
    "link0_length",
    "link1_length",
    "joint_damping",
    "joint_friction",
    "actuator_gain",
    "gravity",
]
MODEL_FIELDS = (
    "body_mass",
    "body_inertia",
    "body_ipos",
    "body_pos",
    "geom_size",
    "dof_damping",
    "dof_armature",
    "dof_frictionloss",
    "jnt_range",
    "actuator_gear",
    "actuator_ctrlrange",
    "qpos0",
)
ARM_DOFS = (0, 1)


@pytest.fixture
def reacher() -> Family:
    return generators.get_family(NAME)


@pytest.fixture
def reacher_proxy() -> RealityProxy:
    return generators.get_reality(REALITY)


@pytest.fixture(scope="module")
def gym_env() -> Iterator[gym.Env]:
    env = gym.make("Reacher-v5")
    yield env
    env.close()


def test_space_and_attributes(reacher: Family) -> None:
    space = reacher.space
    assert space.names == [*PHYSICAL, "latency_steps", "obs_noise_std", "deadzone"]
    for name in PHYSICAL:
        p = space[name]
        assert p.nominal == (0.0 if name == "joint_friction" else 1.0)
        assert p.low < p.nominal < p.high or (p.low == p.nominal == 0.0)
    assert space["latency_steps"].integer and space["deadzone"].high < 1
    assert reacher.fidelities == ("coarse", "fine")
    assert reacher.model_params == tuple(PHYSICAL)
    assert reacher.absolute_params == ("joint_friction",)
    assert (reacher.max_return, reacher.max_episode_steps) == (0.0, 50)
    reacher.check_space(space)


def test_nominal_model_matches_gymnasium(reacher: Family, gym_env: gym.Env) -> None:
    ours, theirs = reacher.build_model(), gym_env.unwrapped.model
    np.testing.assert_allclose(ours.body_mass, theirs.body_mass, rtol=0.01)
    for field in MODEL_FIELDS:
        np.testing.assert_allclose(getattr(ours, field), getattr(theirs, field), atol=1e-9)
    assert ours.opt.integrator == theirs.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert ours.opt.timestep == theirs.opt.timestep == 0.01
    np.testing.assert_allclose(ours.opt.gravity, theirs.opt.gravity)


def test_env_interface_matches_gymnasium(reacher: Family, gym_env: gym.Env) -> None:
    env = reacher.make_env()
    assert env.observation_space == gym_env.observation_space
    assert env.action_space == gym_env.action_space
    assert env.dt == pytest.approx(gym_env.unwrapped.dt) == pytest.approx(0.02)
    assert env.task.max_episode_steps == gym_env.spec.max_episode_steps == 50


def test_trajectory_matches_gymnasium(reacher: Family, gym_env: gym.Env) -> None:
    env = reacher.make_env()
    for seed in (11, 12):
        ours, _ = env.reset(seed=seed)
        theirs, _ = gym_env.reset(seed=seed)
        np.testing.assert_allclose(ours, theirs, atol=1e-12)  # same arm, velocity, target draws
        actions = np.random.default_rng(seed).uniform(-1, 1, size=(50, 2)).astype(np.float32)
        lags = []
        for t, action in enumerate(actions):
            ours, r1, term1, trunc1, _ = env.step(action)
            theirs, r2, term2, trunc2, _ = gym_env.step(action)
            np.testing.assert_allclose(ours[:8], theirs[:8], atol=1e-6)
            assert (term1, trunc1) == (term2, trunc2) == (False, t == 49)
            # Gymnasium reads fingertip - target from the last RK4 stage; ours is the final
            # state's: equal to its positions recomputed after the step.
            lags.append(np.abs(ours[8:] - theirs[8:]).max())
            model, data = gym_env.unwrapped.model, gym_env.unwrapped.data
            mujoco.mj_kinematics(model, data)
            fresh = data.body("fingertip").xpos[:2] - data.body("target").xpos[:2]
            np.testing.assert_allclose(ours[8:], fresh, atol=1e-6)
            expected = -np.linalg.norm(fresh) - float(np.dot(action, action))
            assert r1 == pytest.approx(expected, abs=1e-6)
            assert r1 == pytest.approx(r2, abs=0.02)
        assert 0 < max(lags) < 0.02


def test_target_is_drawn_in_the_disc(reacher: Family) -> None:
    env = reacher.make_env()
    targets = np.array([env.reset(seed=s)[0][4:6] for s in range(200)])
    radii = np.linalg.norm(targets, axis=1)
    assert radii.max() < 0.2 and radii.min() >= 0 and targets.std(axis=0).min() > 0.05
    obs, _ = env.reset(seed=0)
    tip = env.data.body("fingertip").xpos[:2]
    np.testing.assert_allclose(obs[8:], tip - obs[4:6])


def test_reward_is_distance_plus_control_cost(reacher: Family, rollout: Rollout) -> None:
    env = reacher.make_env()
    env.reset(seed=0)
    action = np.array([0.3, -0.4], dtype=np.float32)
    obs, reward, *_ = env.step(action)
    expected = -np.linalg.norm(obs[8:]) - float(np.sum(action.astype(np.float64) ** 2))
    assert reward == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# Parameters


def _final_state(model: mujoco.MjModel, steps: int = 25) -> np.ndarray:
    """Drive the arm with a fixed torque pattern; return joint state and fingertip position."""
    data = mujoco.MjData(model)
    data.qpos[:2] = [0.3, -0.5]
    for t in range(steps):
        data.ctrl[:] = [0.05, -0.04] if (t // 8) % 2 else [-0.03, 0.05]
        mujoco.mj_step(model, data, nstep=TASK.n_substeps(model))
    mujoco.mj_forward(model, data)
    return np.concatenate([data.qpos[:2], data.qvel[:2], data.body("fingertip").xpos])


def _check_model(name: str, nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    links = [nominal.body(b).id for b in ("body0", "body1")]
    if name == "link_mass":
        np.testing.assert_allclose(scaled.body_mass[links], s * nominal.body_mass[links])
        np.testing.assert_allclose(scaled.body_inertia[links], s * nominal.body_inertia[links])
    elif name == "armature":
        np.testing.assert_allclose(
            scaled.dof_armature[list(ARM_DOFS)], s * nominal.dof_armature[list(ARM_DOFS)]
        )
    elif name in ("link0_length", "link1_length"):
        i = int(name[4])
        geom, child = nominal.geom(f"link{i}").id, nominal.body(("body1", "fingertip")[i]).id
        assert scaled.geom_size[geom][1] == pytest.approx(s * nominal.geom_size[geom][1])
        np.testing.assert_allclose(scaled.body_pos[child], s * nominal.body_pos[child])
        assert scaled.body_mass[links[i]] == pytest.approx(nominal.body_mass[links[i]])
    elif name == "joint_damping":
        np.testing.assert_allclose(scaled.dof_damping[:2], s * nominal.dof_damping[:2])
        np.testing.assert_array_equal(scaled.dof_damping[2:], nominal.dof_damping[2:])
    elif name == "joint_friction":  # absolute, N m
        np.testing.assert_array_equal(nominal.dof_frictionloss, 0.0)
        np.testing.assert_allclose(scaled.dof_frictionloss, [s, s, 0.0, 0.0])
    elif name == "actuator_gain":
        np.testing.assert_allclose(scaled.actuator_gear[:, 0], s * nominal.actuator_gear[:, 0])
    elif name == "gravity":
        np.testing.assert_allclose(scaled.opt.gravity, s * nominal.opt.gravity)
    else:
        raise AssertionError(f"no model check for {name}")


@pytest.mark.parametrize("name", PHYSICAL)
@pytest.mark.parametrize("fidelity", ["fine", "coarse"])
def test_parameter_changes_model_and_dynamics(reacher: Family, name: str, fidelity: str) -> None:
    value = reacher.space[name].high
    nominal = reacher.build_model(None, fidelity)
    scaled = reacher.build_model({name: value}, fidelity)
    _check_model(name, nominal, scaled, value)
    change = np.abs(_final_state(scaled) - _final_state(nominal)).max()
    if name == "gravity":
        # Vertical hinges: gravity never acts on the planar arm. The model change above is
        # the whole effect, and this pins down that the dynamics really are unaffected.
        assert change < 1e-9
    elif name == "link_mass":
        assert change > 1e-6, "link_mass does not change the dynamics"  # armature dominates
    else:
        assert change > 1e-3, f"{name} does not change the dynamics ({change})"


def test_channel_parameters(reacher: Family, rollout: Rollout) -> None:
    nominal = reacher.build_model()
    other = reacher.build_model({"latency_steps": 2, "obs_noise_std": 0.02, "deadzone": 0.1})
    for field in MODEL_FIELDS:
        np.testing.assert_array_equal(getattr(nominal, field), getattr(other, field))

    push, rest = np.array([0.5, -0.5]), np.zeros(2)
    delayed = rollout(reacher.make_env({"latency_steps": 2}), [push] + [rest] * 4, steps=5)
    shifted = rollout(reacher.make_env(), [rest, rest, push, rest, rest], steps=5)
    np.testing.assert_array_equal(np.array(delayed["obs"]), np.array(shifted["obs"]))

    noisy = rollout(reacher.make_env({"obs_noise_std": 0.02}), [rest] * 50, steps=50)
    clean = rollout(reacher.make_env(), [rest] * 50, steps=50)
    assert np.std(np.array(noisy["obs"]) - np.array(clean["obs"])) == pytest.approx(0.02, rel=0.1)

    small = [np.array([0.08, -0.08])] * 5
    dead = rollout(reacher.make_env({"deadzone": 0.1}), small, steps=5)
    idle = rollout(reacher.make_env(), [rest] * 5, steps=5)
    live = rollout(reacher.make_env({"deadzone": 0.05}), small, steps=5)
    np.testing.assert_array_equal(np.array(dead["obs"]), np.array(idle["obs"]))
    assert not np.allclose(np.array(live["obs"]), np.array(idle["obs"]))


def test_validation(reacher: Family) -> None:
    with pytest.raises(ValueError, match="joint_friction: value must be finite and >= 0"):
        reacher.build_model({"joint_friction": -1.0})
    with pytest.raises(ValueError, match="armature: scale factor must be finite and > 0"):
        reacher.build_model({"armature": 0.0})
    with pytest.raises(ValueError, match="unknown parameter 'elbow'"):
        reacher.build_model({"elbow": 1.0})
    with pytest.raises(ValueError, match="fidelity 'ultra'"):
        reacher.build_model(fidelity="ultra")


def test_fidelities(reacher: Family) -> None:
    fine, coarse = reacher.build_model(fidelity="fine"), reacher.build_model(fidelity="coarse")
    assert fine.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert coarse.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
    assert (fine.opt.timestep, coarse.opt.timestep) == (0.01, 0.02)
    assert coarse.opt.iterations < fine.opt.iterations
    assert (TASK.n_substeps(fine), TASK.n_substeps(coarse)) == (2, 1)  # same control dt
    a, b = _final_state(fine), _final_state(coarse)
    assert 0 < np.abs(a - b).max() < 0.1  # close, not identical


def test_determinism(reacher: Family, rollout: Rollout) -> None:
    distribution = TaskDistribution.uniform(reacher.space, "coarse")
    actions = list(np.random.default_rng(1).uniform(-1, 1, size=(50, 2)))
    runs = []
    for _ in range(2):
        env = reacher.make_env(distribution=distribution)
        first = rollout(env, actions, seed=3, steps=50)
        second = rollout(env, actions, seed=None, steps=50)  # next episode, next theta
        runs.append((first, second))
    for a, b in zip(runs[0], runs[1], strict=True):
        np.testing.assert_array_equal(np.array(a["obs"]), np.array(b["obs"]))
        assert a["reward"] == b["reward"] and a["info"][0]["theta"] == b["info"][0]["theta"]
    assert runs[0][0]["info"][0]["theta"] != runs[0][1]["info"][0]["theta"]


def test_random_actions_for_1000_steps(reacher: Family, reacher_proxy: RealityProxy) -> None:
    params = {"armature": 0.6, "joint_friction": 2.0, "latency_steps": 1, "deadzone": 0.05}
    envs = [
        reacher.make_env(distribution=TaskDistribution.uniform(reacher.space, "coarse")),
        reacher_proxy.make_env(params),
    ]
    for env in envs:
        env.action_space.seed(0)
        env.reset(seed=0)
        episodes = 0
        for _ in range(1000):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert np.isfinite(obs).all() and reward <= 0.0 and not info["unstable"]
            assert not terminated
            if truncated:
                episodes += 1
                env.reset()
        assert episodes == 20


# ---------------------------------------------------------------------------------------------
# Reality proxy


def test_proxy_loads_gymnasiums_own_file(reacher_proxy: RealityProxy) -> None:
    path = reacher_proxy.xml_path.resolve()
    assert path.name == "reacher.xml"
    assert Path(gym.__file__).resolve().parent in path.parents
    assert reacher_proxy.family == NAME and generators.REALITIES[REALITY] is reacher_proxy


@pytest.mark.parametrize("name", PHYSICAL)
def test_proxy_params_mean_the_same(
    reacher_proxy: RealityProxy, reacher: Family, name: str
) -> None:
    value = reacher.space[name].high
    nominal, scaled = reacher_proxy.build_model(), reacher_proxy.build_model({name: value})
    ours = reacher.build_model({name: value})
    _check_model(name, nominal, scaled, value)
    for field in MODEL_FIELDS:
        np.testing.assert_allclose(getattr(scaled, field), getattr(ours, field), atol=1e-9)
    np.testing.assert_allclose(scaled.opt.gravity, ours.opt.gravity)


def test_proxy_matches_family_trajectory(
    reacher_proxy: RealityProxy, reacher: Family, rollout: Rollout
) -> None:
    params = {"armature": 1.5, "link0_length": 1.2, "joint_friction": 1.0}
    actions = list(np.random.default_rng(2).uniform(-1, 1, size=(50, 2)))
    real = rollout(reacher_proxy.make_env(params), actions, seed=4, steps=50)
    sim = rollout(reacher.make_env(params), actions, seed=4, steps=50)
    np.testing.assert_allclose(np.array(real["obs"]), np.array(sim["obs"]), atol=1e-6)
