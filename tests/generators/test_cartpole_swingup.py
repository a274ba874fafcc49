"""The cartpole_swingup family: dm_control parity, tolerance, every parameter, reality proxy."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import mujoco
import numpy as np
import pytest
from gymnasium.utils import seeding

import generators
from generators import Family, RealityProxy, TaskDistribution
from generators.cartpole_swingup import TASK, swingup_reward
from generators.rewards import SIGMOIDS, sigmoids, tolerance

Rollout = Callable[..., dict]
NAME, REALITY = "cartpole_swingup", "dm_control/cartpole-swingup"
PHYSICAL = [
    "pole_mass",
    "pole_length",
    "cart_mass",
    "slider_damping",
    "hinge_damping",
    "slider_friction",
    "actuator_gain",
    "gravity",
]
MODEL_FIELDS = (
    "body_mass",
    "body_inertia",
    "body_ipos",
    "body_pos",
    "dof_damping",
    "dof_frictionloss",
    "jnt_range",
    "jnt_solref",
    "actuator_gear",
    "actuator_ctrlrange",
    "qpos0",
)


@pytest.fixture
def cartpole() -> Family:
    return generators.get_family(NAME)


@pytest.fixture
def cartpole_proxy() -> RealityProxy:
    return generators.get_reality(REALITY)


def _swing_up(model: mujoco.MjModel) -> Callable[[int, np.ndarray], np.ndarray]:
    """Energy-pumping swing-up plus PD balance, for a model's pole (privileged physics)."""
    pole = model.body("pole_1").id
    m, half = model.body_mass[pole], model.body_ipos[pole][2]
    g, gear = -model.opt.gravity[2], model.actuator_gear[0, 0]
    inertia = model.body_inertia[pole][0] + m * half**2

    def policy(t: int, obs: np.ndarray) -> np.ndarray:
        del t
        x, c, s, xd, wd = obs
        if c > 0.85:
            u = (40 * math.atan2(s, c) + 6 * wd + 2 * x + 3 * xd) * 10 / gear
        else:
            energy = 0.5 * inertia * wd**2 + m * g * half * (c - 1)
            pump = 1.0 if wd * c > 0 else -1.0  # push against the pole's swing
            u = pump * 3 * energy / (m * g * half) - 0.3 * x - 0.3 * xd
        return np.array([np.clip(u, -1, 1)], dtype=np.float32)

    return policy


# ---------------------------------------------------------------------------------------------
# tolerance, dm_control's soft indicator


def test_tolerance_formulas() -> None:
    assert tolerance(0.3, bounds=(0.0, 1.0), margin=0.5) == 1.0  # inside: exactly 1
    assert tolerance(1.5, bounds=(0.0, 1.0), margin=0.5) == pytest.approx(0.1)  # at margin
    assert tolerance(2.0, margin=2.0, value_at_margin=0.3) == pytest.approx(0.3)
    d = 0.7  # gaussian: value_at_margin ** (d / margin) ** 2
    assert tolerance(d, margin=2.0) == pytest.approx(0.1 ** ((d / 2.0) ** 2))
    assert tolerance(-d, margin=2.0) == tolerance(d, margin=2.0)  # symmetric about the bounds
    assert tolerance(0.5, margin=1.0, value_at_margin=0.0, sigmoid="quadratic") == 0.75
    assert tolerance(1.0, margin=1.0, value_at_margin=0.0, sigmoid="quadratic") == 0.0
    assert tolerance(0.5, margin=1.0, value_at_margin=0.0, sigmoid="linear") == 0.5
    assert tolerance(2.0, bounds=(0.0, 1.0)) == 0.0  # margin 0: hard indicator
    x = np.array([-3.0, 0.0, 0.5, 4.0])
    out = tolerance(x, bounds=(0.0, 1.0), margin=1.0)
    assert isinstance(out, np.ndarray) and out.shape == x.shape
    assert isinstance(tolerance(0.5), float)
    with pytest.raises(ValueError, match="bounds"):
        tolerance(0.0, bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="margin"):
        tolerance(0.0, margin=-1.0)
    with pytest.raises(ValueError, match="unknown sigmoid 'cubic'"):
        tolerance(2.0, margin=1.0, sigmoid="cubic")
    with pytest.raises(ValueError, match="value_at_1"):
        sigmoids(0.5, 0.0, "gaussian")


@pytest.mark.parametrize("kind", SIGMOIDS)
def test_sigmoids_are_bumps(kind: str) -> None:
    x = np.linspace(0.0, 3.0, 61)
    y = sigmoids(x, 0.25, kind)
    assert y[0] == pytest.approx(1.0)
    assert y[20] == pytest.approx(0.25)  # x == 1
    assert np.all(np.diff(y) <= 1e-12) and np.all((y >= 0) & (y <= 1))


@pytest.mark.parametrize("kind", SIGMOIDS)
def test_tolerance_matches_dm_control(kind: str) -> None:
    reference = pytest.importorskip("dm_control.utils.rewards")  # pure numpy, no MuJoCo
    x = np.linspace(-4.0, 4.0, 81)
    for value in (0.0, 0.1, 0.6):
        if value == 0.0 and kind not in ("cosine", "linear", "quadratic"):
            continue
        kwargs = {"bounds": (-0.5, 1.0), "margin": 1.3, "sigmoid": kind, "value_at_margin": value}
        np.testing.assert_allclose(
            tolerance(x, **kwargs), reference.tolerance(x, **kwargs), atol=1e-12
        )


def test_swingup_reward_terms() -> None:
    assert swingup_reward(0.0, 1.0, 0.0, 0.0) == 1.0  # upright, centered, still, no control
    assert swingup_reward(0.0, -1.0, 0.0, 0.0) == 0.0  # hanging down
    assert swingup_reward(0.0, 1.0, 1.0, 0.0) == pytest.approx(0.8)  # full control: (4+0)/5
    assert swingup_reward(0.0, 1.0, 0.0, 5.0) == pytest.approx(0.55)  # (1 + 0.1) / 2
    assert swingup_reward(2.0, 1.0, 0.0, 0.0) == pytest.approx(0.55)
    assert swingup_reward(0.0, 0.0, 0.0, 0.0) == 0.5


# ---------------------------------------------------------------------------------------------
# Family, interface and parity with dm_control


def test_space_and_attributes(cartpole: Family) -> None:
    space = cartpole.space
    assert space.names == [*PHYSICAL, "latency_steps", "obs_noise_std", "deadzone"]
    for name in PHYSICAL:
        p = space[name]
        assert p.nominal == (0.0 if name == "slider_friction" else 1.0)
        assert p.low < p.nominal < p.high or (p.low == p.nominal == 0.0)
    assert space["latency_steps"].integer and space["deadzone"].high < 1
    assert cartpole.fidelities == ("coarse", "fine")
    assert cartpole.model_params == tuple(PHYSICAL)
    assert cartpole.absolute_params == ("slider_friction",)
    assert (cartpole.max_return, cartpole.max_episode_steps) == (1000.0, 1000)
    cartpole.check_space(space)


def test_nominal_model_matches_dm_control_xml(
    cartpole: Family, cartpole_proxy: RealityProxy
) -> None:
    ours = cartpole.build_model()
    theirs = mujoco.MjModel.from_xml_path(str(cartpole_proxy.xml_path))
    for field in MODEL_FIELDS:
        np.testing.assert_allclose(getattr(ours, field), getattr(theirs, field), atol=1e-12)
    assert (ours.nq, ours.nv, ours.nu) == (theirs.nq, theirs.nv, theirs.nu) == (2, 2, 1)
    assert ours.opt.integrator == theirs.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert ours.opt.timestep == theirs.opt.timestep == 0.01
    assert ours.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_CONTACT
    np.testing.assert_allclose(ours.opt.gravity, theirs.opt.gravity)


def test_env_interface(cartpole: Family, rollout: Rollout) -> None:
    env = cartpole.make_env()
    assert env.observation_space.shape == (5,) and env.observation_space.dtype == np.float64
    assert env.action_space.shape == (1,)
    assert (env.action_space.low[0], env.action_space.high[0]) == (-1.0, 1.0)
    assert env.dt == pytest.approx(0.01)
    out = rollout(env, lambda t, o: np.ones(1), seed=0, steps=1200)
    assert len(out["reward"]) == 1000 and out["truncated"][-1]
    assert not any(out["terminated"]) and not any(out["truncated"][:-1])
    assert all(0.0 <= r <= 1.0 for r in out["reward"])


def test_initial_state_is_swingup(cartpole: Family) -> None:
    env = cartpole.make_env()
    starts = np.array([env.reset(seed=s)[0] for s in range(50)])
    assert np.abs(starts[:, 0]).max() < 0.05 and np.all(starts[:, 1] < -0.999)  # pole down
    assert 0.003 < starts[:, 0].std() < 0.02 and np.abs(starts[:, 3:]).max() < 0.05


def _dm_control_rollout(model: mujoco.MjModel, seed: int, actions: np.ndarray) -> tuple:
    """dm_control's Environment.step semantics on ``model``, written with raw MuJoCo.

    The observation reads the pole's ``xmat`` (``zz``, ``xz``) after ``mj_step`` +
    ``mj_step1`` (dm_control's legacy step); the reward uses dm_control's own ``tolerance``.
    """
    reference = pytest.importorskip("dm_control.utils.rewards")
    data = mujoco.MjData(model)
    TASK.initialize_episode(model, data, seeding.np_random(seed)[0])

    def observe() -> np.ndarray:
        xmat = data.xmat[model.body("pole_1").id]
        return np.array([data.qpos[0], xmat[8], xmat[2], *data.qvel])

    observations, rewards = [observe()], []
    for action in actions:
        data.ctrl[:] = action
        mujoco.mj_step(model, data)
        mujoco.mj_step1(model, data)
        observations.append(observe())
        upright = (data.xmat[model.body("pole_1").id][8] + 1) / 2
        centered = (1 + reference.tolerance(data.qpos[0], margin=2)) / 2
        small_control = reference.tolerance(
            data.ctrl, margin=1, value_at_margin=0, sigmoid="quadratic"
        )[0]
        small_velocity = (1 + reference.tolerance(data.qvel[1:], margin=5).min()) / 2
        rewards.append(upright * (4 + small_control) / 5 * small_velocity * centered)
    return np.array(observations), np.array(rewards)


def test_trajectory_matches_dm_control_semantics(
    cartpole: Family, cartpole_proxy: RealityProxy, rollout: Rollout
) -> None:
    actions = np.random.default_rng(0).uniform(-1, 1, size=(200, 1))
    xml_model = mujoco.MjModel.from_xml_path(str(cartpole_proxy.xml_path))
    ref_obs, ref_rew = _dm_control_rollout(xml_model, 5, actions)
    for env in (cartpole.make_env(), cartpole_proxy.make_env()):
        out = rollout(env, list(actions), seed=5, steps=len(actions))
        np.testing.assert_allclose(np.array(out["obs"]), ref_obs, atol=1e-9)
        np.testing.assert_allclose(out["reward"], ref_rew, atol=1e-9)


def test_swing_up_controller_solves_nominal(
    cartpole: Family, cartpole_proxy: RealityProxy, rollout: Rollout
) -> None:
    envs = [cartpole.make_env(fidelity=f) for f in ("fine", "coarse")]
    for env in [*envs, cartpole_proxy.make_env()]:
        env.reset(seed=0)
        out = rollout(env, _swing_up(env.model), seed=0, steps=1000)
        assert sum(out["reward"]) > 600
        assert np.array(out["obs"])[-200:, 1].min() > 0.95  # balanced upright at the end


# ---------------------------------------------------------------------------------------------
# Parameters


def _final_state(model: mujoco.MjModel, steps: int = 150) -> np.ndarray:
    """Swing a tilted pole under a fixed push pattern; return the final state."""
    data = mujoco.MjData(model)
    data.qpos[:] = [0.1, 2.0]
    data.qvel[:] = [0.5, 1.0]
    for t in range(steps):
        data.ctrl[:] = 0.3 if (t // 25) % 2 else -0.3
        mujoco.mj_step(model, data, nstep=TASK.n_substeps(model))
    return np.concatenate([data.qpos, data.qvel])


def _body(model: mujoco.MjModel, name: str) -> int:
    return model.body(name).id


def _check_model(name: str, nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    pole, cart = _body(nominal, "pole_1"), _body(nominal, "cart")
    slider, hinge = nominal.joint("slider").dofadr[0], nominal.joint("hinge_1").dofadr[0]
    if name == "pole_mass":
        assert scaled.body_mass[pole] == pytest.approx(s * nominal.body_mass[pole])
        assert scaled.body_mass[cart] == nominal.body_mass[cart]
    elif name == "pole_length":
        assert scaled.body_mass[pole] == pytest.approx(nominal.body_mass[pole])
        assert scaled.body_ipos[pole][2] == pytest.approx(s * nominal.body_ipos[pole][2])
    elif name == "cart_mass":
        assert scaled.body_mass[cart] == pytest.approx(s * nominal.body_mass[cart])
        assert scaled.body_mass[pole] == nominal.body_mass[pole]
    elif name == "slider_damping":
        assert scaled.dof_damping[slider] == pytest.approx(s * nominal.dof_damping[slider])
        assert scaled.dof_damping[hinge] == nominal.dof_damping[hinge]
    elif name == "hinge_damping":
        assert scaled.dof_damping[hinge] == pytest.approx(s * nominal.dof_damping[hinge])
        assert scaled.dof_damping[slider] == nominal.dof_damping[slider]
    elif name == "slider_friction":  # absolute, N
        assert nominal.dof_frictionloss[slider] == 0.0
        assert scaled.dof_frictionloss[slider] == pytest.approx(s)
        assert scaled.dof_frictionloss[hinge] == 0.0
    elif name == "actuator_gain":
        assert scaled.actuator_gear[0, 0] == pytest.approx(s * nominal.actuator_gear[0, 0])
    elif name == "gravity":
        np.testing.assert_allclose(scaled.opt.gravity, s * nominal.opt.gravity)
    else:
        raise AssertionError(f"no model check for {name}")


@pytest.mark.parametrize("name", PHYSICAL)
@pytest.mark.parametrize("fidelity", ["fine", "coarse"])
def test_parameter_changes_model_and_dynamics(cartpole: Family, name: str, fidelity: str) -> None:
    value = cartpole.space[name].high
    nominal = cartpole.build_model(None, fidelity)
    scaled = cartpole.build_model({name: value}, fidelity)
    _check_model(name, nominal, scaled, value)
    change = np.abs(_final_state(scaled) - _final_state(nominal)).max()
    assert change > 1e-3, f"{name} does not change the dynamics ({change})"


def test_channel_parameters(cartpole: Family, rollout: Rollout) -> None:
    nominal = cartpole.build_model()
    other = cartpole.build_model({"latency_steps": 2, "obs_noise_std": 0.05, "deadzone": 0.1})
    for field in MODEL_FIELDS:
        np.testing.assert_array_equal(getattr(nominal, field), getattr(other, field))

    push, rest = np.ones(1), np.zeros(1)
    delayed = rollout(cartpole.make_env({"latency_steps": 2}), [push] + [rest] * 4, steps=5)
    shifted = rollout(cartpole.make_env(), [rest, rest, push, rest, rest], steps=5)
    np.testing.assert_array_equal(np.array(delayed["obs"]), np.array(shifted["obs"]))

    noisy = rollout(cartpole.make_env({"obs_noise_std": 0.05}), [rest] * 300, steps=300)
    clean = rollout(cartpole.make_env(), [rest] * 300, steps=300)
    assert np.std(np.array(noisy["obs"]) - np.array(clean["obs"])) == pytest.approx(0.05, rel=0.1)

    small = [np.array([0.08])] * 5
    dead = rollout(cartpole.make_env({"deadzone": 0.1}), small, steps=5)
    idle = rollout(cartpole.make_env(), [rest] * 5, steps=5)
    live = rollout(cartpole.make_env({"deadzone": 0.05}), small, steps=5)
    np.testing.assert_array_equal(np.array(dead["obs"]), np.array(idle["obs"]))
    assert not np.allclose(np.array(live["obs"]), np.array(idle["obs"]))


def test_validation(cartpole: Family) -> None:
    with pytest.raises(ValueError, match="slider_friction: value must be finite and >= 0"):
        cartpole.build_model({"slider_friction": -0.1})
    with pytest.raises(ValueError, match="gravity: scale factor must be finite and > 0"):
        cartpole.build_model({"gravity": 0.0})
    with pytest.raises(ValueError, match="deadzone: must be in"):
        cartpole.build_model({"deadzone": 1.0})
    with pytest.raises(ValueError, match="cannot simulate fidelity 'surrogate'"):
        cartpole.build_model(fidelity="surrogate")
    with pytest.raises(ValueError, match=r"deadzone\.high: must be < 1"):
        cartpole.check_space(cartpole.space.with_overrides({"deadzone": {"high": 1.0}}))
    with pytest.raises(ValueError, match=r"slider_friction\.low: must be >= 0"):
        cartpole.check_space(cartpole.space.with_overrides({"slider_friction": {"low": -1.0}}))


def test_fidelities(cartpole: Family) -> None:
    fine, coarse = cartpole.build_model(fidelity="fine"), cartpole.build_model(fidelity="coarse")
    assert fine.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert coarse.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
    assert coarse.opt.iterations < fine.opt.iterations
    assert TASK.n_substeps(fine) == TASK.n_substeps(coarse) == 1  # same control dt
    np.testing.assert_array_equal(fine.body_mass, coarse.body_mass)
    a, b = _final_state(fine, 20), _final_state(coarse, 20)
    assert 0 < np.abs(a - b).max() < 0.1  # close, not identical


def test_determinism(cartpole: Family, rollout: Rollout) -> None:
    distribution = TaskDistribution.uniform(cartpole.space, "coarse")
    actions = list(np.random.default_rng(1).uniform(-1, 1, size=(100, 1)))
    runs = []
    for _ in range(2):
        env = cartpole.make_env(distribution=distribution)
        first = rollout(env, actions, seed=3, steps=100)
        second = rollout(env, actions, seed=None, steps=100)  # next episode, next theta
        runs.append((first, second))
    for a, b in zip(runs[0], runs[1], strict=True):
        np.testing.assert_array_equal(np.array(a["obs"]), np.array(b["obs"]))
        assert a["reward"] == b["reward"] and a["info"][0]["theta"] == b["info"][0]["theta"]
    assert runs[0][0]["info"][0]["theta"] != runs[0][1]["info"][0]["theta"]


def test_random_actions_for_1000_steps(cartpole: Family, cartpole_proxy: RealityProxy) -> None:
    params = {"pole_mass": 1.6, "slider_friction": 0.3, "latency_steps": 2, "deadzone": 0.05}
    envs = [
        cartpole.make_env(distribution=TaskDistribution.uniform(cartpole.space, "coarse")),
        cartpole_proxy.make_env(params, deadzone=0.05),
    ]
    for env in envs:
        env.action_space.seed(0)
        env.reset(seed=0)
        for _ in range(1000):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert np.isfinite(obs).all() and 0.0 <= reward <= 1.0 and not info["unstable"]
            if terminated or truncated:
                env.reset()


# ---------------------------------------------------------------------------------------------
# Reality proxy


def test_proxy_loads_dm_controls_own_file(cartpole_proxy: RealityProxy) -> None:
    dm_control = pytest.importorskip("dm_control")
    path = cartpole_proxy.xml_path.resolve()
    assert path.name == "cartpole.xml"
    assert Path(dm_control.__file__).resolve().parent in path.parents
    assert not list(Path(generators.__file__).parent.rglob("*.xml"))  # no copy in the repo
    spec = mujoco.MjSpec.from_file(str(path))  # ./common/*.xml includes resolve
    assert spec.material("self") is not None and spec.texture("grid") is not None
    assert cartpole_proxy.family == NAME and generators.REALITIES[REALITY] is cartpole_proxy


@pytest.mark.parametrize("name", PHYSICAL)
def test_proxy_params_mean_the_same(
    cartpole_proxy: RealityProxy, cartpole: Family, name: str
) -> None:
    value = cartpole.space[name].high
    nominal, scaled = cartpole_proxy.build_model(), cartpole_proxy.build_model({name: value})
    ours = cartpole.build_model({name: value})
    _check_model(name, nominal, scaled, value)
    for field in MODEL_FIELDS:
        np.testing.assert_allclose(getattr(scaled, field), getattr(ours, field), atol=1e-12)
    np.testing.assert_allclose(scaled.opt.gravity, ours.opt.gravity)


def test_proxy_deadzone_as_param_or_argument(cartpole_proxy: RealityProxy) -> None:
    assert cartpole_proxy.make_env({"deadzone": 0.1})._proxy_effects.deadzone == 0.1
    assert cartpole_proxy.make_env(deadzone=0.1)._proxy_effects.deadzone == 0.1
    assert cartpole_proxy.make_env({"deadzone": 0.1}, deadzone=0.1)._proxy_effects.deadzone == 0.1
    with pytest.raises(ValueError, match="deadzone: given as a parameter"):
        cartpole_proxy.make_env({"deadzone": 0.1}, deadzone=0.2)
    env = cartpole_proxy.make_env({"latency_steps": 1, "obs_noise_std": 0.01})
    _, info = env.reset(seed=0)
    assert info == {"fidelity": "real", "unstable": False}
