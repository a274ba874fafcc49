"""The inverted_pendulum family: parity with Gymnasium, every parameter, fidelities."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from generators import FIDELITIES, Family

PHYSICAL = [
    "pole_mass",
    "pole_length",
    "cart_mass",
    "hinge_damping",
    "slider_damping",
    "slider_friction",
    "actuator_gain",
    "gravity",
]
MODEL_FIELDS = (
    "body_mass",
    "body_inertia",
    "body_ipos",
    "geom_size",
    "jnt_range",
    "dof_damping",
    "dof_frictionloss",
    "actuator_gear",
    "actuator_ctrlrange",
)


@pytest.fixture(scope="module")
def gym_env() -> Iterator[gym.Env]:
    env = gym.make("InvertedPendulum-v5")
    yield env
    env.close()


def test_space_matches_the_architecture(family: Family) -> None:
    space = family.space
    assert space.names == [*PHYSICAL, "latency_steps", "obs_noise_std", "deadzone"]
    expected = {
        "pole_mass": (0.5, 2.0, "log"),
        "pole_length": (0.6, 1.6, "log"),
        "cart_mass": (0.5, 2.0, "log"),
        "hinge_damping": (0.25, 4.0, "log"),
        "slider_damping": (0.25, 4.0, "log"),
        "actuator_gain": (0.5, 1.5, "linear"),
        "gravity": (0.8, 1.2, "linear"),
    }
    for name, (low, high, scale) in expected.items():
        p = space[name]
        assert (p.low, p.high, p.nominal, p.scale, p.integer) == (low, high, 1.0, scale, False)
    friction = space["slider_friction"]  # absolute, N: the reference has no dry friction
    assert (friction.low, friction.high, friction.nominal, friction.scale) == (
        0.0,
        5.0,
        0.0,
        "linear",
    )
    lat, noise = space["latency_steps"], space["obs_noise_std"]
    assert (lat.low, lat.high, lat.nominal, lat.integer) == (0.0, 3.0, 0.0, True)
    assert (noise.low, noise.high, noise.nominal, noise.scale) == (0.0, 0.05, 0.0, "linear")
    dead = space["deadzone"]  # fraction of the control range
    assert (dead.low, dead.high, dead.nominal, dead.scale) == (0.0, 0.1, 0.0, "linear")
    family.check_space(space)


def test_family_attributes(family: Family) -> None:
    assert family.name == "inverted_pendulum"
    assert family.fidelities == ("coarse", "fine")
    assert all(f in FIDELITIES for f in family.fidelities)
    assert family.max_return == 1000.0
    assert family.max_episode_steps == 1000
    assert family.model_params == tuple(PHYSICAL)
    assert family.absolute_params == ("slider_friction",)
    assert set(family.numeric_params) == set(PHYSICAL) - {"pole_length"}


def test_nominal_model_matches_gymnasium(family: Family, gym_env: gym.Env) -> None:
    ours, theirs = family.build_model(), gym_env.unwrapped.model
    np.testing.assert_allclose(ours.body_mass, theirs.body_mass, rtol=0.01)
    for field in MODEL_FIELDS:
        np.testing.assert_allclose(getattr(ours, field), getattr(theirs, field), atol=1e-9)
    assert ours.opt.integrator == theirs.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert ours.opt.timestep == theirs.opt.timestep == 0.02
    np.testing.assert_allclose(ours.opt.gravity, [0, 0, -9.81])


def test_env_interface_matches_gymnasium(family: Family, gym_env: gym.Env) -> None:
    env = family.make_env()
    assert env.observation_space == gym_env.observation_space
    assert env.action_space == gym_env.action_space
    assert env.observation_space.dtype == np.float64 and env.action_space.dtype == np.float32
    assert env.dt == pytest.approx(gym_env.unwrapped.dt) == pytest.approx(0.04)


def test_trajectory_matches_gymnasium(family: Family, gym_env: gym.Env) -> None:
    env = family.make_env()
    ours, _ = env.reset(seed=11)
    theirs, _ = gym_env.reset(seed=11)
    np.testing.assert_allclose(ours, theirs)  # same reset noise from the same seed
    actions = np.random.default_rng(0).uniform(-0.3, 0.3, size=(20, 1)).astype(np.float32)
    for action in actions:
        ours, r1, term1, _, _ = env.step(action)
        theirs, r2, term2, _, _ = gym_env.step(action)
        np.testing.assert_allclose(ours, theirs, atol=1e-8)
        assert (r1, term1) == (r2, term2)
        if term1:
            break


def _step_model(model: mujoco.MjModel, actions: np.ndarray, substeps: int = 2) -> np.ndarray:
    """Roll ``model`` from a fixed tilted state under ``actions``; return the final state."""
    data = mujoco.MjData(model)
    data.qpos[:] = [0.05, 0.05]
    data.qvel[:] = [0.1, -0.1]
    for a in actions:
        data.ctrl[:] = a
        mujoco.mj_step(model, data, nstep=substeps)
    return np.concatenate([data.qpos, data.qvel])


MODEL_EFFECTS: dict[str, Callable[[mujoco.MjModel, mujoco.MjModel, float], None]] = {}
"""Per model parameter: assertions on (nominal model, model scaled by s, s)."""


EffectCheck = Callable[[mujoco.MjModel, mujoco.MjModel, float], None]


def _effect(name: str) -> Callable[[EffectCheck], EffectCheck]:
    """Register how parameter ``name`` must change a model scaled by ``s``."""

    def register(check: EffectCheck) -> EffectCheck:
        MODEL_EFFECTS[name] = check
        return check

    return register


@_effect("pole_mass")
def _pole_mass(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    pole, cart = nominal.body("pole").id, nominal.body("cart").id
    assert scaled.body_mass[pole] == pytest.approx(s * nominal.body_mass[pole])
    np.testing.assert_allclose(scaled.body_inertia[pole], s * nominal.body_inertia[pole])
    assert scaled.body_mass[cart] == nominal.body_mass[cart]
    np.testing.assert_array_equal(scaled.geom_size, nominal.geom_size)


@_effect("pole_length")
def _pole_length(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    pole, geom = nominal.body("pole").id, nominal.geom("cpole").id
    assert scaled.body_mass[pole] == pytest.approx(nominal.body_mass[pole])  # mass held
    assert scaled.geom_size[geom][1] == pytest.approx(s * nominal.geom_size[geom][1])
    assert scaled.geom_size[geom][0] == nominal.geom_size[geom][0]  # radius unchanged
    np.testing.assert_allclose(scaled.geom_pos[geom], s * nominal.geom_pos[geom])
    assert scaled.body_inertia[pole][0] > 1.5 * nominal.body_inertia[pole][0]


@_effect("cart_mass")
def _cart_mass(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    pole, cart = nominal.body("pole").id, nominal.body("cart").id
    assert scaled.body_mass[cart] == pytest.approx(s * nominal.body_mass[cart])
    assert scaled.body_mass[pole] == nominal.body_mass[pole]


@_effect("hinge_damping")
def _hinge_damping(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    hinge, slider = nominal.joint("hinge").dofadr[0], nominal.joint("slider").dofadr[0]
    assert scaled.dof_damping[hinge] == pytest.approx(s * nominal.dof_damping[hinge])
    assert scaled.dof_damping[slider] == nominal.dof_damping[slider]


@_effect("slider_damping")
def _slider_damping(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    hinge, slider = nominal.joint("hinge").dofadr[0], nominal.joint("slider").dofadr[0]
    assert scaled.dof_damping[slider] == pytest.approx(s * nominal.dof_damping[slider])
    assert scaled.dof_damping[hinge] == nominal.dof_damping[hinge]


@_effect("slider_friction")
def _slider_friction(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    hinge, slider = nominal.joint("hinge").dofadr[0], nominal.joint("slider").dofadr[0]
    np.testing.assert_array_equal(nominal.dof_frictionloss, 0.0)  # absolute, N
    assert scaled.dof_frictionloss[slider] == pytest.approx(s)
    assert scaled.dof_frictionloss[hinge] == 0.0
    np.testing.assert_array_equal(scaled.dof_damping, nominal.dof_damping)


@_effect("actuator_gain")
def _actuator_gain(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    assert scaled.actuator_gear[0, 0] == pytest.approx(s * nominal.actuator_gear[0, 0])
    np.testing.assert_array_equal(scaled.actuator_ctrlrange, nominal.actuator_ctrlrange)


@_effect("gravity")
def _gravity(nominal: mujoco.MjModel, scaled: mujoco.MjModel, s: float) -> None:
    np.testing.assert_allclose(scaled.opt.gravity, s * nominal.opt.gravity)
    np.testing.assert_array_equal(scaled.body_mass, nominal.body_mass)


def test_every_model_parameter_has_an_effect_check() -> None:
    assert sorted(MODEL_EFFECTS) == sorted(PHYSICAL)


@pytest.mark.parametrize("name", PHYSICAL)
@pytest.mark.parametrize("fidelity", ["fine", "coarse"])
def test_parameter_changes_model_and_dynamics(family: Family, name: str, fidelity: str) -> None:
    scale = family.space[name].high
    nominal = family.build_model(None, fidelity)
    scaled = family.build_model({name: scale}, fidelity)
    MODEL_EFFECTS[name](nominal, scaled, scale)
    actions = np.full((10, 1), 0.5)
    substeps = family.task.n_substeps(nominal)
    before = _step_model(nominal, actions, substeps)
    after = _step_model(scaled, actions, substeps)
    assert np.abs(after - before).max() > 1e-3, f"{name} does not change the dynamics"


def test_channel_parameters_leave_the_model_alone(family: Family) -> None:
    nominal = family.build_model()
    other = family.build_model({"latency_steps": 3, "obs_noise_std": 0.05, "deadzone": 0.1})
    for field in MODEL_FIELDS:
        np.testing.assert_array_equal(getattr(nominal, field), getattr(other, field))
    np.testing.assert_array_equal(nominal.opt.gravity, other.opt.gravity)


def test_deadzone_silences_small_controls(family: Family, rollout: Callable[..., dict]) -> None:
    small, rest = [np.array([0.2])] * 5, [np.zeros(1)] * 5  # 0.2 = 6.7% of the range 3
    dead = rollout(family.make_env({"deadzone": 0.1}), small, steps=5)  # below 0.3: nothing
    idle = rollout(family.make_env(), rest, steps=5)
    live = rollout(family.make_env({"deadzone": 0.05}), small, steps=5)  # above 0.15: acts
    np.testing.assert_array_equal(np.array(dead["obs"]), np.array(idle["obs"]))
    np.testing.assert_array_equal(
        np.array(live["obs"]), np.array(rollout(family.make_env(), small, steps=5)["obs"])
    )
    assert not np.allclose(np.array(live["obs"]), np.array(idle["obs"]))
    # The vectorized env applies the same deadzone.
    venv = family.make_vector_env(2, "fine")
    venv.reset(seed=0, options={"theta": {"deadzone": 0.1}})
    moved = venv.step(np.full((2, 1), 0.2))[0]
    venv.reset(seed=0, options={"theta": {"deadzone": 0.1}})
    still = venv.step(np.zeros((2, 1)))[0]
    np.testing.assert_array_equal(moved, still)


def test_fidelities(family: Family) -> None:
    fine, coarse = family.build_model(fidelity="fine"), family.build_model(fidelity="coarse")
    assert fine.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert coarse.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
    assert (fine.opt.timestep, coarse.opt.timestep) == (0.02, 0.04)
    assert coarse.opt.iterations < fine.opt.iterations
    assert (family.task.n_substeps(fine), family.task.n_substeps(coarse)) == (2, 1)
    np.testing.assert_array_equal(fine.body_mass, coarse.body_mass)
    # same control step, close but not identical dynamics over a short horizon
    actions = np.full((5, 1), 0.2)
    a, b = _step_model(fine, actions, 2), _step_model(coarse, actions, 1)
    assert 0 < np.abs(a - b).max() < 0.1


@pytest.mark.parametrize("fidelity", ["fine", "coarse"])
def test_solver_budget_resolves_dry_friction(family: Family, fidelity: str) -> None:
    """Friction is always active: each fidelity's budget must still converge on it.

    With a 5-iteration line search, coarse steps near rest stopped at the unconstrained
    step (full friction force, velocity overshoot) instead of sticking.
    """
    rng = np.random.default_rng(0)
    for _ in range(8):
        theta = family.space.from_unit(rng.uniform(size=family.space.dim))
        theta["slider_friction"] = family.space["slider_friction"].high
        model = family.build_model(theta, fidelity)
        converged = family.build_model(theta, fidelity)
        converged.opt.iterations = converged.opt.ls_iterations = 500
        start = rng.uniform(-0.01, 0.01, size=4)
        actions = np.clip(rng.normal(0.0, 0.3, size=(50, 1)), -3.0, 3.0)
        substeps = family.task.n_substeps(model)
        states = []
        for m in (model, converged):
            data = mujoco.MjData(m)
            data.qpos[:], data.qvel[:] = start[:2], start[2:]
            mujoco.mj_forward(m, data)
            for a in actions:
                data.ctrl[:] = a
                mujoco.mj_step(m, data, nstep=substeps)
            states.append(np.concatenate([data.qpos, data.qvel]))
        np.testing.assert_allclose(states[0], states[1], rtol=0, atol=1e-6)


def test_build_model_validation(family: Family) -> None:
    with pytest.raises(ValueError, match=r"cannot simulate fidelity 'surrogate'.*surrogates/"):
        family.build_model(fidelity="surrogate")
    with pytest.raises(ValueError, match="fidelity 'ultra'"):
        family.build_model(fidelity="ultra")
    with pytest.raises(ValueError, match="unknown parameter 'pole_colour'"):
        family.build_model({"pole_colour": 1.0})
    with pytest.raises(ValueError, match="pole_mass: scale factor must be finite and > 0"):
        family.build_model({"pole_mass": -1.0})
    with pytest.raises(ValueError, match="latency_steps: must be a whole number"):
        family.build_model({"latency_steps": 1.5})
    with pytest.raises(ValueError, match="obs_noise_std: must be finite and >= 0"):
        family.build_model({"obs_noise_std": -0.1})
    with pytest.raises(ValueError, match="slider_friction: value must be finite and >= 0"):
        family.build_model({"slider_friction": -0.1})
    with pytest.raises(ValueError, match="gravity: scale factor must be finite and > 0"):
        family.build_model({"gravity": 0.0})
    with pytest.raises(ValueError, match="deadzone: must be in"):
        family.build_model({"deadzone": 1.0})
    with pytest.raises(ValueError, match=r"deadzone\.high: must be < 1"):
        family.check_space(family.space.with_overrides({"deadzone": {"high": 1.0}}))
    with pytest.raises(ValueError, match=r"slider_friction\.low: must be >= 0"):
        family.check_space(family.space.with_overrides({"slider_friction": {"low": -1.0}}))


def test_values_outside_the_default_space_are_allowed(family: Family) -> None:
    model = family.build_model({"pole_mass": 10.0})
    assert model.body_mass[model.body("pole").id] == pytest.approx(
        10.0 * family.build_model().body_mass[model.body("pole").id]
    )


def test_balancing_policy_reaches_max_return(
    family: Family, balance: Callable, rollout: Callable[..., dict]
) -> None:
    for fidelity in ("fine", "coarse"):
        out = rollout(family.make_env(fidelity=fidelity), balance, seed=3, steps=2000)
        assert sum(out["reward"]) == family.max_return
        assert len(out["reward"]) == family.max_episode_steps
        assert out["truncated"][-1] and not out["terminated"][-1]
        assert not any(out["truncated"][:-1])
