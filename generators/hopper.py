"""The ``hopper`` family: Gymnasium's one-legged hopper, built with ``mujoco.MjSpec``, on terrain.

Its nominal model (flat, level floor) reproduces Gymnasium's ``Hopper-v5`` (geometry,
masses, joints, actuators, contact parameters, integrator) and so does its task
(observation, action, reward, termination, reset noise, 1000-step truncation). Physical
parameters are scale factors relative to that reference; the terrain parameters are
absolute (see :mod:`generators.terrain`), the channel parameters are latency, observation
noise and actuator deadzone.

The spec modifiers in :data:`MODIFIERS` address elements by the names Gymnasium's
``hopper.xml`` uses (``torso_geom``, ``thigh_joint``, ``floor``, ...), so the same table and
the same terrain edit serve the procedural model and the reality proxy
``gymnasium/Hopper-v5``, which loads Gymnasium's own file.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import spaces

from generators.families import Fidelity, SpecFamily, register_family
from generators.modifiers import (
    Combined,
    ModelEdit,
    ScaleGeomMass,
    ScaleGravity,
    ScaleJointActuatorGear,
    ScaleJointDamping,
    SpecModifier,
    capsule_mass,
)
from generators.reality import RealityProxy, gymnasium_asset, register_reality
from generators.space import Param, ParamSpace
from generators.task import DEADZONE, LATENCY, OBS_NOISE, BatchState, Task, UniformResetNoise
from generators.terrain import Terrain, ground_height

# Reference model: Gymnasium's hopper.xml, SI units, angles in radians.
TORSO_HEIGHT = 1.25  # initial height of the torso centre (rootz's reference)
TORSO = (0.05, 0.2)  # capsule (radius, half length), along the body's z axis
THIGH = (0.05, 0.225)
LEG = (0.04, 0.25)
FOOT = (0.06, 0.195)  # along x
HIP_RANGE = KNEE_RANGE = (-math.radians(150.0), 0.0)
ANKLE_RANGE = (-math.radians(45.0), math.radians(45.0))
JOINT_DAMPING = 1.0
JOINT_ARMATURE = 1.0
BODY_FRICTION = 0.9
FOOT_FRICTION = 2.0
FLOOR_FRICTION = (1.0, 0.005, 0.0001)
GEOM_MARGIN = 0.001
GEOM_SOLREF = (0.02, 1.0)
GEOM_SOLIMP = (0.8, 0.8, 0.01, 0.5, 2.0)
GEAR = 200.0
CTRL_RANGE = (-1.0, 1.0)
GRAVITY = (0.0, 0.0, -9.81)
MOTOR_JOINTS = ("thigh_joint", "leg_joint", "foot_joint")

# Hopper-v5's task constants.
CONTROL_DT = 0.008  # frame_skip 4 x 0.002 s
MAX_EPISODE_STEPS = 1000
FORWARD_REWARD_WEIGHT = 1.0
CTRL_COST_WEIGHT = 1e-3
HEALTHY_REWARD = 1.0
HEALTHY_STATE_RANGE = (-100.0, 100.0)
HEALTHY_Z_RANGE = (0.7, math.inf)
HEALTHY_ANGLE_RANGE = (-0.2, 0.2)
RESET_NOISE = 5e-3
VELOCITY_CLIP = 10.0
MAX_RETURN = 4000.0  # no exact optimum; above the best published Hopper returns (~3.5-4k)

ROUGHNESS = "terrain_roughness"
SLOPE = "terrain_slope"
TERRAIN_PARAMS = (ROUGHNESS, SLOPE)
MASS_GEOMS = ("torso_geom", "thigh_geom", "leg_geom", "foot_geom")
"""Geoms whose mass the modifiers scale; a spec must give them explicit masses."""

_FOOT_QUAT = (math.sqrt(0.5), 0.0, -math.sqrt(0.5), 0.0)  # turns a capsule's z axis onto x


SPACE = ParamSpace(
    [
        Param("torso_mass", 0.5, 2.0, 1.0, scale="log"),
        Param("leg_mass", 0.5, 2.0, 1.0, scale="log"),
        Param("thigh_length", 0.8, 1.25, 1.0, scale="log"),
        Param("leg_length", 0.8, 1.25, 1.0, scale="log"),
        Param("joint_damping", 0.25, 4.0, 1.0, scale="log"),
        Param("friction", 0.5, 2.0, 1.0, scale="log"),
        Param("actuator_gain", 0.6, 1.4, 1.0),
        Param("gravity", 0.8, 1.2, 1.0),
        Param(ROUGHNESS, 0.0, 0.08, 0.0),
        Param(SLOPE, -0.1, 0.1, 0.0),
        Param(LATENCY, 0.0, 3.0, 0.0, integer=True),
        Param(OBS_NOISE, 0.0, 0.05, 0.0),
        Param(DEADZONE, 0.0, 0.2, 0.0),
    ]
)
"""Default parameter space.

Physical entries are scale factors (nominal 1.0): ``leg_mass`` scales the thigh, leg and
foot together, the lengths stretch one segment at fixed mass, ``joint_damping`` acts on the
three actuated joints, ``friction`` on the sliding friction of every geom (hence of every
contact), ``actuator_gain`` on the three motors' gear and ``gravity`` on ``|g|``.
``terrain_roughness`` is the peak bump height in m and ``terrain_slope`` the grade along +x
(rise over run, positive uphill); ``latency_steps`` counts control steps of 8 ms,
``obs_noise_std`` is in observation units and ``deadzone`` a fraction of the control range.
"""


# ---------------------------------------------------------------------------------------------
# Modifiers


@dataclass(frozen=True)
class StretchLimb:
    """Lengthen a limb capsule about its upper end, keeping its mass and the foot's clearance.

    The capsule must lie along its body's z axis (``pos`` + ``size``, as in Gymnasium's XML)
    with its upper end at the joint. Its lower end moves down by ``2 (s - 1) h`` and so does
    ``child`` (the next body); the root body and the reference of the vertical root joint
    move up by the same amount, so the reset pose keeps the foot at the reference height
    above the ground and ``qpos[1]`` stays the torso's height.
    """

    geom: str
    child: str
    root: str = "torso"
    root_joint: str = "rootz"

    def __call__(self, spec: mujoco.MjSpec, scale: float) -> None:
        geom = spec.geom(self.geom)
        if geom is None or geom.type != mujoco.mjtGeom.mjGEOM_CAPSULE:
            raise ValueError(f"model has no capsule geom named {self.geom!r}")
        if np.isfinite(geom.fromto[0]) or not np.allclose(geom.quat, [1.0, 0.0, 0.0, 0.0]):
            raise ValueError(f"geom {self.geom!r} must lie along its body's z axis via pos/size")
        radius, half, _ = geom.size
        top = geom.pos[2] + half
        geom.size = [radius, scale * half, 0.0]
        geom.pos = [geom.pos[0], geom.pos[1], top - scale * half]
        shift = np.array([0.0, 0.0, 2.0 * (scale - 1.0) * half])
        for kind, name in (("body", self.child), ("body", self.root), ("joint", self.root_joint)):
            if getattr(spec, kind)(name) is None:
                raise ValueError(f"model has no {kind} named {name!r}")
        spec.body(self.child).pos = spec.body(self.child).pos - shift
        spec.body(self.root).pos = spec.body(self.root).pos + shift
        joint = spec.joint(self.root_joint)
        joint.ref = joint.ref + shift[2]


@dataclass(frozen=True)
class ScaleFriction:
    """Scale the sliding friction of every geom, so of every contact (MuJoCo takes the max).

    Apply it before :meth:`Terrain.apply`, whose height field copies the floor's friction.
    """

    def __call__(self, spec: mujoco.MjSpec, scale: float) -> None:
        for geom in spec.geoms:
            friction = np.array(geom.friction, dtype=float)
            friction[0] *= scale
            geom.friction = friction

    model_fields: ClassVar[tuple[str, ...]] = ("geom_friction",)

    def model_edit(self, model: mujoco.MjModel) -> ModelEdit:
        """Scale every compiled geom's sliding friction (a terrain copies the floor's)."""
        del model

        def edit(m: mujoco.MjModel, scale: float) -> None:
            m.geom_friction[:, 0] *= scale

        return edit


MODIFIERS: Mapping[str, SpecModifier] = {
    "torso_mass": ScaleGeomMass("torso_geom"),
    "leg_mass": Combined(tuple(ScaleGeomMass(g) for g in MASS_GEOMS[1:])),
    "thigh_length": StretchLimb("thigh_geom", child="leg"),
    "leg_length": StretchLimb("leg_geom", child="foot"),
    "joint_damping": Combined(tuple(ScaleJointDamping(j) for j in MOTOR_JOINTS)),
    "friction": ScaleFriction(),
    "actuator_gain": Combined(tuple(ScaleJointActuatorGear(j) for j in MOTOR_JOINTS)),
    "gravity": ScaleGravity(),
}
"""Scale-factor parameters of the family and the spec edits that apply them."""


def terrain(params: Mapping[str, float], seed: int = 0) -> Terrain:
    """Return the terrain that ``params``' terrain entries describe (missing -> flat)."""
    return Terrain(float(params.get(ROUGHNESS, 0.0)), float(params.get(SLOPE, 0.0)), seed)


def apply_terrain(spec: mujoco.MjSpec, params: Mapping[str, float], seed: int = 0) -> None:
    """Shape the floor of ``spec`` (after the modifiers) as ``params`` say; see :class:`Terrain`."""
    terrain(params, seed).apply(spec)


# ---------------------------------------------------------------------------------------------
# Fidelities and the procedural model


FIDELITY_SETTINGS: Mapping[str, Fidelity] = {
    # Reference: RK4 at 0.002 s, four substeps per control step, MuJoCo's default solver budget.
    "fine": Fidelity(mujoco.mjtIntegrator.mjINT_RK4, 0.002, 100, 50),
    # Two semi-implicit Euler steps of 0.004 s per control step and a small solver budget.
    "coarse": Fidelity(mujoco.mjtIntegrator.mjINT_EULER, 0.004, 10, 5),
}


def build_spec() -> mujoco.MjSpec:
    """Build the nominal hopper spec on a flat floor (fine fidelity, reference parameters)."""
    spec = mujoco.MjSpec()
    spec.modelname = "hopper"
    spec.compiler.degree = False
    spec.compiler.inertiafromgeom = mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_TRUE
    spec.option.gravity = GRAVITY
    FIDELITY_SETTINGS["fine"].apply(spec)

    capsule, hinge, slide = (
        mujoco.mjtGeom.mjGEOM_CAPSULE,
        mujoco.mjtJoint.mjJNT_HINGE,
        mujoco.mjtJoint.mjJNT_SLIDE,
    )
    limited, free = mujoco.mjtLimited.mjLIMITED_TRUE, mujoco.mjtLimited.mjLIMITED_FALSE
    contact: dict[str, Any] = {
        "contype": 1,
        "conaffinity": 1,
        "margin": GEOM_MARGIN,
        "solref": GEOM_SOLREF,
        "solimp": GEOM_SOLIMP,
    }
    limb = {"condim": 1, "rgba": [0.8, 0.6, 0.4, 1.0], **contact}
    world = spec.worldbody
    world.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[20.0, 20.0, 0.125],
        condim=3,
        friction=FLOOR_FRICTION,
        rgba=[0.8, 0.9, 0.8, 1.0],
        **contact,
    )
    torso = world.add_body(name="torso", pos=[0.0, 0.0, TORSO_HEIGHT])
    root = {"pos": [0.0, 0.0, -TORSO_HEIGHT], "limited": free, "armature": 0.0, "damping": 0.0}
    torso.add_joint(name="rootx", type=slide, axis=[1.0, 0.0, 0.0], **root)
    torso.add_joint(name="rootz", type=slide, axis=[0.0, 0.0, 1.0], ref=TORSO_HEIGHT, **root)
    torso.add_joint(
        name="rooty", type=hinge, axis=[0.0, 1.0, 0.0], limited=free, armature=0.0, damping=0.0
    )
    torso.add_geom(
        name="torso_geom",
        type=capsule,
        size=[*TORSO, 0.0],
        mass=capsule_mass(*TORSO),
        friction=[BODY_FRICTION, 0.005, 0.0001],
        **limb,
    )

    actuated = {"axis": [0.0, -1.0, 0.0], "limited": limited, "type": hinge}
    actuated |= {"damping": JOINT_DAMPING, "armature": JOINT_ARMATURE}
    thigh = torso.add_body(name="thigh", pos=[0.0, 0.0, -TORSO[1]])
    thigh.add_joint(name="thigh_joint", range=HIP_RANGE, **actuated)
    thigh.add_geom(
        name="thigh_geom",
        type=capsule,
        pos=[0.0, 0.0, -THIGH[1]],
        size=[*THIGH, 0.0],
        mass=capsule_mass(*THIGH),
        friction=[BODY_FRICTION, 0.005, 0.0001],
        **limb,
    )
    leg = thigh.add_body(name="leg", pos=[0.0, 0.0, -2.0 * THIGH[1] - LEG[1]])
    leg.add_joint(name="leg_joint", pos=[0.0, 0.0, LEG[1]], range=KNEE_RANGE, **actuated)
    leg.add_geom(
        name="leg_geom",
        type=capsule,
        size=[*LEG, 0.0],
        mass=capsule_mass(*LEG),
        friction=[BODY_FRICTION, 0.005, 0.0001],
        **limb,
    )
    ankle_x, ankle_z = 0.13, 0.1  # ankle position in the foot's frame is (-ankle_x, ankle_z)
    foot = leg.add_body(name="foot", pos=[ankle_x, 0.0, -LEG[1] - ankle_z])
    foot.add_joint(name="foot_joint", pos=[-ankle_x, 0.0, ankle_z], range=ANKLE_RANGE, **actuated)
    foot.add_geom(
        name="foot_geom",
        type=capsule,
        pos=[-ankle_x / 2.0, 0.0, ankle_z],
        quat=_FOOT_QUAT,
        size=[*FOOT, 0.0],
        mass=capsule_mass(*FOOT),
        friction=[FOOT_FRICTION, 0.005, 0.0001],
        **limb,
    )
    for joint in MOTOR_JOINTS:
        spec.add_actuator(
            name=joint.replace("_joint", "_motor"),
            target=joint,
            trntype=mujoco.mjtTrn.mjTRN_JOINT,
            gear=[GEAR, 0.0, 0.0, 0.0, 0.0, 0.0],
            ctrllimited=limited,
            ctrlrange=CTRL_RANGE,
        )
    return spec


# ---------------------------------------------------------------------------------------------
# Task


class HopperTask(UniformResetNoise, Task):
    """Gymnasium ``Hopper-v5``'s interface, reward, termination and reset noise.

    Observation ``concat(qpos[1:], clip(qvel, -10, 10))`` (11 entries: torso height and
    angle, three joint angles, six velocities); action: three motor commands in ``[-1, 1]``.
    Reward per step: ``1`` while healthy + forward speed of the torso over the step
    (``dx / 0.008 s``) - ``1e-3 * |action|^2``. The episode terminates when unhealthy: a
    ``qpos[2:]`` or ``qvel`` entry outside ``(-100, 100)``, the torso angle outside
    ``(-0.2, 0.2)``, or the torso height not above 0.7. On sloped terrain that height is
    measured from the ground plane under the torso (identical to v5 on a level floor); the
    observation keeps v5's absolute ``qpos[1]``.
    """

    observation_space = spaces.Box(-np.inf, np.inf, shape=(11,), dtype=np.float64)
    action_space = spaces.Box(*CTRL_RANGE, shape=(3,), dtype=np.float32)
    control_dt = CONTROL_DT
    max_episode_steps = MAX_EPISODE_STEPS
    max_return = MAX_RETURN
    max_abs_velocity = 1000.0  # m/s or rad/s; v5 already terminates beyond 100
    reset_noise = RESET_NOISE

    def observation(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        """Return ``concat(qpos[1:], clip(qvel, -10, 10))``, shape ``(11,)``."""
        return np.concatenate([data.qpos[1:], np.clip(data.qvel, -VELOCITY_CLIP, VELOCITY_CLIP)])

    def healthy(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        """Return v5's health test (false for a non-finite state); see the class docstring."""
        x, z, angle = data.qpos[:3]
        height = z - ground_height(model, x)
        low, high = HEALTHY_STATE_RANGE
        state = np.concatenate([data.qpos[2:], data.qvel])
        return bool(
            np.all((low < state) & (state < high))
            and HEALTHY_Z_RANGE[0] < height < HEALTHY_Z_RANGE[1]
            and HEALTHY_ANGLE_RANGE[0] < angle < HEALTHY_ANGLE_RANGE[1]
        )

    def terminated(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        """Return whether the hopper is unhealthy (fallen, tilted, too fast or non-finite)."""
        return not self.healthy(model, data)

    def before_step(self, model: mujoco.MjModel, data: mujoco.MjData) -> float:
        """Return the torso's x position before the step (for the forward reward)."""
        return float(data.qpos[0])

    def step_reward(
        self,
        model: mujoco.MjModel,
        data: mujoco.MjData,
        terminated: bool,
        action: np.ndarray,
        before: Any,
    ) -> float:
        """Return v5's reward: healthy bonus + forward speed over the step - control cost."""
        speed = (float(data.qpos[0]) - float(before)) / self.control_dt
        return self._reward(speed, np.asarray(action, dtype=np.float64), terminated)

    def reward(self, model: mujoco.MjModel, data: mujoco.MjData, terminated: bool) -> float:
        """State-only variant of :meth:`step_reward` for callers without the pre-step state.

        Uses the torso's current x velocity for the forward speed and the applied control
        (``data.ctrl``) for the control cost.
        """
        return self._reward(float(data.qvel[0]), np.asarray(data.ctrl), terminated)

    @staticmethod
    def _reward(speed: float, action: np.ndarray, terminated: bool) -> float:
        healthy = 0.0 if terminated else HEALTHY_REWARD
        return healthy + FORWARD_REWARD_WEIGHT * speed - CTRL_COST_WEIGHT * float(action @ action)

    def observation_batch(self, state: BatchState) -> np.ndarray:
        """Vectorized :meth:`observation`: shape ``(n, 11)``."""
        velocity = np.clip(state.qvel, -VELOCITY_CLIP, VELOCITY_CLIP)
        return np.concatenate([state.qpos[:, 1:], velocity], axis=1)

    def batch_constants(self, model: mujoco.MjModel) -> np.ndarray:
        """The floor plane's position and normal (for the height above ground)."""
        geom = model.geom("floor")
        normal = np.zeros(3)
        mujoco.mju_rotVecQuat(normal, np.array([0.0, 0.0, 1.0]), geom.quat)
        return np.concatenate([geom.pos, normal])

    def terminated_batch(self, state: BatchState) -> np.ndarray | None:
        """Vectorized :meth:`terminated` (needs ``state.constants``): shape ``(n,)``."""
        if state.constants is None:
            return None
        x, z, angle = state.qpos[:, 0], state.qpos[:, 1], state.qpos[:, 2]
        pos, normal = state.constants[:, :3], state.constants[:, 3:]
        tilt = normal[:, 0] * (x - pos[:, 0]) - normal[:, 1] * pos[:, 1]
        ground = pos[:, 2] - tilt / normal[:, 2]  # as ground_height
        height = z - ground
        low, high = HEALTHY_STATE_RANGE
        joints = np.concatenate([state.qpos[:, 2:], state.qvel], axis=1)
        healthy = (
            np.all((low < joints) & (joints < high), axis=1)
            & (HEALTHY_Z_RANGE[0] < height)
            & (height < HEALTHY_Z_RANGE[1])
            & (HEALTHY_ANGLE_RANGE[0] < angle)
            & (angle < HEALTHY_ANGLE_RANGE[1])
        )
        return ~healthy

    def step_reward_batch(self, state: BatchState, terminated: np.ndarray) -> np.ndarray | None:
        """Vectorized :meth:`step_reward` (needs ``state.action`` and ``state.qpos_before``)."""
        if state.action is None or state.qpos_before is None:
            return None
        speed = (state.qpos[:, 0] - state.qpos_before[:, 0]) / self.control_dt
        healthy = np.where(terminated, 0.0, HEALTHY_REWARD)
        cost = np.einsum("ij,ij->i", state.action, state.action)
        return healthy + FORWARD_REWARD_WEIGHT * speed - CTRL_COST_WEIGHT * cost


TASK = HopperTask()


@register_family("hopper")
class HopperFamily(SpecFamily):
    """Forward hopping on procedural terrain with randomized physics and I/O effects.

    Scaled masses, segment lengths, joint damping, friction, actuator gain and gravity;
    bumpy, sloped ground; actuator latency and deadzone; observation noise.

    Fidelities: ``fine`` is Gymnasium's reference integration (RK4, 0.002 s, 4 substeps);
    ``coarse`` is two Euler steps of 0.004 s with a reduced solver budget.

    Args:
        terrain_seed: Seed of the terrain's bump shape; the roughness only scales it, so
            every model is deterministic per theta (which keeps the env's model cache valid).
    """

    name = "hopper"
    space = SPACE
    fidelities = ("coarse", "fine")
    task = TASK
    max_return = MAX_RETURN
    max_episode_steps = MAX_EPISODE_STEPS
    absolute_params = TERRAIN_PARAMS

    def __init__(self, terrain_seed: int = 0) -> None:
        self.terrain_seed = int(terrain_seed)

    def check_space(self, space: ParamSpace) -> None:
        """As :meth:`Family.check_space`, but the terrain slope may be negative (downhill)."""
        others = [param for param in space if param.name != SLOPE]
        if others:
            super().check_space(ParamSpace(others))

    numeric_params = (
        "torso_mass",
        "leg_mass",
        "joint_damping",
        "friction",
        "actuator_gain",
        "gravity",
    )
    modifiers = MODIFIERS
    fidelity_settings = FIDELITY_SETTINGS
    build_spec = staticmethod(build_spec)

    def edit_spec(self, spec: mujoco.MjSpec, theta: Mapping[str, float]) -> None:
        """Lay the generated terrain (roughness, slope) under the hopper."""
        apply_terrain(spec, theta, self.terrain_seed)


PROXY = register_reality(
    RealityProxy(
        name="gymnasium/Hopper-v5",
        family="hopper",
        model_file=functools.partial(gymnasium_asset, "hopper.xml"),
        task=TASK,
        modifiers=MODIFIERS,
        pinned_mass_geoms=MASS_GEOMS,
        spec_edit=apply_terrain,
        spec_edit_params=TERRAIN_PARAMS,
    )
)
"""Gymnasium's own ``hopper.xml`` with the family's parameters (terrain included)."""
