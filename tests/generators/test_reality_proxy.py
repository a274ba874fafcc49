"""Reality proxy: Gymnasium's own XML, the family's parameter names, deadzone, guard."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import gymnasium
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import generators
from generators import REALITIES, Family, RealityProxy
from generators.reality import RealityEnv

Rollout = Callable[..., dict]
REALITY = "gymnasium/InvertedPendulum-v5"
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
    "geom_size",
    "dof_damping",
    "dof_frictionloss",
    "actuator_gear",
    "opt.gravity",
)


def _field(model: mujoco.MjModel, name: str) -> np.ndarray:
    return np.asarray(model.opt.gravity if name == "opt.gravity" else getattr(model, name))


def test_registry(proxy: RealityProxy) -> None:
    assert REALITIES[REALITY] is proxy
    assert proxy.name == REALITY and proxy.family == "inverted_pendulum"
    with pytest.raises(ValueError, match=f"unknown reality 'mujoco/real' \\(known: .*{REALITY}"):
        generators.get_reality("mujoco/real")


def test_loads_gymnasiums_own_file(proxy: RealityProxy) -> None:
    package = Path(gymnasium.__file__).resolve().parent
    path = proxy.xml_path.resolve()
    assert path.name == "inverted_pendulum.xml"
    assert package in path.parents
    assert not list(Path(generators.__file__).parent.rglob("*.xml"))  # no copy in the repo


def test_nominal_proxy_is_gymnasiums_model(proxy: RealityProxy, family: Family) -> None:
    reference = mujoco.MjModel.from_xml_path(str(proxy.xml_path))
    model = proxy.build_model()
    for field in MODEL_FIELDS:
        np.testing.assert_allclose(_field(model, field), _field(reference, field), rtol=1e-12)
        np.testing.assert_allclose(
            _field(model, field), _field(family.build_model(), field), rtol=1e-9
        )


@pytest.mark.parametrize("name", PHYSICAL)
def test_params_mean_the_same_as_in_the_family(
    proxy: RealityProxy, family: Family, name: str
) -> None:
    value = 1.7  # a scale factor, or N for slider_friction
    nominal, scaled = proxy.build_model(), proxy.build_model({name: value})
    ours = family.build_model({name: value})
    changed = False
    for field in MODEL_FIELDS:
        np.testing.assert_allclose(_field(scaled, field), _field(ours, field), rtol=1e-9)
        changed |= not np.allclose(_field(scaled, field), _field(nominal, field))
    assert changed, f"{name} does not change the proxy's model"


def test_proxy_accepts_the_familys_whole_space(proxy: RealityProxy, family: Family) -> None:
    assert set(proxy.param_names) == set(family.space.names)
    assert proxy.build_model({"slider_friction": 2.0}).dof_frictionloss[0] == 2.0
    np.testing.assert_allclose(proxy.build_model({"gravity": 1.1}).opt.gravity, [0, 0, -10.791])
    assert proxy.make_env({"deadzone": 0.1})._proxy_effects.deadzone == 0.1
    with pytest.raises(ValueError, match="deadzone: given as a parameter"):
        proxy.make_env({"deadzone": 0.1}, deadzone=0.2)


def test_channel_params(proxy: RealityProxy, rollout: Rollout) -> None:
    push, rest = np.array([1.0]), np.zeros(1)
    delayed = rollout(proxy.make_env({"latency_steps": 2}), [push] + [rest] * 5, steps=6)
    shifted = rollout(proxy.make_env(), [rest, rest, push] + [rest] * 3, steps=6)
    np.testing.assert_array_equal(np.array(delayed["obs"]), np.array(shifted["obs"]))

    env = proxy.make_env({"obs_noise_std": 0.02})
    env.reset(seed=0)
    errors = []
    for _ in range(400):
        obs, _, terminated, _, _ = env.step(np.zeros(1))
        errors.append(obs - env.task.observation(env.model, env.data))
        if terminated:
            env.reset()
    assert np.std(errors) == pytest.approx(0.02, rel=0.07)


def test_deadzone(proxy: RealityProxy, rollout: Rollout) -> None:
    def first_obs(action: float, deadzone: float) -> np.ndarray:
        return rollout(proxy.make_env(deadzone=deadzone), [np.array([action])], steps=1)["obs"][1]

    zero = first_obs(0.0, 0.0)
    np.testing.assert_array_equal(first_obs(0.5, 0.2), zero)  # |0.5| < 0.2 * 3
    np.testing.assert_array_equal(first_obs(-0.5, 0.2), zero)
    np.testing.assert_array_equal(first_obs(0.7, 0.2), first_obs(0.7, 0.0))
    assert not np.allclose(first_obs(0.5, 0.0), zero)
    with pytest.raises(ValueError, match="deadzone: must be in"):
        proxy.make_env(deadzone=1.5)


def test_param_validation(proxy: RealityProxy) -> None:
    with pytest.raises(ValueError, match="unknown parameter 'pole_colour' \\(known: pole_mass"):
        proxy.make_env({"pole_colour": 2.0})
    with pytest.raises(ValueError, match="unknown parameter 'wind'"):
        proxy.build_model({"wind": 2.0})
    with pytest.raises(ValueError, match="slider_friction: value must be finite and >= 0"):
        proxy.build_model({"slider_friction": -1.0})
    with pytest.raises(ValueError, match="gravity: scale factor must be finite and > 0"):
        proxy.build_model({"gravity": 0.0})
    with pytest.raises(ValueError, match="cart_mass: scale factor must be finite and > 0"):
        proxy.build_model({"cart_mass": 0.0})
    with pytest.raises(ValueError, match="latency_steps: must be a whole number"):
        proxy.make_env({"latency_steps": -1})


def test_env_interface_matches_the_family(proxy: RealityProxy, family: Family) -> None:
    env, ours = proxy.make_env({"pole_mass": 1.3}), family.make_env()
    assert env.observation_space == ours.observation_space
    assert env.action_space == ours.action_space
    _, info = env.reset(seed=0)
    assert info == {"fidelity": "real", "unstable": False}  # hidden params stay hidden
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(proxy.make_env(), skip_render_check=True)


def test_truncation_and_guard(proxy: RealityProxy, balance: Callable, rollout: Rollout) -> None:
    env = proxy.make_env()
    out = rollout(env, balance, seed=2, steps=2000)
    assert len(out["reward"]) == 1000 and sum(out["reward"]) == 1000.0
    assert out["truncated"][-1] and not out["terminated"][-1]
    env.reset(seed=0)
    env.data.qvel[:] = 1e30
    obs, reward, terminated, _, info = env.step(np.zeros(1))
    assert terminated and info["unstable"] and reward == 0.0 and np.isfinite(obs).all()
    assert env.unstable_episodes == 1


def test_determinism(proxy: RealityProxy, rollout: Rollout) -> None:
    actions = list(np.random.default_rng(0).uniform(-3, 3, size=(30, 1)))
    params = {"pole_length": 1.2, "obs_noise_std": 0.01, "latency_steps": 1}
    a = rollout(proxy.make_env(params, deadzone=0.1), actions, seed=9, steps=30)
    b = rollout(proxy.make_env(params, deadzone=0.1), actions, seed=9, steps=30)
    np.testing.assert_array_equal(np.array(a["obs"]), np.array(b["obs"]))
    assert a["reward"] == b["reward"]


def test_env_config_mapping(proxy: RealityProxy) -> None:
    config = {"reality": REALITY, "params": {"cart_mass": 1.5}, "deadzone": 0.1}
    env = RealityEnv(config)
    assert env.proxy is proxy
    env.reset(seed=0)
    cart = env.model.body("cart").id
    assert env.model.body_mass[cart] == pytest.approx(1.5 * proxy.build_model().body_mass[cart])
    with pytest.raises(ValueError, match="'reality' key"):
        RealityEnv({"params": {}})
