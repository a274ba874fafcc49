"""The hopper family and its reality proxy: Gymnasium parity, every parameter, terrain, guard."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import generators
from generators import Family, RealityProxy, TaskDistribution
from generators.hopper import MOTOR_JOINTS
from generators.terrain import SINK, bump_profile, ground_height

Rollout = Callable[..., dict[str, list]]
REALITY = "gymnasium/Hopper-v5"
PHYSICAL = [
    "torso_mass",
    "leg_mass",
    "thigh_length",
    "leg_length",
    "joint_damping",
    "friction",
    "actuator_gain",
    "gravity",
]
TERRAIN = ["terrain_roughness", "terrain_slope"]
CHANNEL = ["latency_steps", "obs_noise_std", "deadzone"]
MODEL_FIELDS = (
    "body_mass",
    "body_inertia",
    "body_pos",
    "geom_size",
    "geom_pos",
    "geom_friction",
    "dof_damping",
    "actuator_gear",
    "qpos0",
)


@pytest.fixture
def hopper() -> Family:
    return generators.get_family("hopper")


@pytest.fixture
def hopper_proxy() -> RealityProxy:
    return generators.get_reality(REALITY)


@pytest.fixture(scope="module")
def gym_env() -> Iterator[gym.Env]:
    env = gym.make("Hopper-v5")
    yield env
    env.close()


def _bump_x(level: float = 0.5) -> float:
    """x of the first bump whose peak reaches ``level`` of the profile's maximum."""
    profile = bump_profile(0)
    x = np.linspace(0.0, 60.0, profile.size)
    peaks = (profile[1:-1] > profile[:-2]) & (profile[1:-1] >= profile[2:])
    peaks &= profile[1:-1] >= level
    return float(x[1:-1][peaks][0])


def _drop(model: mujoco.MjModel, steps: int = 80, substeps: int | None = None) -> np.ndarray:
    """Drop the hopper from 0.75 m over a bump under fixed controls; return the final state."""
    substeps = substeps or round(0.008 / model.opt.timestep)
    data = mujoco.MjData(model)
    data.qpos[:] = model.qpos0
    data.qpos[0] = _bump_x()
    data.qpos[1] += 0.75  # above any terrain of the default space at that x
    for _ in range(steps):
        data.ctrl[:] = [0.3, -0.3, 0.2]
        mujoco.mj_step(model, data, nstep=substeps)
    return np.concatenate([data.qpos, data.qvel])


def _foot_bottom(model: mujoco.MjModel) -> float:
    """Lowest point of the foot capsule at the reset pose."""
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    geom = model.geom("foot_geom").id
    axis = data.geom_xmat[geom].reshape(3, 3)[:, 2]
    radius, half = model.geom_size[geom][:2]
    return float(data.geom_xpos[geom][2] - half * abs(axis[2]) - radius)


# ---------------------------------------------------------------------------------------------
# Interface and parity with Gymnasium


def test_space_and_attributes(hopper: Family) -> None:
    space = hopper.space
    assert space.names == [*PHYSICAL, *TERRAIN, *CHANNEL]
    for name in PHYSICAL:
        p = space[name]
        assert p.nominal == 1.0 and p.low < 1.0 < p.high and not p.integer
    assert (space["terrain_roughness"].low, space["terrain_roughness"].nominal) == (0.0, 0.0)
    slope = space["terrain_slope"]
    assert (slope.low, slope.nominal, slope.high) == (-0.1, 0.0, 0.1)
    lat = space["latency_steps"]
    assert (lat.low, lat.high, lat.nominal, lat.integer) == (0.0, 3.0, 0.0, True)
    assert space["deadzone"].high < 1.0
    assert hopper.fidelities == ("coarse", "fine")
    assert hopper.max_episode_steps == 1000
    assert hopper.model_params == (*PHYSICAL, *TERRAIN)
    hopper.check_space(space)  # a negative slope bound is fine


def test_nominal_model_matches_gymnasium(hopper: Family, gym_env: gym.Env) -> None:
    ours, theirs = hopper.build_model(), gym_env.unwrapped.model
    np.testing.assert_allclose(ours.body_mass, theirs.body_mass, rtol=0.01)
    for field in (
        *MODEL_FIELDS,
        "body_ipos",
        "geom_quat",
        "geom_condim",
        "geom_margin",
        "geom_solref",
        "geom_solimp",
        "jnt_range",
        "jnt_pos",
        "jnt_axis",
        "dof_armature",
        "actuator_ctrlrange",
    ):
        np.testing.assert_allclose(getattr(ours, field), getattr(theirs, field), atol=1e-9)
    assert ours.opt.integrator == theirs.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert ours.opt.timestep == theirs.opt.timestep == 0.002
    assert ours.nhfield == 0  # flat terrain is Gymnasium's floor plane
    np.testing.assert_allclose(ours.opt.gravity, [0, 0, -9.81])


def test_env_interface_matches_gymnasium(hopper: Family, gym_env: gym.Env) -> None:
    env = hopper.make_env()
    assert env.observation_space == gym_env.observation_space
    assert env.action_space == gym_env.action_space
    assert env.dt == pytest.approx(gym_env.unwrapped.dt) == pytest.approx(0.008)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(hopper.make_env(), skip_render_check=True)


def test_trajectory_matches_gymnasium(hopper: Family, gym_env: gym.Env) -> None:
    env = hopper.make_env()
    for seed in (11, 12):
        ours, _ = env.reset(seed=seed)
        theirs, _ = gym_env.reset(seed=seed)
        np.testing.assert_allclose(ours, theirs)  # same reset noise from the same seed
        actions = np.random.default_rng(seed).uniform(-1, 1, size=(100, 3)).astype(np.float32)
        for action in actions:
            ours, r1, term1, trunc1, _ = env.step(action)
            theirs, r2, term2, _, _ = gym_env.step(action)
            np.testing.assert_allclose(ours, theirs, atol=1e-8)
            assert r1 == pytest.approx(r2, abs=1e-6) and term1 == term2 and not trunc1
            if term1:
                break
        assert term1  # random actions topple it: termination parity was exercised


def test_reward_terms(hopper: Family) -> None:
    env = hopper.make_env()
    env.reset(seed=0)
    x0 = env.data.qpos[0]
    action = np.array([0.5, -0.5, 1.0], dtype=np.float32)
    _, reward, terminated, _, _ = env.step(action)
    assert not terminated
    speed = (env.data.qpos[0] - x0) / 0.008
    assert reward == pytest.approx(1.0 + speed - 1e-3 * 1.5)
    # the state-only variant agrees up to the velocity estimate
    approx = env.task.reward(env.model, env.data, False)
    assert approx == pytest.approx(reward, abs=0.05)


def test_truncation_after_1000_steps(hopper: Family) -> None:
    env = hopper.make_env()
    env.reset(seed=0)
    steps = 0
    while True:
        steps += 1
        # Keep it healthy by resetting the state; the env's own step counter must truncate.
        env.data.qpos[:] = env.model.qpos0
        env.data.qvel[:] = 0.0
        _, _, terminated, truncated, _ = env.step(np.zeros(3))
        assert not terminated
        if truncated:
            break
    assert steps == 1000


def test_termination_is_relative_to_the_sloped_ground(hopper: Family) -> None:
    model = hopper.build_model({"terrain_slope": 0.1})
    data = mujoco.MjData(model)
    data.qpos[:] = model.qpos0
    data.qpos[0] = 10.0
    assert ground_height(model, 10.0) == pytest.approx(1.0)
    data.qpos[1] = 1.0 + 1.25  # 1.25 m above the ground at x = 10
    assert not hopper.task.terminated(model, data)
    data.qpos[1] = 1.25  # absolute height as at the start, but only 0.25 m above the ground
    assert hopper.task.terminated(model, data)
    data.qpos[1], data.qpos[2] = 2.25, 0.25  # torso tilted beyond v5's 0.2 rad
    assert hopper.task.terminated(model, data)


# ---------------------------------------------------------------------------------------------
# Every parameter changes the model and the dynamics

EffectCheck = Callable[[mujoco.MjModel, mujoco.MjModel, float], None]
MODEL_EFFECTS: dict[str, EffectCheck] = {}


def _effect(name: str) -> Callable[[EffectCheck], EffectCheck]:
    def register(check: EffectCheck) -> EffectCheck:
        MODEL_EFFECTS[name] = check
        return check

    return register


def _masses(model: mujoco.MjModel, *bodies: str) -> np.ndarray:
    return np.array([model.body_mass[model.body(b).id] for b in bodies])


@_effect("torso_mass")
def _torso_mass(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    torso = nominal.body("torso").id
    assert scaled.body_mass[torso] == pytest.approx(s * nominal.body_mass[torso])
    np.testing.assert_allclose(scaled.body_inertia[torso], s * nominal.body_inertia[torso])
    legs = ("thigh", "leg", "foot")
    np.testing.assert_array_equal(_masses(scaled, *legs), _masses(nominal, *legs))


@_effect("leg_mass")
def _leg_mass(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    legs = ("thigh", "leg", "foot")
    np.testing.assert_allclose(_masses(scaled, *legs), s * _masses(nominal, *legs))
    assert _masses(scaled, "torso") == _masses(nominal, "torso")


def _length_effect(geom: str, child: str) -> EffectCheck:
    def check(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
        g, body = nominal.geom(geom).id, nominal.geom(geom).bodyid[0]
        half = nominal.geom_size[g][1]
        assert scaled.geom_size[g][1] == pytest.approx(s * half)
        assert scaled.geom_size[g][0] == nominal.geom_size[g][0]  # radius unchanged
        assert scaled.body_mass[body] == pytest.approx(nominal.body_mass[body])  # mass held
        extra = 2 * (s - 1) * half
        c = nominal.body(child).id
        assert scaled.body_pos[c][2] == pytest.approx(nominal.body_pos[c][2] - extra)
        assert scaled.qpos0[1] == pytest.approx(nominal.qpos0[1] + extra)  # torso raised
        assert _foot_bottom(scaled) == pytest.approx(_foot_bottom(nominal), abs=1e-9)

    return check


_effect("thigh_length")(_length_effect("thigh_geom", "leg"))
_effect("leg_length")(_length_effect("leg_geom", "foot"))


@_effect("joint_damping")
def _joint_damping(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    dofs = [nominal.joint(j).dofadr[0] for j in MOTOR_JOINTS]
    np.testing.assert_allclose(scaled.dof_damping[dofs], s * nominal.dof_damping[dofs])
    np.testing.assert_array_equal(scaled.dof_damping[:3], 0.0)  # root joints stay undamped


@_effect("friction")
def _friction(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    np.testing.assert_allclose(scaled.geom_friction[:, 0], s * nominal.geom_friction[:, 0])
    np.testing.assert_array_equal(scaled.geom_friction[:, 1:], nominal.geom_friction[:, 1:])


@_effect("actuator_gain")
def _actuator_gain(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    np.testing.assert_allclose(scaled.actuator_gear[:, 0], s * nominal.actuator_gear[:, 0])
    np.testing.assert_array_equal(scaled.actuator_ctrlrange, nominal.actuator_ctrlrange)


@_effect("gravity")
def _gravity(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    np.testing.assert_allclose(scaled.opt.gravity, s * nominal.opt.gravity)
    np.testing.assert_array_equal(scaled.body_mass, nominal.body_mass)


@_effect("terrain_roughness")
def _roughness(nominal: mujoco.MjModel, scaled: mujoco.MjModel, r: float) -> None:
    assert (nominal.nhfield, scaled.nhfield) == (0, 1)
    assert scaled.hfield_size[0][2] == pytest.approx(r + SINK)  # bump tops r above the plane
    assert scaled.geom("terrain").type[0] == mujoco.mjtGeom.mjGEOM_HFIELD
    np.testing.assert_array_equal(scaled.body_mass, nominal.body_mass)


@_effect("terrain_slope")
def _slope(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    assert ground_height(nominal, 10.0) == 0.0
    assert ground_height(scaled, 10.0) == pytest.approx(10.0 * s)
    assert scaled.nhfield == 0


def test_every_model_parameter_has_an_effect_check(hopper: Family) -> None:
    assert sorted(MODEL_EFFECTS) == sorted(hopper.model_params)


@pytest.mark.parametrize("name", [*PHYSICAL, *TERRAIN])
@pytest.mark.parametrize("fidelity", ["fine", "coarse"])
def test_parameter_changes_model_and_dynamics(hopper: Family, name: str, fidelity: str) -> None:
    value = hopper.space[name].high
    nominal = hopper.build_model(None, fidelity)
    scaled = hopper.build_model({name: value}, fidelity)
    MODEL_EFFECTS[name](nominal, scaled, value)
    before, after = _drop(nominal), _drop(scaled)
    assert np.isfinite(after).all()
    assert np.abs(after - before).max() > 1e-3, f"{name} does not change the dynamics"


def test_channel_parameters_leave_the_model_alone(hopper: Family) -> None:
    nominal = hopper.build_model()
    other = hopper.build_model({"latency_steps": 3, "obs_noise_std": 0.05, "deadzone": 0.2})
    for field in MODEL_FIELDS:
        np.testing.assert_array_equal(getattr(nominal, field), getattr(other, field))


def test_channel_parameters_act_on_the_env(hopper: Family, rollout: Rollout) -> None:
    push, rest = np.array([1.0, -1.0, 0.5]), np.zeros(3)
    delayed = rollout(hopper.make_env({"latency_steps": 2}), [push] + [rest] * 5, steps=6)
    shifted = rollout(hopper.make_env(), [rest, rest, push] + [rest] * 3, steps=6)
    np.testing.assert_array_equal(np.array(delayed["obs"]), np.array(shifted["obs"]))

    small = [np.array([0.15, -0.15, 0.1])] * 3
    dead = rollout(hopper.make_env({"deadzone": 0.2}), small, steps=3)
    idle = rollout(hopper.make_env(), [rest] * 3, steps=3)
    live = rollout(hopper.make_env(), small, steps=3)
    np.testing.assert_array_equal(np.array(dead["obs"]), np.array(idle["obs"]))
    assert not np.allclose(np.array(live["obs"]), np.array(idle["obs"]))

    env = hopper.make_env({"obs_noise_std": 0.03})
    env.reset(seed=0)
    errors = []
    for _ in range(300):
        obs, _, terminated, _, _ = env.step(np.zeros(3))
        errors.append(obs - env.task.observation(env.model, env.data))
        if terminated:
            env.reset()
    assert np.std(errors) == pytest.approx(0.03, rel=0.07)


def test_fidelities(hopper: Family) -> None:
    fine, coarse = hopper.build_model(fidelity="fine"), hopper.build_model(fidelity="coarse")
    assert fine.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert coarse.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
    assert (fine.opt.timestep, coarse.opt.timestep) == (0.002, 0.004)
    assert coarse.opt.iterations < fine.opt.iterations
    assert (hopper.task.n_substeps(fine), hopper.task.n_substeps(coarse)) == (4, 2)
    np.testing.assert_array_equal(fine.body_mass, coarse.body_mass)
    a, b = _drop(fine, 100, 4), _drop(coarse, 100, 2)  # same control step, close dynamics
    assert 0 < np.abs(a[:3] - b[:3]).max() < 0.1


def test_determinism(hopper: Family, rollout: Rollout) -> None:
    space = hopper.space
    dist = TaskDistribution.uniform(space, "coarse")
    actions = list(np.random.default_rng(0).uniform(-1, 1, size=(60, 3)))
    runs = []
    for _ in range(2):
        env = hopper.make_env(distribution=dist)
        runs.append(rollout(env, actions, seed=5, steps=60, stop_at_end=False))
    a, b = runs
    np.testing.assert_array_equal(np.array(a["obs"]), np.array(b["obs"]))
    assert a["reward"] == b["reward"] and a["info"][0]["theta"] == b["info"][0]["theta"]
    rough = {"terrain_roughness": 0.08, "terrain_slope": -0.05}
    m1, m2 = hopper.build_model(rough), hopper.build_model(rough)
    np.testing.assert_array_equal(m1.hfield_data, m2.hfield_data)
    np.testing.assert_array_equal(_drop(m1), _drop(m2))


def test_build_model_validation(hopper: Family) -> None:
    with pytest.raises(ValueError, match=r"cannot simulate fidelity 'surrogate'"):
        hopper.build_model(fidelity="surrogate")
    with pytest.raises(ValueError, match="unknown parameter 'colour'"):
        hopper.build_model({"colour": 1.0})
    with pytest.raises(ValueError, match="torso_mass: scale factor must be finite and > 0"):
        hopper.build_model({"torso_mass": 0.0})
    with pytest.raises(ValueError, match="terrain_roughness: must be finite and >= 0"):
        hopper.build_model({"terrain_roughness": -0.01})
    with pytest.raises(ValueError, match="deadzone: must be in"):
        hopper.build_model({"deadzone": 1.5})
    with pytest.raises(ValueError, match="latency_steps: must be a whole number"):
        hopper.build_model({"latency_steps": 0.5})
    bad = hopper.space.with_overrides({"terrain_roughness": {"low": -0.1}})
    with pytest.raises(ValueError, match=r"terrain_roughness\.low: must be >= 0"):
        hopper.check_space(bad)


def test_compile_time(hopper: Family) -> None:
    theta = {"terrain_roughness": 0.05, "terrain_slope": 0.05, "leg_length": 1.2}
    hopper.build_model(theta)  # warm the bump profile cache
    times = []
    for _ in range(5):
        start = time.perf_counter()
        hopper.build_model(theta)
        times.append(time.perf_counter() - start)
    assert min(times) < 0.02  # measured ~2.5 ms; generous for a shared CPU


def test_resting_foot_height_over_a_bump(hopper: Family) -> None:
    x = _bump_x(0.9)
    heights = []
    for roughness in (0.0, 0.05):
        model = hopper.build_model({"terrain_roughness": roughness})
        data = mujoco.MjData(model)
        data.qpos[:] = model.qpos0
        data.qpos[0] = x + 0.065 - 0.0  # foot capsule centre over the bump peak
        data.qpos[1] += 0.1
        for _ in range(50):  # until the foot touches down
            mujoco.mj_step(model, data, nstep=4)
            if data.ncon:
                break
        heights.append(min(data.contact[i].pos[2] for i in range(data.ncon)))
    assert heights[0] == pytest.approx(0.0, abs=0.005)
    assert heights[1] > 0.035  # landed on the bump, not on the plane


def test_stability_guard_catches_blow_ups(hopper: Family) -> None:
    extreme = {"joint_damping": 1e4}  # RK4 explodes on such stiff damping at 0.002 s
    space = hopper.space.with_overrides({"joint_damping": {"high": 1e4}})
    env = hopper.make_env(extreme, "fine", space=space)
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(env.action_space.sample())
    assert terminated and info["unstable"] and reward == 0.0 and np.isfinite(obs).all()
    assert env.unstable_episodes == 1


def test_vector_env_steps(hopper: Family) -> None:
    venv = hopper.make_vector_env(2, distribution=TaskDistribution.uniform(hopper.space, "fine"))
    venv.reset(seed=0)
    for _ in range(20):
        obs, *_ = venv.step(venv.action_space.sample())
    assert obs.shape == (2, 11) and np.isfinite(obs).all()
    venv.close()


# ---------------------------------------------------------------------------------------------
# Reality proxy


def test_proxy_registry_and_file(hopper_proxy: RealityProxy) -> None:
    assert generators.REALITIES[REALITY] is hopper_proxy and hopper_proxy.family == "hopper"
    package = Path(gym.__file__).resolve().parent
    path = hopper_proxy.xml_path.resolve()
    assert path.name == "hopper.xml" and package in path.parents
    assert not list(Path(generators.__file__).parent.rglob("*.xml"))  # no copy in the repo
    assert set(hopper_proxy.param_names) == {*PHYSICAL, *TERRAIN, *CHANNEL}


def test_nominal_proxy_is_gymnasiums_model(hopper_proxy: RealityProxy, hopper: Family) -> None:
    reference = mujoco.MjModel.from_xml_path(str(hopper_proxy.xml_path))
    model = hopper_proxy.build_model()
    for field in MODEL_FIELDS:
        np.testing.assert_allclose(getattr(model, field), getattr(reference, field), rtol=1e-12)


@pytest.mark.parametrize("name", [*PHYSICAL, *TERRAIN])
def test_proxy_params_mean_the_same_as_in_the_family(
    hopper_proxy: RealityProxy, hopper: Family, name: str
) -> None:
    value = hopper.space[name].high
    proxy_model, ours = hopper_proxy.build_model({name: value}), hopper.build_model({name: value})
    for field in (*MODEL_FIELDS, "hfield_size", "hfield_data", "geom_quat"):
        np.testing.assert_allclose(
            getattr(proxy_model, field), getattr(ours, field), rtol=1e-9, atol=1e-12
        )
    np.testing.assert_allclose(proxy_model.opt.gravity, ours.opt.gravity)


def test_config_reality_runs_and_steps(hopper_proxy: RealityProxy, hopper: Family) -> None:
    from loop.config import load_config

    root = Path(__file__).resolve().parents[2]
    cfg, _ = load_config(root / "configs" / "hopper.yaml")
    params = dict(cfg.reality.params)
    assert cfg.task == "hopper" and cfg.reality.env == REALITY
    space = hopper.space.with_overrides(
        {n: {k: v for k, v in vars(o).items() if v is not None} for n, o in cfg.space.items()}
    )
    assert all(space[n].low <= v <= space[n].high for n, v in params.items())
    moved = [n for n in PHYSICAL if abs(params.get(n, 1.0) - 1.0) >= 0.3 - 1e-9]
    assert len(moved) >= 3 and params["latency_steps"] >= 1 and params["obs_noise_std"] > 0

    rng = np.random.default_rng(0)
    envs = [
        hopper_proxy.make_env(params, deadzone=cfg.reality.deadzone),
        hopper.make_env(distribution=TaskDistribution.uniform(space, "fine")),
    ]
    for env in envs:
        env.reset(seed=0)
        for _ in range(1000):
            obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 3))
            assert np.isfinite(obs).all() and np.isfinite(reward) and not info["unstable"]
            if terminated or truncated:
                env.reset()
        assert env.unstable_episodes == 0
