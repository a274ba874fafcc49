"""The task half of an environment: what the agent sees, is rewarded for, and when it stops.

As in dm_control's Physics/Task split, a :class:`Task` never builds a model; it reads and
initializes the state of whichever ``mujoco.MjModel`` it is handed. The same task object
therefore serves a generator family's procedural models and the reality proxy's
independently authored model, which only have to share the state layout.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces

from generators import kernels

# Names of the theta entries that act on the action/observation channels, not the model.
LATENCY = "latency_steps"
OBS_NOISE = "obs_noise_std"
DEADZONE = "deadzone"
CHANNEL_PARAMS = (LATENCY, OBS_NOISE, DEADZONE)


@dataclass(frozen=True)
class ChannelEffects:
    """Effects between the agent and the physics that no MjModel field expresses.

    Attributes:
        latency_steps: The action applied at control step ``t`` is the one given at
            ``t - latency_steps`` (zeros before the first); whole control steps.
        obs_noise_std: Standard deviation of Gaussian noise added to every observation entry,
            in observation units.
        deadzone: Actuator deadzone as a fraction of the control range: applied controls with
            ``|u| < deadzone * max|ctrlrange|`` become 0. A family randomizes it when its space
            has a ``deadzone`` parameter; a reality proxy takes it as an argument or parameter.

    Raises:
        ValueError: If a field is negative, non-finite or (latency) not a whole number.
    """

    latency_steps: int = 0
    obs_noise_std: float = 0.0
    deadzone: float = 0.0

    def __post_init__(self) -> None:
        latency = float(self.latency_steps)
        if not math.isfinite(latency) or latency < 0 or not latency.is_integer():
            raise ValueError(f"{LATENCY}: must be a whole number >= 0 (got {self.latency_steps})")
        object.__setattr__(self, "latency_steps", int(latency))
        if not math.isfinite(self.obs_noise_std) or self.obs_noise_std < 0:
            raise ValueError(f"{OBS_NOISE}: must be finite and >= 0 (got {self.obs_noise_std})")
        if not math.isfinite(self.deadzone) or not 0.0 <= self.deadzone < 1.0:
            raise ValueError(f"deadzone: must be in [0, 1) (got {self.deadzone})")

    @classmethod
    def from_theta(cls, theta: Mapping[str, float], deadzone: float = 0.0) -> ChannelEffects:
        """Read the channel parameters from a theta dict (absent entries -> no effect).

        A ``deadzone`` entry of ``theta`` takes the place of the ``deadzone`` argument; giving
        both with different non-zero values is ambiguous and raises ``ValueError``.
        """
        latency = theta.get(LATENCY, 0.0)
        # Integer parameters arrive as floats (2.0); rounding absorbs unit-cube round trips.
        latency = round(latency) if abs(latency - round(latency)) < 1e-6 else latency
        if DEADZONE in theta:
            value = float(theta[DEADZONE])
            if deadzone and value and value != deadzone:
                raise ValueError(
                    f"{DEADZONE}: given as a parameter ({value}) and an argument ({deadzone})"
                )
            deadzone = value or deadzone
        return cls(latency, float(theta.get(OBS_NOISE, 0.0)), deadzone)


@dataclass(frozen=True)
class BatchState:
    """The states of ``n`` simulations of one task, one row each (a batched env's stacked state).

    The arrays are views into the stepping env's buffers: read them, never keep or modify them.

    Attributes:
        models: The ``n`` models, one per row (same state layout, physics may differ).
        time: Simulated time, shape ``(n,)``.
        qpos: Joint positions, shape ``(n, nq)``.
        qvel: Joint velocities, shape ``(n, nv)``.
        act: Actuator activations, shape ``(n, na)``.
        ctrl: Controls applied during the step that led here (after latency and deadzone),
            shape ``(n, nu)``; ``None`` outside a step.
        action: The agents' actions for that step, clipped to the action space (before
            latency and deadzone), shape ``(n, nu)``; ``None`` outside a step.
        qpos_before: Joint positions before that step, shape ``(n, nq)``; ``None`` outside
            a step.
        constants: Each row's :meth:`Task.batch_constants`, stacked, shape ``(n, k)``;
            ``None`` if the task has none.
        derived: Quantities that several batched methods compute from this state (a
            task's kinematics, say), kept by the task under its own keys so that a step
            computes them once: the env passes one ``BatchState`` to the step's methods and,
            when no row was reset in between, to the observation.
    """

    models: Sequence[mujoco.MjModel]
    time: np.ndarray
    qpos: np.ndarray
    qvel: np.ndarray
    act: np.ndarray
    ctrl: np.ndarray | None = None
    action: np.ndarray | None = None
    qpos_before: np.ndarray | None = None
    constants: np.ndarray | None = None
    derived: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.time)


class Task(ABC):
    """Observation, reward, termination and initial state of one family of environments.

    Subclasses set the class attributes and implement the abstract methods. Methods receive
    the model and data explicitly and draw randomness only from the generator passed in.

    Attributes:
        observation_space: Space of :meth:`observation`'s output.
        action_space: Space of the agent's action; its bounds are the control range.
        control_dt: Seconds of simulated time per environment step; the number of physics
            substeps is ``round(control_dt / model.opt.timestep)``.
        max_episode_steps: Environment steps after which an episode is truncated.
        max_return: Best achievable episode return (the regret reference).
        max_abs_velocity: A joint speed above this counts as a diverged simulation.
    """

    observation_space: spaces.Box
    action_space: spaces.Box
    control_dt: float
    max_episode_steps: int
    max_return: float
    max_abs_velocity: float = 1e4

    @abstractmethod
    def initial_state(
        self, model: mujoco.MjModel, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw a new episode's ``qpos`` ``(nq,)`` and ``qvel`` ``(nv,)`` from ``rng``.

        The rest of the state is what ``mj_resetData`` leaves. Envs that keep states as
        arrays (the batched env) write these rows directly, without an ``MjData``.
        """

    def initial_state_batch(
        self, models: Sequence[mujoco.MjModel], rngs: Sequence[np.random.Generator]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Vectorized :meth:`initial_state`: row ``i`` from ``models[i]`` and ``rngs[i]``,
        bit for bit and with the same draws; ``qpos`` ``(n, nq)``, ``qvel`` ``(n, nv)``, or
        ``None`` (the env then calls :meth:`initial_state` per row)."""
        del models, rngs
        return None

    def initial_state_randoms(self, model: mujoco.MjModel) -> int | None:
        """How many doubles of ``rng.random()`` :meth:`initial_state` reads, or ``None``.

        A count lets the batched env draw a sub-env's resets ahead, in chunks, from its own
        generator (:meth:`initial_state_from_randoms` maps them). It is exact unless the
        task overrides :meth:`initial_state_reads`, for which it is the window each reset
        is given. ``None`` (the default: the draws are not uniform doubles) keeps one
        draw per reset.
        """
        del model
        return None

    def initial_state_from_randoms(
        self, models: Sequence[mujoco.MjModel], randoms: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`initial_state` of each row from the doubles it would draw, ``randoms``
        ``(n, initial_state_randoms)``; only for tasks whose count is not ``None``."""
        raise TypeError(f"{type(self).__name__} draws its initial states from a generator")

    def initial_state_reads(
        self, models: Sequence[mujoco.MjModel], randoms: np.ndarray
    ) -> np.ndarray:
        """How many of each row's doubles :meth:`initial_state` would read, ``(n,)``; ``-1``
        where the window ``randoms`` is too short (the env then calls it per row).

        For a reset that reads a varying number of doubles (rejection sampling); the default
        is a fixed count: all of them.
        """
        del models
        return np.full(len(randoms), randoms.shape[1])

    def initialize_episode(
        self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator
    ) -> None:
        """Set :meth:`initial_state` on a freshly reset ``data`` and ``mj_forward`` it."""
        qpos, qvel = self.initial_state(model, rng)
        data.qpos[:] = qpos
        data.qvel[:] = qvel
        mujoco.mj_forward(model, data)

    @abstractmethod
    def observation(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        """Return the noise-free observation of the current state."""

    @abstractmethod
    def terminated(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        """Whether the current (true) state ends the episode."""

    @abstractmethod
    def reward(self, model: mujoco.MjModel, data: mujoco.MjData, terminated: bool) -> float:
        """Reward for the step that led to the current (true) state."""

    def before_step(self, model: mujoco.MjModel, data: mujoco.MjData) -> Any:
        """Return what :meth:`step_reward` needs from the state before a control step.

        The env calls this just before it advances the physics. Tasks whose reward depends
        on the change over the step (e.g. forward progress) override it; default ``None``.
        """
        del model, data
        return None

    def step_reward(
        self,
        model: mujoco.MjModel,
        data: mujoco.MjData,
        terminated: bool,
        action: np.ndarray,
        before: Any,
    ) -> float:
        """Reward for the control step that led to the current (true) state.

        The env calls this rather than :meth:`reward`; the default ignores ``action`` and
        ``before`` and returns :meth:`reward`.

        Args:
            model: The episode's model.
            data: The state after the step.
            terminated: Whether that state ends the episode.
            action: The agent's action for the step, clipped to the action space (before
                latency and deadzone act on it).
            before: What :meth:`before_step` returned for the step.
        """
        del action, before
        return self.reward(model, data, terminated)

    def n_substeps(self, model: mujoco.MjModel) -> int:
        """Physics steps per control step for ``model``'s timestep."""
        n = round(self.control_dt / model.opt.timestep)
        if n < 1 or not math.isclose(n * model.opt.timestep, self.control_dt, rel_tol=1e-6):
            raise ValueError(
                f"timestep {model.opt.timestep} does not divide the control step {self.control_dt}"
            )
        return n

    def diverged(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        """Whether the state is non-finite or moving implausibly fast (exploding energy)."""
        del model
        # A sum is non-finite iff an entry is (or the magnitudes are absurd anyway).
        if not math.isfinite(data.qpos.sum() + data.qacc.sum()):
            return True
        # NaN fails the comparison, so this also catches a non-finite velocity.
        return data.qvel.size > 0 and not float(np.abs(data.qvel).max()) <= self.max_abs_velocity

    # -----------------------------------------------------------------------------------------
    # Optional batched versions, used by generators.vector.BatchedVectorEnv. Each returns
    # ``None`` when the task does not provide it; the env then calls the per-``MjData`` method
    # once per sub-env on data synchronized to the row's state (after ``mj_forward``). Override
    # one only if the scalar method depends on the state arrays (time, qpos, qvel, act) and
    # the model alone, never on derived quantities such as ``xpos`` or ``sensordata``.

    def state_from_observation(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The ``qpos`` ``(n, nq)`` and ``qvel`` ``(n, nv)`` that observations ``obs``
        ``(n, o)`` show, or ``None`` when an observation does not determine the state.

        What system identification (`evaluators.identify`) needs to replay real data in a
        model: tasks whose observation is the whole state implement it.
        """
        del obs
        return None

    def observation_batch(self, state: BatchState) -> np.ndarray | None:
        """Vectorized :meth:`observation`: shape ``(n, *observation_space.shape)``, or ``None``."""
        del state
        return None

    def terminated_batch(self, state: BatchState) -> np.ndarray | None:
        """Vectorized :meth:`terminated`: bool array of shape ``(n,)``, or ``None``."""
        del state
        return None

    def reward_batch(self, state: BatchState, terminated: np.ndarray) -> np.ndarray | None:
        """Vectorized :meth:`reward` given ``terminated`` ``(n,)``: shape ``(n,)``, or ``None``."""
        del state, terminated
        return None

    def step_reward_batch(self, state: BatchState, terminated: np.ndarray) -> np.ndarray | None:
        """Vectorized :meth:`step_reward` (``state.action``, ``state.qpos_before`` stand for
        ``action`` and ``before``): shape ``(n,)``, or ``None``.

        The default serves tasks that keep the base :meth:`step_reward`: :meth:`reward_batch`.
        A task that overrides :meth:`step_reward` gets ``None`` unless it overrides this too.
        """
        if type(self).step_reward is not Task.step_reward:
            return None
        return self.reward_batch(state, terminated)

    def batch_constants(self, model: mujoco.MjModel) -> np.ndarray | None:
        """Per-model numbers the batched methods read (``BatchState.constants``), or ``None``.

        Computed once per episode from the episode's model, e.g. the ground plane's pose.
        """
        del model
        return None

    def diverged_batch(self, state: BatchState) -> np.ndarray | None:
        """Vectorized :meth:`diverged`: bool array of shape ``(n,)``, or ``None``.

        The default serves tasks that keep the base :meth:`diverged`: a non-finite ``qpos``
        or ``qvel`` or a joint speed above :attr:`max_abs_velocity` (a non-finite ``qacc``
        makes MuJoCo reset the state, which the batched env detects from the time). A task
        that overrides :meth:`diverged` gets ``None`` (per-env calls) unless it overrides
        this too.
        """
        if type(self).diverged is not Task.diverged:
            return None
        bad = np.empty(len(state), dtype=bool)
        kernels.unsound_rows(state.qpos, state.qvel, float(self.max_abs_velocity), bad)
        return bad


def one_model(models: Sequence[mujoco.MjModel]) -> mujoco.MjModel | None:
    """The model of every row if they are all one (a point distribution's), else ``None``."""
    first = models[0]
    if isinstance(models, list):  # the usual case: counted in C, identity first
        return first if models.count(first) == len(models) else None
    return first if all(m is first for m in models) else None


class UniformResetNoise:
    """Mixin for a :class:`Task`: Gymnasium's MuJoCo v5 reset, ``qpos0 + U(-a, a)`` and
    ``U(-a, a)`` velocities with ``a`` = :attr:`reset_noise`, with its batched version."""

    reset_noise: float

    def initial_state(
        self, model: mujoco.MjModel, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """The reference pose and zero velocity, each perturbed by ``U(-a, a)``."""
        a = self.reset_noise
        qpos = model.qpos0 + rng.uniform(-a, a, size=model.nq)
        return qpos, rng.uniform(-a, a, size=model.nv)

    def initial_state_batch(
        self, models: Sequence[mujoco.MjModel], rngs: Sequence[np.random.Generator]
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`initial_state` for models of one layout: one ``random`` call per generator
        gives the doubles ``uniform`` would use (:meth:`initial_state_from_randoms`)."""
        k = self.initial_state_randoms(models[0])
        return self.initial_state_from_randoms(models, np.array([rng.random(k) for rng in rngs]))

    def initial_state_randoms(self, model: mujoco.MjModel) -> int:
        """``nq + nv`` doubles: the pose's, then the velocities'."""
        return model.nq + model.nv

    def initial_state_from_randoms(
        self, models: Sequence[mujoco.MjModel], randoms: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The rows mapped as ``uniform`` maps its doubles (``low + range * u``)."""
        nq, a = models[0].nq, self.reset_noise
        noise = -a + (a - -a) * randoms
        first = one_model(models)
        qpos0 = np.array([m.qpos0 for m in models]) if first is None else first.qpos0
        return qpos0 + noise[:, :nq], noise[:, nq:]
