"""Procedural terrain: seeded bump profile, sloped plane, height field, contact heights."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from generators.terrain import (
    GRID_SPACING,
    LENGTH,
    N_SAMPLES,
    NAME,
    START_PAD,
    Terrain,
    bump_profile,
    ground_height,
)

BALL = 0.05


def _world(terrain: Terrain | None = None) -> mujoco.MjModel:
    """A plane named ``floor`` with a free ball, shaped by ``terrain``."""
    spec = mujoco.MjSpec()
    spec.worldbody.add_geom(
        name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[20, 20, 0.1], friction=[1.5, 0, 0]
    )
    ball = spec.worldbody.add_body(name="ball", pos=[0, 0, 1])
    ball.add_freejoint()
    ball.add_geom(type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[BALL, 0, 0], mass=1.0)
    if terrain is not None:
        terrain.apply(spec)
    return spec.compile()


def _surface(model: mujoco.MjModel, x: float) -> float:
    """Height of the first surface a vertical ray meets at ``(x, 0)``."""
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    body = model.body("ball").id
    geom = np.array([-1], dtype=np.int32)
    dist = mujoco.mj_ray(
        model, data, np.array([x, 0.0, 20.0]), np.array([0, 0, -1.0]), None, 1, body, geom
    )
    assert dist > 0
    return 20.0 - dist


def _rest_height(model: mujoco.MjModel, x: float) -> float:
    """Height of the ball's centre after settling at ``x`` (dropped from just above)."""
    data = mujoco.MjData(model)
    data.qpos[:3] = [x, 0.0, _surface(model, x) + BALL + 0.01]
    mujoco.mj_step(model, data, nstep=500)
    return float(data.qpos[2])


def _peak_x(seed: int = 0) -> float:
    return float(np.argmax(bump_profile(seed)) * GRID_SPACING)


def test_bump_profile_is_seeded_and_normalized() -> None:
    a, b = bump_profile(0), bump_profile(0)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (N_SAMPLES,) and not a.flags.writeable
    assert a.min() == 0.0 and a.max() == 1.0
    assert 0.3 < np.mean(a > 0) < 0.7  # bumps on about half the ground, flat between
    x = np.linspace(0.0, LENGTH, N_SAMPLES)
    assert not a[x <= START_PAD[0]].any()  # the start stays flat
    assert not np.array_equal(a, bump_profile(1))


def test_validation() -> None:
    with pytest.raises(ValueError, match="terrain_roughness: must be finite and >= 0"):
        Terrain(roughness=-0.1)
    with pytest.raises(ValueError, match="terrain_slope: must be finite"):
        Terrain(slope=math.inf)
    spec = mujoco.MjSpec()
    spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_BOX, size=[1, 1, 1])
    with pytest.raises(ValueError, match="no plane geom named 'floor'"):
        Terrain(0.1).apply(spec)


def test_flat_terrain_leaves_the_model_unchanged() -> None:
    plain, flat = _world(), _world(Terrain())
    assert flat.nhfield == 0 and flat.ngeom == plain.ngeom
    np.testing.assert_array_equal(flat.geom_quat, plain.geom_quat)
    assert _rest_height(flat, 3.0) == _rest_height(plain, 3.0)


def test_slope_tilts_the_ground() -> None:
    model = _world(Terrain(slope=0.1))
    for x in (-2.0, 0.0, 5.0):
        assert ground_height(model, x) == pytest.approx(0.1 * x)
        assert _surface(model, x) == pytest.approx(0.1 * x)
    # a ball rolls down the incline, its centre one radius off the tilted plane
    data = mujoco.MjData(model)
    data.qpos[:3] = [5.0, 0.0, 0.5 + BALL * 1.01]
    mujoco.mj_step(model, data, nstep=500)
    x, z = data.qpos[0], data.qpos[2]
    assert x < 4.9 and z == pytest.approx(0.1 * x + BALL * math.sqrt(1 + 0.1**2), abs=2e-3)


def test_roughness_raises_the_ground_at_bumps() -> None:
    x = _peak_x()
    model = _world(Terrain(roughness=0.06))
    assert model.nhfield == 1 and model.geom(NAME).type[0] == mujoco.mjtGeom.mjGEOM_HFIELD
    assert model.geom_friction[model.geom(NAME).id][0] == 1.5  # copied from the plane
    np.testing.assert_allclose(model.hfield_data.reshape(2, -1)[0], bump_profile(0), rtol=1e-6)
    assert _surface(model, x) == pytest.approx(0.06, abs=1e-3)
    assert _rest_height(model, x) == pytest.approx(0.06 + BALL, abs=3e-3)
    gaps = np.flatnonzero(bump_profile(0) == 0) * GRID_SPACING
    flat_x = float(gaps[gaps > START_PAD[1]][0])  # within the plane's (ray-visible) 20 m
    assert _surface(model, flat_x) == pytest.approx(0.0, abs=1e-9)  # the plane between bumps
    assert _rest_height(model, 0.5) == pytest.approx(_rest_height(_world(), 0.5))


def test_roughness_and_slope_combine() -> None:
    x = _peak_x()
    model = _world(Terrain(roughness=0.04, slope=-0.05))
    normal_offset = 0.04 / math.cos(math.atan(0.05))  # bumps stand on the inclined plane
    assert _surface(model, x) == pytest.approx(-0.05 * x + normal_offset, abs=3e-3)
    assert ground_height(model, x) == pytest.approx(-0.05 * x)


def test_heights_scale_with_roughness() -> None:
    np.testing.assert_allclose(Terrain(0.08).heights(), 2 * Terrain(0.04).heights())
    assert Terrain(0.0).heights().max() == 0.0 and Terrain(0.05, seed=3).heights().max() == 0.05
