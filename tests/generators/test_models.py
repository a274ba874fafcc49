"""Numeric parameters written into compiled models equal compiling them (ModelSource)."""

from __future__ import annotations

import pickle

import mujoco
import numpy as np
import pytest

import generators
from generators import Family, TaskDistribution
from generators.models import ModelSource, clear_bases

NAMES = sorted(generators.FAMILIES)


def _fields(model: mujoco.MjModel) -> dict[str, np.ndarray]:
    """Every numeric array of ``model``, ``opt`` and ``stat``."""
    out = {}
    for prefix, obj in (("", model), ("opt.", model.opt), ("stat.", model.stat)):
        for name in dir(obj):
            if name.startswith("_"):
                continue
            value = getattr(obj, name)
            if isinstance(value, np.ndarray | float | int) and not isinstance(value, bool):
                array = np.asarray(value)
                if array.dtype.kind in "fiu":
                    out[prefix + name] = array
    return out


def assert_models_equal(a: mujoco.MjModel, b: mujoco.MjModel, rtol: float = 1e-12) -> None:
    fa, fb = _fields(a), _fields(b)
    assert fa.keys() == fb.keys()
    for name, value in fa.items():
        np.testing.assert_allclose(fb[name], value, rtol=rtol, atol=1e-14, err_msg=name)


def trajectory(family: Family, model: mujoco.MjModel, steps: int = 200) -> np.ndarray:
    data = mujoco.MjData(model)
    family.task.initialize_episode(model, data, np.random.default_rng(1))
    controls = np.random.default_rng(2).uniform(-1, 1, size=(steps, model.nu))
    out = []
    for u in controls:
        data.ctrl[:] = u * family.task.action_space.high
        mujoco.mj_step(model, data)
        out.append(np.concatenate([data.qpos, data.qvel]))
    return np.array(out)


def random_thetas(family: Family, k: int, seed: int = 0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    return [family.space.from_unit(rng.uniform(size=family.space.dim)) for _ in range(k)]


@pytest.mark.parametrize("name", NAMES)
def test_params_are_classified(name: str) -> None:
    family = generators.get_family(name)
    assert set(family.numeric_params) <= set(family.model_params)
    assert set(family.structural_params) == set(family.model_params) - set(family.numeric_params)
    assert family.numeric_params, "every built-in family has numeric parameters"
    edits = family.numeric_edits(family.build_base_model())
    assert set(edits) == set(family.numeric_params)


@pytest.mark.parametrize("name", NAMES)
def test_in_place_numeric_params_equal_compiling(name: str) -> None:
    """Every numeric field (masses, inertias, damping, gear, invweight0, stat...) and 200 steps."""
    family = generators.get_family(name)
    for fidelity in family.fidelities:
        for theta in random_thetas(family, 3):
            compiled = family.build_model(theta, fidelity)
            edited = family.build_base_model(theta, fidelity)
            family.apply_numeric(edited, theta)
            assert_models_equal(compiled, edited)
            np.testing.assert_allclose(
                trajectory(family, edited), trajectory(family, compiled), rtol=0, atol=1e-9
            )


def test_base_model_differs_only_by_numeric_params() -> None:
    family = generators.get_family("inverted_pendulum")
    theta = {
        "pole_mass": 1.7,
        "actuator_gain": 0.6,
        "pole_length": 1.3,
        "slider_friction": 4.0,
        "gravity": 1.15,
    }
    base = family.build_base_model(theta)
    assert_models_equal(base, family.build_model({"pole_length": 1.3}))
    family.apply_numeric(base, theta)
    assert_models_equal(base, family.build_model(theta))
    assert base.dof_frictionloss[base.joint("slider").dofadr[0]] == 4.0
    np.testing.assert_allclose(base.opt.gravity, [0.0, 0.0, -9.81 * 1.15])
    with pytest.raises(ValueError, match="scale factor"):
        family.build_base_model({"pole_mass": -1.0})
    with pytest.raises(ValueError, match="scale factor"):
        family.apply_numeric(base, {"actuator_gain": 0.0})
    with pytest.raises(ValueError, match="slider_friction: value must be finite and >= 0"):
        family.apply_numeric(base, {"slider_friction": -1.0})


@pytest.mark.parametrize("name", NAMES)
def test_private_models_are_rewritten_in_place(name: str) -> None:
    """A slot keeps its model object across thetas of one base and matches compiling each."""
    family = generators.get_family(name)
    source = ModelSource(family, slots=2)
    fixed = {p: family.space[p].nominal for p in family.structural_params}
    thetas = [{**t, **fixed} for t in random_thetas(family, 4, seed=3)]
    whole, _ = source.private(0, thetas[0], "coarse")  # a new geometry: compiled whole
    assert_models_equal(family.build_model(thetas[0], "coarse"), whole)
    assert source.compiles == 1
    first, group = source.private(0, thetas[0], "coarse")  # it came back: now a base
    for theta in thetas:
        model, key = source.private(0, theta, "coarse")
        assert model is first and key == group  # same base: no compile, no allocation
        assert_models_equal(family.build_model(theta, "coarse"), model)
    other, _ = source.private(1, thetas[1], "coarse")
    assert other is not first  # a copy, so slot 0's model is untouched
    again, _ = source.private(0, thetas[0], "coarse")
    assert_models_equal(family.build_model(thetas[0], "coarse"), again)
    assert source.compiles == 2
    moved = {**thetas[2], **random_thetas(family, 1, seed=9)[0]}  # new structural values
    model, _ = source.private(0, moved, "coarse")
    assert source.compiles == 3
    assert_models_equal(family.build_model(moved, "coarse"), model)
    # The slot's old model went idle and serves the old base again without a compile.
    model, _ = source.private(0, thetas[3], "coarse")
    assert model is first and source.compiles == 3
    assert_models_equal(family.build_model(thetas[3], "coarse"), model)


def test_shared_models_are_cached_and_never_edited(family: Family) -> None:
    source = ModelSource(family, slots=2)
    theta = family.space.complete({"pole_mass": 1.5})
    a, _ = source.shared(0, theta, "fine")
    b, _ = source.shared(1, theta, "fine")
    assert a is b
    source.private(0, family.space.complete({"pole_mass": 0.7}), "fine")
    assert_models_equal(family.build_model(theta, "fine"), a)
    clone = pickle.loads(pickle.dumps(source))  # caches are dropped, models rebuilt
    assert_models_equal(family.build_model(theta, "fine"), clone.shared(0, theta, "fine")[0])


def test_envs_use_in_place_models(family: Family) -> None:
    """Under per-episode thetas of fixed geometry, resets compile nothing after the first two
    (the geometry's first sighting is compiled whole, the second makes it a base), and the
    envs of a process share bases."""
    space = family.space
    low = [0.0] * space.dim
    high = [1.0] * space.dim
    j = space.names.index("pole_length")
    low[j] = high[j] = 0.5
    dist = TaskDistribution.mixture([(low, high)], fidelity="coarse")
    venv = family.make_vector_env(4, distribution=dist)
    venv.reset(seed=0)
    for _ in range(60):
        venv.step(np.full((4, 1), 3.0))
    assert venv._source.compiles == 2
    env = family.make_env(distribution=dist)
    for seed in range(5):
        env.reset(seed=seed)
        assert_models_equal(family.build_model(env.theta, "coarse"), env.model)
    assert env._source.compiles == 0


@pytest.mark.parametrize("name", NAMES)
def test_a_slot_model_becomes_any_base_of_its_group(name: str) -> None:
    """Bases of one layout differ only in fields the source writes: one model per slot and
    group turns into each geometry exactly, back and forth, without compiling."""
    family = generators.get_family(name)
    source = ModelSource(family, slots=1)
    thetas = random_thetas(family, 3, seed=5)
    for theta in thetas:  # a first sighting (compiled whole), then a base
        source.private(0, theta, "fine")
        source.private(0, theta, "fine")
    compiles = source.compiles
    models, groups = set(), set()
    for theta in [*thetas, *reversed(thetas), thetas[1]]:
        model, group = source.private(0, theta, "fine")
        compiled = family.build_model(theta, "fine")
        assert_models_equal(compiled, model)
        np.testing.assert_allclose(
            trajectory(family, model, 50), trajectory(family, compiled, 50), rtol=0, atol=1e-9
        )
        models.add(id(model))
        groups.add(group)
    assert source.compiles == compiles
    assert len(models) == len(groups)


def test_levelled_lengths_compile_at_most_twice_per_cell(family: Family) -> None:
    """Whole-space draws: a length cell's first episode compiles whole, its second makes a
    base, and every later episode in it rewrites the sub-env's model in place."""
    j = family.space.names.index("pole_length")
    venv = family.make_vector_env(4, distribution=TaskDistribution.uniform(family.space, "coarse"))
    venv.reset(seed=0)
    for _ in range(1500):
        venv.step(np.full((4, 1), 3.0))
    episodes = venv.episode_log.drain()
    cells = {round(e["theta_u"][j], 9) for e in episodes} | {round(u, 9) for u in venv._unit[:, j]}
    assert len(episodes) > 4 * len(cells)  # cells repeat
    assert venv._source.compiles <= 2 * len(cells)
    for i in range(4):
        theta = dict(zip(family.space.names, venv._theta[i], strict=True))
        assert_models_equal(family.build_model(theta, "coarse"), venv._models[i])


@pytest.mark.parametrize("name", NAMES)
def test_a_thetas_model_does_not_depend_on_what_was_built_before(name: str) -> None:
    """First sighting, base rewrite or shared: the same bits (so runs repeat exactly in a
    process whose envs already built bases)."""
    family = generators.get_family(name)
    thetas = random_thetas(family, 2, seed=11)
    fresh = ModelSource(family, slots=1).private(0, thetas[0], "fine")[0]  # first sighting
    fields = _fields(fresh)
    for theta in (thetas[1], thetas[0], thetas[1], thetas[0]):  # now bases, rewritten
        model = ModelSource(family, slots=1).private(0, theta, "fine")[0]
    clear_bases()
    shared = ModelSource(family, slots=1).shared(0, thetas[0], "fine")[0]
    for other in (model, shared):
        for path, value in _fields(other).items():
            np.testing.assert_array_equal(value, fields[path], err_msg=path)
