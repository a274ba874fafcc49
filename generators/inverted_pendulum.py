"""The ``inverted_pendulum`` family: a cart-pole built procedurally with ``mujoco.MjSpec``.

Its nominal model reproduces Gymnasium's ``InvertedPendulum-v5`` (geometry, masses, joints,
actuator, integrator) and so does its task (observation, action, reward, termination,
1000-step truncation).

Physical parameters are scale factors relative to that reference, except
``slider_friction``: the reference has no dry friction, so it is an absolute force in N
(nominal 0). ``deadzone`` (a fraction of the control range) acts on the action channel, like
latency and observation noise.

The spec modifiers in :data:`MODIFIERS` address elements by the names Gymnasium's XML uses
(``cart``/``cpole`` geoms, ``slider``/``hinge`` joints, ``slide`` motor), so the same table
edits both the procedural model and the reality proxy's copy of Gymnasium's XML.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import mujoco
import numpy as np
from gymnasium import spaces

from generators import kernels
from generators.families import Fidelity, SpecFamily, register_family
from generators.modifiers import (
    ScaleActuatorGear,
    ScaleGeomLength,
    ScaleGeomMass,
    ScaleGravity,
    ScaleJointDamping,
    SetJointFrictionLoss,
    SpecModifier,
    capsule_mass,
)
from generators.space import Param, ParamSpace
from generators.task import (
    DEADZONE,
    LATENCY,
    OBS_NOISE,
    BatchState,
    Task,
    UniformResetNoise,
)

# Reference geometry of Gymnasium's inverted_pendulum.xml, SI units.
CART_RADIUS, CART_HALF_LENGTH = 0.1, 0.1
POLE_RADIUS = 0.049
POLE_TIP = (0.001, 0.0, 0.6)  # the pole capsule runs from the hinge (origin) to here
RAIL_RADIUS, RAIL_HALF_LENGTH = 0.02, 1.0
SLIDER_RANGE = (-1.0, 1.0)
HINGE_RANGE = (-math.pi / 2, math.pi / 2)
JOINT_DAMPING = 1.0
GEAR = 100.0
CTRL_RANGE = (-3.0, 3.0)
GRAVITY = (0.0, 0.0, -9.81)
CONTROL_DT = 0.04
MAX_EPISODE_STEPS = 1000
MAX_ANGLE = 0.2
RESET_NOISE = 0.01
_X_AXIS_QUAT = (math.sqrt(0.5), 0.0, math.sqrt(0.5), 0.0)  # turns a capsule's z axis onto x


CART_MASS = capsule_mass(CART_RADIUS, CART_HALF_LENGTH)  # 10.47 kg
POLE_MASS = capsule_mass(POLE_RADIUS, math.hypot(*POLE_TIP) / 2.0)  # 5.02 kg

SPACE = ParamSpace(
    [
        Param("pole_mass", 0.5, 2.0, 1.0, scale="log"),
        Param("pole_length", 0.6, 1.6, 1.0, scale="log", levels=64),
        Param("cart_mass", 0.5, 2.0, 1.0, scale="log"),
        Param("hinge_damping", 0.25, 4.0, 1.0, scale="log"),
        Param("slider_damping", 0.25, 4.0, 1.0, scale="log"),
        Param("slider_friction", 0.0, 5.0, 0.0),  # absolute dry friction, N (max force 300 N)
        Param("actuator_gain", 0.5, 1.5, 1.0),
        Param("gravity", 0.8, 1.2, 1.0),
        Param(LATENCY, 0.0, 3.0, 0.0, integer=True),
        Param(OBS_NOISE, 0.0, 0.05, 0.0),
        Param(DEADZONE, 0.0, 0.1, 0.0),
    ]
)
"""Default parameter space; physical entries are scale factors (nominal 1.0) except
``slider_friction`` (N); ``deadzone`` is a fraction of the control range."""

MODIFIERS: Mapping[str, SpecModifier] = {
    "pole_mass": ScaleGeomMass("cpole"),
    "pole_length": ScaleGeomLength("cpole"),
    "cart_mass": ScaleGeomMass("cart"),
    "hinge_damping": ScaleJointDamping("hinge"),
    "slider_damping": ScaleJointDamping("slider"),
    "slider_friction": SetJointFrictionLoss(("slider",)),
    "actuator_gain": ScaleActuatorGear("slide"),
    "gravity": ScaleGravity(),
}
"""Model parameters of the family and the spec edits that apply them."""

ABSOLUTE_PARAMS = ("slider_friction",)
"""Model parameters in physical units rather than scale factors."""

MASS_GEOMS = ("cart", "cpole")
"""Geoms whose mass the modifiers scale; a spec must give them explicit masses."""


# ---------------------------------------------------------------------------------------------
# Fidelities


FIDELITY_SETTINGS: Mapping[str, Fidelity] = {
    # Reference: RK4 at 0.02 s, two substeps per control step, MuJoCo's default solver budget.
    "fine": Fidelity(mujoco.mjtIntegrator.mjINT_RK4, 0.02, 100, 50),
    # One semi-implicit Euler step per control step and a small solver budget. The slider's
    # dry friction is an always-active constraint whose 0.04 s steps need up to ~20 line
    # search iterations: with 5, Newton often stops at the unconstrained step and the friction
    # overshoots (the cart chatters instead of sticking). The extra iterations cost ~nothing.
    "coarse": Fidelity(mujoco.mjtIntegrator.mjINT_EULER, CONTROL_DT, 10, 20),
}


def build_spec() -> mujoco.MjSpec:
    """Build the nominal cart-pole spec (fine fidelity, reference parameters)."""
    spec = mujoco.MjSpec()
    spec.modelname = "inverted_pendulum"
    spec.compiler.degree = False
    spec.compiler.inertiafromgeom = mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_TRUE
    spec.option.gravity = GRAVITY
    FIDELITY_SETTINGS["fine"].apply(spec)

    capsule = mujoco.mjtGeom.mjGEOM_CAPSULE
    limited = mujoco.mjtLimited.mjLIMITED_TRUE
    no_contact = {"contype": 0, "conaffinity": 0}
    world = spec.worldbody
    world.add_geom(
        name="rail",
        type=capsule,
        quat=_X_AXIS_QUAT,
        size=[RAIL_RADIUS, RAIL_HALF_LENGTH, 0.0],
        rgba=[0.3, 0.3, 0.7, 1.0],
        **no_contact,
    )
    cart = world.add_body(name="cart")
    cart.add_joint(
        name="slider",
        type=mujoco.mjtJoint.mjJNT_SLIDE,
        axis=[1.0, 0.0, 0.0],
        limited=limited,
        range=SLIDER_RANGE,
        damping=JOINT_DAMPING,
    )
    cart.add_geom(
        name="cart",
        type=capsule,
        quat=_X_AXIS_QUAT,
        size=[CART_RADIUS, CART_HALF_LENGTH, 0.0],
        mass=CART_MASS,
        rgba=[0.7, 0.7, 0.0, 1.0],
        **no_contact,
    )
    pole = cart.add_body(name="pole")
    pole.add_joint(
        name="hinge",
        type=mujoco.mjtJoint.mjJNT_HINGE,
        axis=[0.0, 1.0, 0.0],
        limited=limited,
        range=HINGE_RANGE,
        damping=JOINT_DAMPING,
    )
    pole.add_geom(
        name="cpole",
        type=capsule,
        fromto=[0.0, 0.0, 0.0, *POLE_TIP],
        size=[POLE_RADIUS, 0.0, 0.0],
        mass=POLE_MASS,
        rgba=[0.0, 0.7, 0.7, 1.0],
        **no_contact,
    )
    spec.add_actuator(
        name="slide",
        target="slider",
        trntype=mujoco.mjtTrn.mjTRN_JOINT,
        gear=[GEAR, 0.0, 0.0, 0.0, 0.0, 0.0],
        ctrllimited=limited,
        ctrlrange=CTRL_RANGE,
    )
    return spec


# ---------------------------------------------------------------------------------------------
# Task


class InvertedPendulumTask(UniformResetNoise, Task):
    """Gymnasium ``InvertedPendulum-v5``'s interface, reward and termination.

    Observation ``concat(qpos, qvel)`` = (cart position, pole angle, cart velocity, pole
    angular velocity); action: motor command in ``[-3, 3]``; reward 1 per step while
    ``|angle| <= 0.2`` and the state is finite, 0 on the step that ends the episode.
    """

    observation_space = spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float64)
    action_space = spaces.Box(*CTRL_RANGE, shape=(1,), dtype=np.float32)
    control_dt = CONTROL_DT
    max_episode_steps = MAX_EPISODE_STEPS
    max_return = float(MAX_EPISODE_STEPS)
    max_abs_velocity = 100.0  # m/s or rad/s; a sound cart-pole stays far below
    reset_noise = RESET_NOISE

    def observation(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        """Return ``concat(qpos, qvel)``, shape ``(4,)``."""
        return np.concatenate([data.qpos, data.qvel])

    def state_from_observation(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The observation is ``concat(qpos, qvel)``: split it."""
        obs = np.asarray(obs, dtype=np.float64)
        return obs[:, :2].copy(), obs[:, 2:4].copy()

    def terminated(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        """Return whether the pole fell past 0.2 rad or the state is not finite."""
        out = np.empty(1, dtype=bool)
        _ended(data.qpos[None], data.qvel[None], MAX_ANGLE, out)
        return bool(out[0])

    def reward(self, model: mujoco.MjModel, data: mujoco.MjData, terminated: bool) -> float:
        """Return 1 per step survived, 0 on the terminating step."""
        return 0.0 if terminated else 1.0

    def observation_batch(self, state: BatchState) -> np.ndarray:
        """Vectorized :meth:`observation`: shape ``(n, 4)``."""
        return np.concatenate([state.qpos, state.qvel], axis=1)

    def terminated_batch(self, state: BatchState) -> np.ndarray:
        """Vectorized :meth:`terminated`: shape ``(n,)``."""
        out = np.empty(len(state), dtype=bool)
        _ended(state.qpos, state.qvel, MAX_ANGLE, out)
        return out

    def reward_batch(self, state: BatchState, terminated: np.ndarray) -> np.ndarray:
        """Vectorized :meth:`reward`: shape ``(n,)``."""
        del state
        return np.where(terminated, 0.0, 1.0)


@kernels.compiled(f"void({kernels.F2}, {kernels.F2}, float64, {kernels.B1})")
def _ended(qpos: np.ndarray, qvel: np.ndarray, max_angle: float, out: np.ndarray) -> None:
    """Mark in ``out`` the rows with a non-finite ``qpos`` or ``qvel`` entry (v5 checks its
    observation) or a pole past ``max_angle`` (compiled; the one code of both paths)."""
    for i in range(qpos.shape[0]):
        finite = True
        for j in range(qpos.shape[1]):
            finite &= math.isfinite(qpos[i, j])
        for j in range(qvel.shape[1]):
            finite &= math.isfinite(qvel[i, j])
        out[i] = not finite or abs(qpos[i, 1]) > max_angle


TASK = InvertedPendulumTask()


@register_family("inverted_pendulum")
class InvertedPendulumFamily(SpecFamily):
    """Cart-pole balancing with scaled masses, pole length, damping, gain and gravity, dry
    slider friction, latency, observation noise and an actuator deadzone.

    Fidelities: ``fine`` is Gymnasium's reference integration (RK4, 0.02 s, 2 substeps);
    ``coarse`` is one Euler step of 0.04 s with a reduced solver budget.
    """

    name = "inverted_pendulum"
    space = SPACE
    fidelities = ("coarse", "fine")
    task = TASK
    max_return = TASK.max_return
    max_episode_steps = MAX_EPISODE_STEPS
    absolute_params = ABSOLUTE_PARAMS

    numeric_params = (
        "pole_mass",
        "cart_mass",
        "hinge_damping",
        "slider_damping",
        "slider_friction",
        "actuator_gain",
        "gravity",
    )
    modifiers = MODIFIERS
    fidelity_settings = FIDELITY_SETTINGS
    build_spec = staticmethod(build_spec)
