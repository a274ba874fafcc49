"""Procedural terrain: a sloped ground plane carrying seeded height-field bumps.

:class:`Terrain` edits any spec whose ground is a plane geom (a family's procedural model or
a reality proxy's XML). It tilts the plane to the requested grade and, if the roughness is
positive, adds a MuJoCo height field of smooth random bumps lying on that plane.

Why a plane plus bumps rather than one height field replacing the plane: MuJoCo collides a
capsule with a height field prism by prism, so even a perfectly flat height field makes
many more (and stiffer) contacts than a plane, and the flat-ground dynamics would no longer
match the reference model. Here the height field's bump-free level lies :data:`SINK` below
the plane and only bump tops rise above it, so the surface is ``max(plane, bumps)``: at
roughness 0 there is no height field at all, and the nominal model is the flat-floor model.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import mujoco
import numpy as np

GRID_SPACING = 0.05
"""Distance between height-field samples along the slope, m."""
LENGTH = 60.0
"""Bumpy stretch along +x, starting at the plane's origin, m (1000 Hopper steps < 40 m)."""
HALF_WIDTH = 0.5
"""Half width of the height field across the walking plane (y), m."""
CORRELATION_LENGTH = 0.25
"""Standard deviation of the Gaussian kernel that smooths the white noise, m."""
START_PAD = (1.0, 2.0)
"""No bumps before the first distance; full amplitude after the second (smooth ramp), m."""
SINK = 0.02
"""Depth of the height field's bump-free level below the plane, m."""
BASE = 0.1
"""Thickness of the height field's solid base below its lowest point, m."""
NAME = "terrain"
"""Name of the added height field asset and geom."""
_SEED_SALT = 0x7E88A1  # separates the terrain's random stream from other users of the seed

N_SAMPLES = round(LENGTH / GRID_SPACING) + 1

# Contact attributes the height-field geom copies from the plane it lies on.
_CONTACT_ATTRIBUTES = (
    "contype",
    "conaffinity",
    "condim",
    "priority",
    "friction",
    "solmix",
    "solref",
    "solimp",
    "margin",
    "gap",
)


@functools.lru_cache(maxsize=16)
def bump_profile(seed: int) -> np.ndarray:
    """Return the unit bump profile for ``seed``: heights in ``[0, 1]`` along the slope.

    The profile is rectified, Gaussian-smoothed white noise (about half the ground stays
    flat), faded in over :data:`START_PAD` and scaled so that its peak is exactly 1. It
    depends on ``seed`` only, so a terrain is reproducible and its roughness is a pure
    amplitude. The returned array is read-only and has :data:`N_SAMPLES` entries.
    """
    rng = np.random.default_rng([_SEED_SALT, int(seed)])
    sigma = CORRELATION_LENGTH / GRID_SPACING
    half = math.ceil(4.0 * sigma)
    taps = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    noise = np.convolve(rng.standard_normal(N_SAMPLES + 2 * half), kernel, mode="valid")
    x = np.linspace(0.0, LENGTH, N_SAMPLES)
    ramp = np.clip((x - START_PAD[0]) / (START_PAD[1] - START_PAD[0]), 0.0, 1.0)
    profile = np.maximum(noise, 0.0) * ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep fade-in
    profile /= profile.max()
    profile.setflags(write=False)
    return profile


def _slope_quat(slope: float) -> np.ndarray:
    """Quaternion turning the x axis onto the uphill direction ``(1, 0, slope)``."""
    half = -0.5 * math.atan(slope)  # a negative rotation about +y raises +x
    return np.array([math.cos(half), 0.0, math.sin(half), 0.0])


@dataclass(frozen=True)
class Terrain:
    """Ground shape: a plane of grade ``slope`` with bumps up to ``roughness`` high.

    Attributes:
        roughness: Peak bump height above the plane, m (measured along the plane's
            normal). 0 means no bumps. The shape comes from :func:`bump_profile`.
        slope: Grade of the plane along +x, rise over run (``tan`` of the incline angle);
            positive is uphill for a walker moving along +x. The plane keeps passing
            through its own origin (the start position).
        seed: Seed of the bump shape.

    Raises:
        ValueError: If ``roughness`` is negative or a field is not finite.
    """

    roughness: float = 0.0
    slope: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.roughness) and self.roughness >= 0):
            raise ValueError(f"terrain_roughness: must be finite and >= 0 (got {self.roughness})")
        if not math.isfinite(self.slope):
            raise ValueError(f"terrain_slope: must be finite (got {self.slope})")

    @property
    def is_flat(self) -> bool:
        """Whether the terrain is the reference flat, level floor."""
        return self.roughness == 0 and self.slope == 0

    def heights(self) -> np.ndarray:
        """Return the bump heights above the plane at the :data:`N_SAMPLES` grid points, m."""
        return self.roughness * bump_profile(self.seed)

    def apply(self, spec: mujoco.MjSpec, floor: str = "floor") -> None:
        """Tilt the ``floor`` plane of ``spec`` and, if rough, add the bump height field.

        The height-field geom copies the plane's contact attributes (friction, solver
        parameters, margin, collision masks), so apply parameter edits to the plane first.

        Raises:
            ValueError: If ``spec`` has no plane geom named ``floor``.
        """
        plane = spec.geom(floor)
        if plane is None or plane.type != mujoco.mjtGeom.mjGEOM_PLANE:
            raise ValueError(f"model has no plane geom named {floor!r}")
        if self.is_flat:
            return  # leave the reference floor untouched
        quat = _slope_quat(self.slope)
        plane.quat = quat
        if self.roughness == 0:
            return
        # MuJoCo normalizes elevation data to [0, 1] and scales it by size[2], so the unit
        # profile is the data and the bump-free level is shifted SINK below the plane.
        profile = bump_profile(self.seed)
        spec.add_hfield(
            name=NAME,
            size=[LENGTH / 2.0, HALF_WIDTH, self.roughness + SINK, BASE],
            nrow=2,
            ncol=N_SAMPLES,
            userdata=np.tile(profile, 2).tolist(),
        )
        offset = np.zeros(3)
        mujoco.mju_rotVecQuat(offset, np.array([LENGTH / 2.0, 0.0, -SINK]), quat)
        geom = spec.worldbody.add_geom(
            name=NAME,
            type=mujoco.mjtGeom.mjGEOM_HFIELD,
            hfieldname=NAME,
            pos=np.asarray(plane.pos) + offset,
            quat=quat,
            rgba=[0.55, 0.5, 0.4, 1.0],
        )
        for attribute in _CONTACT_ATTRIBUTES:
            setattr(geom, attribute, getattr(plane, attribute))


def ground_height(model: mujoco.MjModel, x: float, floor: str = "floor") -> float:
    """Height of the (possibly sloped) ``floor`` plane at world ``(x, 0)``, bumps excluded.

    Reads the plane's pose from ``model``, so it works for any model whose ground is a plane
    geom at rest in the world body (procedural or loaded from XML).
    """
    geom = model.geom(floor)
    normal = np.zeros(3)
    mujoco.mju_rotVecQuat(normal, np.array([0.0, 0.0, 1.0]), geom.quat)
    pos = geom.pos
    return float(pos[2] - (normal[0] * (x - pos[0]) - normal[1] * pos[1]) / normal[2])
