"""The ``cartpole_swingup`` family: dm_control's cart-pole swing-up, built with ``mujoco.MjSpec``.

The nominal model reproduces the suite's ``cartpole.xml`` (geometry, masses, joints, limits,
actuator, integrator, contacts off) and the task reproduces ``cartpole.swingup``: the pole
starts hanging down, the smooth reward multiplies "upright", "centered", "small control" and
"small velocity" terms built from :func:`~generators.rewards.tolerance`, and an episode is
10 s = 1000 control steps of 0.01 s without termination.

Physical parameters are scale factors relative to that reference, except
``slider_friction``: the reference has no dry friction, so it is an absolute force in N
(nominal 0). :data:`MODIFIERS` addresses elements by the names of dm_control's XML
(``cart``/``pole_1`` geoms, ``slider``/``hinge_1`` joints, ``slide`` motor), so the same table
edits the procedural model and the reality proxy's load of the installed package's own file.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import mujoco
import numpy as np
from gymnasium import spaces

from generators.families import Fidelity, SpecFamily, register_family
from generators.modifiers import (
    ScaleActuatorGear,
    ScaleGeomLength,
    ScaleGeomMass,
    ScaleGravity,
    ScaleJointDamping,
    SetJointFrictionLoss,
    SpecModifier,
)
from generators.reality import RealityProxy, dm_control_asset, register_reality
from generators.rewards import tolerance
from generators.space import Param, ParamSpace
from generators.task import DEADZONE, LATENCY, OBS_NOISE, BatchState, Task

# Reference model of dm_control's suite/cartpole.xml, SI units.
CART_HALF_SIZE = (0.2, 0.15, 0.1)
CART_MASS = 1.0
CART_HEIGHT = 1.0
POLE_RADIUS = 0.045
POLE_TIP = (0.0, 0.0, 1.0)  # the pole capsule runs from the hinge (origin) to here
POLE_MASS = 0.1
SLIDER_RANGE = (-1.8, 1.8)
SLIDER_SOLREF_LIMIT = (0.08, 1.0)
SLIDER_DAMPING = 5e-4
HINGE_DAMPING = 2e-6
GEAR = 10.0
CTRL_RANGE = (-1.0, 1.0)
GRAVITY = (0.0, 0.0, -9.81)
RAIL_RADIUS, RAIL_HALF_LENGTH, RAIL_OFFSET = 0.02, 2.0, 0.07
TIMESTEP = 0.01
CONTROL_DT = 0.01  # dm_control's default: one physics step per control step
MAX_EPISODE_STEPS = 1000  # the suite's 10 s time limit
_X_AXIS_QUAT = (math.sqrt(0.5), 0.0, math.sqrt(0.5), 0.0)  # turns a capsule's z axis onto x

# Joint addresses shared by the procedural model and dm_control's XML.
SLIDER, HINGE = 0, 1

# Ranges keep every corner swingable within the +-1.8 m rail: with a heavy cart, a weak motor
# and strong gravity together, pumping needs most of the rail and of the 10 s episode.
SPACE = ParamSpace(
    [
        Param("pole_mass", 0.5, 2.0, 1.0, scale="log"),
        Param("pole_length", 0.75, 1.3, 1.0, scale="log", levels=64),
        Param("cart_mass", 0.6, 1.6, 1.0, scale="log"),
        # The reference damping is tiny (5e-4 N s/m, 2e-6 N m s), so only large factors
        # matter: up to 0.5 N s/m on the slider and 2e-3 N m s on the hinge.
        Param("slider_damping", 0.1, 1000.0, 1.0, scale="log"),
        Param("hinge_damping", 0.1, 1000.0, 1.0, scale="log"),
        Param("slider_friction", 0.0, 0.5, 0.0),  # absolute dry friction, N (max force 10 N)
        Param("actuator_gain", 0.7, 1.4, 1.0),
        Param("gravity", 0.8, 1.2, 1.0),
        Param(LATENCY, 0.0, 3.0, 0.0, integer=True),
        Param(OBS_NOISE, 0.0, 0.05, 0.0),
        Param(DEADZONE, 0.0, 0.1, 0.0),
    ]
)
"""Default parameter space; physical entries are scale factors (nominal 1.0) except
``slider_friction`` (N); ``deadzone`` is a fraction of the control range."""

MODIFIERS: Mapping[str, SpecModifier] = {
    "pole_mass": ScaleGeomMass("pole_1"),
    "pole_length": ScaleGeomLength("pole_1"),
    "cart_mass": ScaleGeomMass("cart"),
    "slider_damping": ScaleJointDamping("slider"),
    "hinge_damping": ScaleJointDamping("hinge_1"),
    "slider_friction": SetJointFrictionLoss(("slider",)),
    "actuator_gain": ScaleActuatorGear("slide"),
    "gravity": ScaleGravity(),
}
"""Model parameters of the family and the spec edits that apply them."""

ABSOLUTE_PARAMS = ("slider_friction",)
"""Model parameters in physical units rather than scale factors."""

FIDELITY_SETTINGS: Mapping[str, Fidelity] = {
    # Reference: dm_control's RK4 at 0.01 s (one step per control step), default solver.
    "fine": Fidelity(mujoco.mjtIntegrator.mjINT_RK4, TIMESTEP, 100, 50),
    # The control step is one physics step already; coarse swaps RK4's four evaluations
    # for one semi-implicit Euler step and cuts the solver budget; 20 line-search iterations,
    # as the slider's dry friction needs them to stick.
    "coarse": Fidelity(mujoco.mjtIntegrator.mjINT_EULER, TIMESTEP, 10, 20),
}


def build_spec() -> mujoco.MjSpec:
    """Build the nominal cart-pole spec (fine fidelity, reference parameters)."""
    spec = mujoco.MjSpec()
    spec.modelname = "cartpole_swingup"
    spec.option.gravity = GRAVITY
    spec.option.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONTACT
    FIDELITY_SETTINGS["fine"].apply(spec)

    capsule = mujoco.mjtGeom.mjGEOM_CAPSULE
    world = spec.worldbody
    world.add_geom(
        name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, pos=[0, 0, -0.05], size=[4, 4, 0.2]
    )
    for name, y in (("rail1", RAIL_OFFSET), ("rail2", -RAIL_OFFSET)):
        world.add_geom(
            name=name,
            type=capsule,
            pos=[0.0, y, CART_HEIGHT],
            quat=_X_AXIS_QUAT,
            size=[RAIL_RADIUS, RAIL_HALF_LENGTH, 0.0],
            rgba=[0.3, 0.5, 0.7, 1.0],
        )
    cart = world.add_body(name="cart", pos=[0.0, 0.0, CART_HEIGHT])
    cart.add_joint(
        name="slider",
        type=mujoco.mjtJoint.mjJNT_SLIDE,
        axis=[1.0, 0.0, 0.0],
        limited=mujoco.mjtLimited.mjLIMITED_TRUE,
        range=SLIDER_RANGE,
        solref_limit=SLIDER_SOLREF_LIMIT,
        damping=SLIDER_DAMPING,
    )
    cart.add_geom(
        name="cart",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=CART_HALF_SIZE,
        mass=CART_MASS,
        rgba=[0.7, 0.5, 0.3, 1.0],
    )
    pole = cart.add_body(name="pole_1")
    pole.add_joint(
        name="hinge_1", type=mujoco.mjtJoint.mjJNT_HINGE, axis=[0, 1, 0], damping=HINGE_DAMPING
    )
    pole.add_geom(
        name="pole_1",
        type=capsule,
        fromto=[0.0, 0.0, 0.0, *POLE_TIP],
        size=[POLE_RADIUS, 0.0, 0.0],
        mass=POLE_MASS,
        rgba=[0.7, 0.5, 0.3, 1.0],
    )
    spec.add_actuator(
        name="slide",
        target="slider",
        trntype=mujoco.mjtTrn.mjTRN_JOINT,
        gear=[GEAR, 0.0, 0.0, 0.0, 0.0, 0.0],
        ctrllimited=mujoco.mjtLimited.mjLIMITED_TRUE,
        ctrlrange=CTRL_RANGE,
    )
    return spec


# ---------------------------------------------------------------------------------------------
# Task


class CartpoleSwingupTask(Task):
    """dm_control ``cartpole.swingup``'s interface, smooth reward and initial state.

    Observation (dm_control's ``position`` then ``velocity``, flattened): cart position,
    cos and sin of the pole angle (0 = upright), cart velocity, pole angular velocity.
    Action: motor command in ``[-1, 1]``. Reward in ``[0, 1]`` per step:
    ``upright * centered * small_control * small_velocity``, computed from the applied
    control (after latency and deadzone), as dm_control reads ``physics.control()``.
    Episodes never terminate; they are truncated after 1000 steps.
    """

    observation_space = spaces.Box(-np.inf, np.inf, shape=(5,), dtype=np.float64)
    action_space = spaces.Box(*CTRL_RANGE, shape=(1,), dtype=np.float32)
    control_dt = CONTROL_DT
    max_episode_steps = MAX_EPISODE_STEPS
    max_return = float(MAX_EPISODE_STEPS)
    max_abs_velocity = 500.0  # m/s or rad/s; a sound swing-up stays far below

    def initial_state(
        self, model: mujoco.MjModel, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cart at ``0.01 N(0,1)``, pole down at ``pi + 0.01 N(0,1)``, velocities ``0.01 N``."""
        qpos = model.qpos0.copy()
        qpos[SLIDER] = 0.01 * rng.standard_normal()
        qpos[HINGE] = math.pi + 0.01 * rng.standard_normal()
        return qpos, 0.01 * rng.standard_normal(model.nv)

    def observation(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        """Return ``[x, cos(angle), sin(angle), x_dot, angle_dot]``, shape ``(5,)``.

        dm_control reads the pole's ``xmat`` entries ``zz``/``xz``; for a hinge about ``y``
        they equal cos/sin of the joint angle, which (unlike ``xmat`` right after
        ``mj_step``) is always in sync with the state.
        """
        angle = data.qpos[HINGE]
        return np.array(
            [data.qpos[SLIDER], math.cos(angle), math.sin(angle), data.qvel[0], data.qvel[1]]
        )

    def state_from_observation(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cart position and pole angle (from its cos and sin), then both velocities."""
        obs = np.asarray(obs, dtype=np.float64)
        angle = np.arctan2(obs[:, 2], obs[:, 1])
        return np.stack([obs[:, 0], angle], axis=1), obs[:, 3:5].copy()

    def terminated(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        """Never: swing-up episodes only end by truncation (or the stability guard)."""
        return False

    def reward(self, model: mujoco.MjModel, data: mujoco.MjData, terminated: bool) -> float:
        """Return dm_control's smooth swing-up reward for the current state and control."""
        return swingup_reward(
            cart_position=float(data.qpos[SLIDER]),
            pole_cos=math.cos(data.qpos[HINGE]),
            control=float(data.ctrl[0]),
            pole_angular_velocity=float(data.qvel[HINGE]),
        )

    def observation_batch(self, state: BatchState) -> np.ndarray:
        """Vectorized :meth:`observation`: shape ``(n, 5)``."""
        angle = state.qpos[:, HINGE]
        return np.stack(
            [
                state.qpos[:, SLIDER],
                np.cos(angle),
                np.sin(angle),
                state.qvel[:, 0],
                state.qvel[:, 1],
            ],
            axis=1,
        )

    def terminated_batch(self, state: BatchState) -> np.ndarray:
        """Vectorized :meth:`terminated`: never."""
        return np.zeros(len(state), dtype=bool)

    def reward_batch(self, state: BatchState, terminated: np.ndarray) -> np.ndarray | None:
        """Vectorized :meth:`reward` from ``state.ctrl`` (``None`` without it)."""
        if state.ctrl is None:
            return None
        pole_cos = np.cos(state.qpos[:, HINGE])
        return swingup_reward_batch(
            state.qpos[:, SLIDER], pole_cos, state.ctrl[:, 0], state.qvel[:, HINGE]
        )


def swingup_reward(
    cart_position: float, pole_cos: float, control: float, pole_angular_velocity: float
) -> float:
    """dm_control's ``Balance._get_reward(sparse=False)`` for one pole.

    Each factor lies in a sub-interval of ``[0, 1]``: upright in ``[0, 1]``, centered and
    small velocity in ``[0.5, 1]``, small control in ``[0.8, 1]``.
    """
    upright = (pole_cos + 1.0) / 2.0
    centered = (1.0 + tolerance(cart_position, margin=2.0)) / 2.0
    small_control = tolerance(control, margin=1.0, value_at_margin=0.0, sigmoid="quadratic")
    small_control = (4.0 + small_control) / 5.0
    small_velocity = (1.0 + tolerance(pole_angular_velocity, margin=5.0)) / 2.0
    return float(upright * small_control * small_velocity * centered)


def swingup_reward_batch(
    cart_position: np.ndarray,
    pole_cos: np.ndarray,
    control: np.ndarray,
    pole_angular_velocity: np.ndarray,
) -> np.ndarray:
    """:func:`swingup_reward` over arrays of shape ``(n,)``."""
    upright = (pole_cos + 1.0) / 2.0
    centered = (1.0 + tolerance(cart_position, margin=2.0)) / 2.0
    small_control = tolerance(control, margin=1.0, value_at_margin=0.0, sigmoid="quadratic")
    small_control = (4.0 + small_control) / 5.0
    small_velocity = (1.0 + tolerance(pole_angular_velocity, margin=5.0)) / 2.0
    return np.asarray(upright * small_control * small_velocity * centered, dtype=np.float64)


TASK = CartpoleSwingupTask()


@register_family("cartpole_swingup")
class CartpoleSwingupFamily(SpecFamily):
    """Cart-pole swing-up with scaled masses, pole length, damping, gain and gravity, dry
    slider friction, latency, observation noise and an actuator deadzone.

    Fidelities: ``fine`` is dm_control's reference integration (RK4, 0.01 s); ``coarse`` is
    one Euler step of 0.01 s with a reduced solver budget. Both step once per control step.
    """

    name = "cartpole_swingup"
    space = SPACE
    fidelities = ("coarse", "fine")
    task = TASK
    max_return = TASK.max_return
    max_episode_steps = MAX_EPISODE_STEPS
    absolute_params = ABSOLUTE_PARAMS

    numeric_params = (
        "pole_mass",
        "cart_mass",
        "slider_damping",
        "hinge_damping",
        "slider_friction",
        "actuator_gain",
        "gravity",
    )
    modifiers = MODIFIERS
    fidelity_settings = FIDELITY_SETTINGS
    build_spec = staticmethod(build_spec)


REALITY = register_reality(
    RealityProxy(
        name="dm_control/cartpole-swingup",
        family="cartpole_swingup",
        model_file=functools.partial(dm_control_asset, "cartpole.xml"),
        task=TASK,
        modifiers=MODIFIERS,
    )
)
"""dm_control's own ``suite/cartpole.xml`` (from the installed package) as the held-out system."""
