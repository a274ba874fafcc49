"""The ``reacher`` family: Gymnasium's two-link planar arm, built with ``mujoco.MjSpec``.

The nominal model reproduces Gymnasium's ``reacher.xml`` and the task reproduces
``Reacher-v5``: a 10-dim observation, torques in ``[-1, 1]^2``, reward
``-|fingertip - target| - |action|^2`` (v5's weights 1 and 1), a target drawn uniformly in
the disc of radius 0.2 at every reset, no termination and truncation after 50 steps.

Physical parameters are scale factors relative to that reference, except ``joint_friction``:
the reference has no dry friction, so it is an absolute torque in N m (nominal 0). The arm
moves in the horizontal plane about vertical hinges, so ``gravity`` changes the model but
not the arm's dynamics (it stands in for a sim-to-real mismatch that does not matter here).
:data:`MODIFIERS` addresses elements by the names of Gymnasium's XML (``link0``/``link1``
geoms, ``body1``/``fingertip`` bodies, ``joint0``/``joint1`` joints, the motors by their
joint since the XML leaves them unnamed), so the same table edits the procedural model and
the reality proxy's copy of Gymnasium's file.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import mujoco
import numpy as np
from gymnasium import spaces

from generators import kernels
from generators.families import Fidelity, SpecFamily, register_family
from generators.modifiers import (
    Combined,
    ScaleBodyPos,
    ScaleGeomLength,
    ScaleGeomMass,
    ScaleGravity,
    ScaleJointActuatorGear,
    ScaleJointArmature,
    ScaleJointDamping,
    SetJointFrictionLoss,
    SpecModifier,
    capsule_mass,
)
from generators.reality import RealityProxy, gymnasium_asset, register_reality
from generators.space import Param, ParamSpace
from generators.task import DEADZONE, LATENCY, OBS_NOISE, BatchState, Task, one_model

# Reference model of Gymnasium's reacher.xml, SI units.
LINK_LENGTH = 0.1
LINK_RADIUS = 0.01
FINGERTIP_OFFSET = 0.11  # fingertip body, along link1 from joint1
FINGERTIP_RADIUS = 0.01
TARGET_RADIUS = 0.009
TARGET_START = (0.1, -0.1)  # target body position, also its slide joints' ref
TARGET_RANGE = (-0.27, 0.27)
ARM_HEIGHT = 0.01
ARMATURE = 1.0
JOINT_DAMPING = 1.0
JOINT1_RANGE = (-3.0, 3.0)
GEAR = 200.0
CTRL_RANGE = (-1.0, 1.0)
GRAVITY = (0.0, 0.0, -9.81)
TIMESTEP = 0.01
CONTROL_DT = 0.02  # frame_skip 2
MAX_EPISODE_STEPS = 50
REWARD_DIST_WEIGHT = 1.0
REWARD_CONTROL_WEIGHT = 1.0  # ReacherEnv's actual default (its docstring says 0.1)
ARM_RESET_NOISE = 0.1
VEL_RESET_NOISE = 0.005
GOAL_RADIUS = 0.2
GOAL_ATTEMPTS = 8
"""Goal draws a batched reset is given ahead; all 8 fall outside the circle with probability
(1 - pi/4)^8 ~ 5e-6, and such a reset draws from its generator instead."""
LINK_MASS = capsule_mass(LINK_RADIUS, LINK_LENGTH / 2.0)  # 0.0356 kg, density 1000
ARM_JOINTS = ("joint0", "joint1")
TARGET_JOINTS = ("target_x", "target_y")
MASS_GEOMS = ("link0", "link1")
"""Geoms whose mass the modifiers scale; a spec must give them explicit masses."""

SPACE = ParamSpace(
    [
        Param("link_mass", 0.5, 2.0, 1.0, scale="log"),
        # Armature (1 kg m^2 per joint) dominates the arm's inertia: the "effective mass".
        Param("armature", 0.5, 2.0, 1.0, scale="log"),
        # Short links leave part of the 0.2 m target disc out of reach; 0.9x keeps 0.19 m.
        Param("link0_length", 0.9, 1.3, 1.0, scale="log", levels=32),
        Param("link1_length", 0.9, 1.3, 1.0, scale="log", levels=32),
        Param("joint_damping", 0.5, 2.0, 1.0, scale="log"),
        Param("joint_friction", 0.0, 5.0, 0.0),  # absolute dry friction, N m (max 200 N m)
        Param("actuator_gain", 0.6, 1.5, 1.0),
        Param("gravity", 0.7, 1.3, 1.0),
        Param(LATENCY, 0.0, 2.0, 0.0, integer=True),
        Param(OBS_NOISE, 0.0, 0.02, 0.0),
        Param(DEADZONE, 0.0, 0.1, 0.0),
    ]
)
"""Default parameter space; physical entries are scale factors (nominal 1.0) except
``joint_friction`` (N m); ``deadzone`` is a fraction of the control range."""

MODIFIERS: Mapping[str, SpecModifier] = {
    "link_mass": Combined(tuple(ScaleGeomMass(g) for g in MASS_GEOMS)),
    "armature": Combined(tuple(ScaleJointArmature(j) for j in ARM_JOINTS)),
    "link0_length": Combined((ScaleGeomLength("link0"), ScaleBodyPos("body1"))),
    "link1_length": Combined((ScaleGeomLength("link1"), ScaleBodyPos("fingertip"))),
    "joint_damping": Combined(tuple(ScaleJointDamping(j) for j in ARM_JOINTS)),
    "joint_friction": SetJointFrictionLoss(ARM_JOINTS),
    "actuator_gain": Combined(tuple(ScaleJointActuatorGear(j) for j in ARM_JOINTS)),
    "gravity": ScaleGravity(),
}
"""Model parameters of the family and the spec edits that apply them."""

ABSOLUTE_PARAMS = ("joint_friction",)
"""Model parameters in physical units rather than scale factors."""

FIDELITY_SETTINGS: Mapping[str, Fidelity] = {
    # Reference: Gymnasium's RK4 at 0.01 s, two substeps per control step, default solver.
    "fine": Fidelity(mujoco.mjtIntegrator.mjINT_RK4, TIMESTEP, 100, 50),
    # One semi-implicit Euler step per control step and a small solver budget; 20 line-search
    # iterations, as dry joint friction needs them to stick (with 5 the arm drifts by up to
    # 1 rad over 100 steps against a converged solve).
    "coarse": Fidelity(mujoco.mjtIntegrator.mjINT_EULER, CONTROL_DT, 10, 20),
}


def build_spec() -> mujoco.MjSpec:
    """Build the nominal reacher spec (fine fidelity, reference parameters)."""
    spec = mujoco.MjSpec()
    spec.modelname = "reacher"
    spec.compiler.degree = False
    spec.compiler.inertiafromgeom = mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_TRUE
    spec.option.gravity = GRAVITY
    FIDELITY_SETTINGS["fine"].apply(spec)

    capsule, sphere = mujoco.mjtGeom.mjGEOM_CAPSULE, mujoco.mjtGeom.mjGEOM_SPHERE
    hinge, slide = mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE
    limited, free = mujoco.mjtLimited.mjLIMITED_TRUE, mujoco.mjtLimited.mjLIMITED_FALSE
    no_contact = {"contype": 0, "conaffinity": 0}
    arm_joint = {"type": hinge, "axis": [0, 0, 1], "armature": ARMATURE, "damping": JOINT_DAMPING}
    world = spec.worldbody
    world.add_geom(name="ground", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[1, 1, 10], **no_contact)
    for name, fromto in (
        ("sideS", [-0.3, -0.3, 0.01, 0.3, -0.3, 0.01]),
        ("sideE", [0.3, -0.3, 0.01, 0.3, 0.3, 0.01]),
        ("sideN", [-0.3, 0.3, 0.01, 0.3, 0.3, 0.01]),
        ("sideW", [-0.3, -0.3, 0.01, -0.3, 0.3, 0.01]),
    ):
        world.add_geom(name=name, type=capsule, fromto=fromto, size=[0.02, 0, 0], **no_contact)
    world.add_geom(
        name="root",
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        fromto=[0, 0, 0, 0, 0, 0.02],
        size=[0.011, 0, 0],
        **no_contact,
    )
    link = {"type": capsule, "size": [LINK_RADIUS, 0, 0], "mass": LINK_MASS, **no_contact}
    body0 = world.add_body(name="body0", pos=[0, 0, ARM_HEIGHT])
    body0.add_geom(name="link0", fromto=[0, 0, 0, LINK_LENGTH, 0, 0], **link)
    body0.add_joint(name="joint0", limited=free, **arm_joint)
    body1 = body0.add_body(name="body1", pos=[LINK_LENGTH, 0, 0])
    body1.add_joint(name="joint1", limited=limited, range=JOINT1_RANGE, **arm_joint)
    body1.add_geom(name="link1", fromto=[0, 0, 0, LINK_LENGTH, 0, 0], **link)
    fingertip = body1.add_body(name="fingertip", pos=[FINGERTIP_OFFSET, 0, 0])
    fingertip.add_geom(name="fingertip", type=sphere, size=[FINGERTIP_RADIUS, 0, 0], contype=0)

    target = world.add_body(name="target", pos=[*TARGET_START, ARM_HEIGHT])
    for name, axis, ref in (
        ("target_x", [1, 0, 0], TARGET_START[0]),
        ("target_y", [0, 1, 0], TARGET_START[1]),
    ):
        target.add_joint(
            name=name, type=slide, axis=axis, limited=limited, range=TARGET_RANGE, ref=ref
        )
    target.add_geom(name="target", type=sphere, size=[TARGET_RADIUS, 0, 0], **no_contact)

    for joint in ARM_JOINTS:
        spec.add_actuator(
            target=joint,
            trntype=mujoco.mjtTrn.mjTRN_JOINT,
            gear=[GEAR, 0.0, 0.0, 0.0, 0.0, 0.0],
            ctrllimited=limited,
            ctrlrange=CTRL_RANGE,
        )
    return spec


# ---------------------------------------------------------------------------------------------
# Task


class ReacherTask(Task):
    """Gymnasium ``Reacher-v5``'s interface, reward and initial state.

    Observation: ``cos(q0), cos(q1), sin(q0), sin(q1), target x, target y, q0_dot, q1_dot``
    and the ``x, y`` of ``fingertip - target``. Action: joint torques in ``[-1, 1]^2``.
    Reward: ``-|fingertip - target| - |u|^2`` with ``u`` the applied control (the action
    after latency and deadzone; Gymnasium, which has neither, uses the action itself).

    ``fingertip - target`` is computed in closed form from the state after the step (planar
    two-link kinematics), so observation and reward are functions of the state alone and run
    batched. Gymnasium reads ``xpos`` as ``mj_step`` leaves it, i.e. from the last RK4 stage,
    which lags the final state by a fraction of a step (a few mm at full speed); everything
    else matches ``Reacher-v5`` to 1e-6.
    """

    observation_space = spaces.Box(-np.inf, np.inf, shape=(10,), dtype=np.float64)
    action_space = spaces.Box(*CTRL_RANGE, shape=(2,), dtype=np.float32)
    control_dt = CONTROL_DT
    max_episode_steps = MAX_EPISODE_STEPS
    max_return = 0.0  # distance and control cost are >= 0: a return can at best reach 0
    max_abs_velocity = 1000.0  # rad/s; full torque for a whole episode stays below ~250

    def initial_state(
        self, model: mujoco.MjModel, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw the arm pose and velocity and the goal exactly as ``ReacherEnv.reset_model``."""
        qpos = model.qpos0 + rng.uniform(-ARM_RESET_NOISE, ARM_RESET_NOISE, size=model.nq)
        while True:
            goal = rng.uniform(-GOAL_RADIUS, GOAL_RADIUS, size=2)
            if _goal_inside(goal):
                break
        qpos[-2:] = goal
        qvel = rng.uniform(-VEL_RESET_NOISE, VEL_RESET_NOISE, size=model.nv)
        qvel[-2:] = 0.0
        return qpos, qvel

    def initial_state_randoms(self, model: mujoco.MjModel) -> int:
        """The window of a batched reset: the arm's ``nq`` doubles, :data:`GOAL_ATTEMPTS`
        goal draws of 2, the ``nv`` velocities' (a reset reads fewer, see
        :meth:`initial_state_reads`)."""
        return model.nq + 2 * GOAL_ATTEMPTS + model.nv

    def initial_state_reads(
        self, models: Sequence[mujoco.MjModel], randoms: np.ndarray
    ) -> np.ndarray:
        """Doubles each row's :meth:`initial_state` reads: up to its first goal inside the
        circle, then the velocities'; ``-1`` if no goal of the window is inside."""
        nq, nv = models[0].nq, models[0].nv
        attempt = _first_goal(randoms, nq)
        return np.where(attempt >= 0, nq + 2 * (attempt + 1) + nv, -1)

    def initial_state_from_randoms(
        self, models: Sequence[mujoco.MjModel], randoms: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`initial_state` of each row from its window of doubles (a row whose window
        holds no goal inside the circle gets a meaningless state: see
        :meth:`initial_state_reads`)."""
        n, nq, nv = len(randoms), models[0].nq, models[0].nv
        first = one_model(models)
        qpos0 = [m.qpos0 for m in models] if first is None else first.qpos0
        a, r, v = ARM_RESET_NOISE, GOAL_RADIUS, VEL_RESET_NOISE
        qpos = qpos0 + (-a + (a - -a) * randoms[:, :nq])  # as `uniform` maps its doubles
        attempt = np.maximum(_first_goal(randoms, nq), 0)
        rows = np.arange(n)
        goal = randoms[:, nq : nq + 2 * GOAL_ATTEMPTS].reshape(n, GOAL_ATTEMPTS, 2)
        qpos[:, -2:] = -r + (r - -r) * goal[rows, attempt]
        start = nq + 2 * (attempt + 1)
        qvel = -v + (v - -v) * randoms[rows[:, None], start[:, None] + np.arange(nv)]
        qvel[:, -2:] = 0.0
        return qpos, qvel

    def observation(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        """Return the 10-dim v5 observation of the current state."""
        return _outputs(self.batch_constants(model)[None], data.qpos[None], data.qvel[None], None)[
            0
        ][0]

    def terminated(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        """Never: Reacher episodes only end by truncation (or the stability guard)."""
        return False

    def reward(self, model: mujoco.MjModel, data: mujoco.MjData, terminated: bool) -> float:
        """Return ``-|fingertip - target| - |ctrl|^2`` (v5's weights, 1 and 1)."""
        constants = self.batch_constants(model)[None]
        _, reward = _outputs(constants, data.qpos[None], data.qvel[None], data.ctrl[None])
        return float(reward[0])

    def batch_constants(self, model: mujoco.MjModel) -> np.ndarray:
        """The arm's planar kinematic chain and the target's origin (see ``_arm_outputs``).

        Raises:
            ValueError: If the arm is not the planar chain Reacher-v5 assumes (hinges about
                z, bodies not rotated), for which the closed-form kinematics would be wrong.
        """
        # mj_name2id, not model.body(name): this runs at every reset of a batched env.
        body, joint = mujoco.mjtObj.mjOBJ_BODY, mujoco.mjtObj.mjOBJ_JOINT
        bodies = [
            mujoco.mj_name2id(model, body, n) for n in ("body0", "body1", "fingertip", "target")
        ]
        joints = [mujoco.mj_name2id(model, joint, n) for n in (*ARM_JOINTS, *TARGET_JOINTS)]
        if min(bodies) < 0 or min(joints) < 0:
            raise ValueError("reacher: the model lacks a body or joint Reacher-v5 names")
        if not (model.jnt_axis[joints[:2]] == (0.0, 0.0, 1.0)).all():
            raise ValueError("reacher: the arm's joints must turn about z")
        if not (model.body_quat[bodies] == (1.0, 0.0, 0.0, 0.0)).all():
            raise ValueError("reacher: the arm's and target's bodies must not be rotated")
        offsets = model.body_pos[bodies, :2].copy()
        offsets[3] -= model.qpos0[model.jnt_qposadr[joints[2:]]]  # target origin: minus refs
        return offsets.reshape(-1)

    def observation_batch(self, state: BatchState) -> np.ndarray | None:
        """Vectorized :meth:`observation` (needs ``state.constants``): shape ``(n, 10)``."""
        if state.constants is None:
            return None
        return _state_outputs(state, with_reward=False)[0]

    def terminated_batch(self, state: BatchState) -> np.ndarray:
        """Vectorized :meth:`terminated`: never."""
        return np.zeros(len(state), dtype=bool)

    def reward_batch(self, state: BatchState, terminated: np.ndarray) -> np.ndarray | None:
        """Vectorized :meth:`reward` (needs ``state.constants`` and ``state.ctrl``)."""
        if state.constants is None or state.ctrl is None:
            return None
        return _state_outputs(state, with_reward=True)[1]


def _goal_inside(goal: np.ndarray) -> np.ndarray:
    """Whether goals ``(..., 2)`` lie inside the reach circle (v5's rejection test; one code
    for the per-env and batched resets, so both accept the same draws)."""
    return np.hypot(goal[..., 0], goal[..., 1]) < GOAL_RADIUS


def _first_goal(randoms: np.ndarray, nq: int) -> np.ndarray:
    """Index of the first accepted goal draw in each row's window, ``-1`` if none is."""
    n, r = len(randoms), GOAL_RADIUS
    goal = -r + (r - -r) * randoms[:, nq : nq + 2 * GOAL_ATTEMPTS].reshape(n, GOAL_ATTEMPTS, 2)
    inside = _goal_inside(goal)
    return np.where(inside.any(axis=1), inside.argmax(axis=1), -1)


@kernels.compiled(f"void({', '.join([kernels.F2] * 5)}, {kernels.F1})")
def _arm_outputs(
    constants: np.ndarray,
    qpos: np.ndarray,
    qvel: np.ndarray,
    ctrl: np.ndarray,
    obs: np.ndarray,
    reward: np.ndarray,
) -> None:
    """Write each row's v5 observation into ``obs`` ``(n, 10)`` and, if ``ctrl`` has ``n``
    rows, its reward ``-|fingertip - target| - |ctrl|^2`` into ``reward`` ``(n,)``.

    Closed-form planar kinematics from :meth:`ReacherTask.batch_constants` (rows of
    ``constants`` ``(n, 8)`` or one shared row, as ``x, y`` pairs): body0's origin, body1's
    offset in body0, the fingertip's offset in body1 and the target's origin (its body
    position minus its slide joints' refs). Compiled, and the one code of the per-env and
    batched paths, so both agree bit for bit.
    """
    shared = constants.shape[0] == 1
    with_reward = ctrl.shape[0] == qpos.shape[0]
    for i in range(qpos.shape[0]):
        k = 0 if shared else i
        c0, s0 = math.cos(qpos[i, 0]), math.sin(qpos[i, 0])
        c1, s1 = math.cos(qpos[i, 1]), math.sin(qpos[i, 1])
        # The fingertip in body0's frame, then in the world: link0 + R(q1) link1, R(q0) that.
        x = constants[k, 2] + (c1 * constants[k, 4] - s1 * constants[k, 5])
        y = constants[k, 3] + (s1 * constants[k, 4] + c1 * constants[k, 5])
        dx = constants[k, 0] + (c0 * x - s0 * y) - constants[k, 6] - qpos[i, 2]
        dy = constants[k, 1] + (s0 * x + c0 * y) - constants[k, 7] - qpos[i, 3]
        obs[i, 0], obs[i, 1], obs[i, 2], obs[i, 3] = c0, c1, s0, s1
        obs[i, 4], obs[i, 5] = qpos[i, 2], qpos[i, 3]
        obs[i, 6], obs[i, 7] = qvel[i, 0], qvel[i, 1]
        obs[i, 8], obs[i, 9] = dx, dy
        if with_reward:
            control = ctrl[i, 0] * ctrl[i, 0] + ctrl[i, 1] * ctrl[i, 1]
            reward[i] = -REWARD_DIST_WEIGHT * math.hypot(dx, dy) - REWARD_CONTROL_WEIGHT * control


_NO_CTRL = np.zeros((0, 2))


def _outputs(
    constants: np.ndarray, qpos: np.ndarray, qvel: np.ndarray, ctrl: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Observations ``(n, 10)`` and, with ``ctrl``, rewards ``(n,)`` (:func:`_arm_outputs`)."""
    obs = np.empty((len(qpos), 10))
    reward = np.empty(len(qpos) if ctrl is not None else 0)
    _arm_outputs(constants, qpos, qvel, _NO_CTRL if ctrl is None else ctrl, obs, reward)
    return obs, reward if ctrl is not None else None


def _state_outputs(state: BatchState, with_reward: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`_outputs` of ``state``, once per state: a step's reward and observation both
    read them."""
    found = state.derived.get("reacher")
    if found is None or (with_reward and found[1] is None):
        found = _outputs(
            state.constants, state.qpos, state.qvel, state.ctrl if with_reward else None
        )
        state.derived["reacher"] = found
    return found


TASK = ReacherTask()


@register_family("reacher")
class ReacherFamily(SpecFamily):
    """Two-link reaching with scaled link masses and lengths, armature, damping, gain and
    gravity, dry joint friction, latency, observation noise and an actuator deadzone.

    Fidelities: ``fine`` is Gymnasium's reference integration (RK4, 0.01 s, 2 substeps);
    ``coarse`` is one Euler step of 0.02 s with a reduced solver budget.
    """

    name = "reacher"
    space = SPACE
    fidelities = ("coarse", "fine")
    task = TASK
    max_return = TASK.max_return
    max_episode_steps = MAX_EPISODE_STEPS
    absolute_params = ABSOLUTE_PARAMS

    numeric_params = (
        "link_mass",
        "armature",
        "joint_damping",
        "joint_friction",
        "actuator_gain",
        "gravity",
    )
    modifiers = MODIFIERS
    fidelity_settings = FIDELITY_SETTINGS
    build_spec = staticmethod(build_spec)


REALITY = register_reality(
    RealityProxy(
        name="gymnasium/Reacher-v5",
        family="reacher",
        model_file=functools.partial(gymnasium_asset, "reacher.xml"),
        task=TASK,
        modifiers=MODIFIERS,
        pinned_mass_geoms=MASS_GEOMS,
    )
)
"""Gymnasium's own ``reacher.xml`` (from the installed package) as the held-out system."""
