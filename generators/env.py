"""Gymnasium environments over generated MuJoCo models.

:class:`MujocoTaskEnv` owns everything between the agent and the physics that a family and its
reality proxy share: the :class:`~generators.task.Task` (observation, reward, termination,
initial state), actuator latency and deadzone, observation noise, step counting and the
stability guard. Subclasses only say where each episode's model comes from:
:class:`TaskEnv` builds it from a family at a theta drawn from the task distribution, the
reality proxy env loads an independently authored XML.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.error import ResetNeeded

from generators.distribution import TaskDistribution
from generators.episodes import EpisodeLog
from generators.families import Family, get_family
from generators.models import ModelSource
from generators.space import ParamSpace
from generators.task import ChannelEffects, Task

_MODEL_CACHE_SIZE = 32
_THETA_DIGITS = 6  # significant digits kept in theta: identical models for near-equal draws
_SIGNIFICANT = f".{_THETA_DIGITS}g"


@dataclass
class EpisodeSetup:
    """What a subclass provides for one episode.

    Attributes:
        model: The compiled model to simulate.
        effects: Latency, observation noise and deadzone for the episode.
        info: Extra entries for every ``info`` dict of the episode (e.g. ``theta``).
    """

    model: mujoco.MjModel
    effects: ChannelEffects
    info: dict[str, Any] = field(default_factory=dict)


class MujocoTaskEnv(gym.Env[np.ndarray, np.ndarray]):
    """A Gymnasium env that simulates a :class:`Task` on a per-episode MuJoCo model.

    Every ``step`` applies the delayed (and dead-zoned) action, advances the physics by the
    task's control step, computes reward and termination from the true state and returns a
    noisy observation. An unstable simulation (non-finite state, exploding velocity, a MuJoCo
    warning or automatic reset during the step) never raises: it ends the episode with
    ``terminated=True``, reward 0 and ``info["unstable"] = True``, is counted in
    :attr:`unstable_episodes`, and the simulation is put back to the model's reference state.

    Args:
        task: The task definition shared with the family's other envs.

    Attributes:
        model: The current episode's model (``None`` before the first reset).
        data: The current episode's simulation data (``None`` before the first reset).
        unstable_episodes: Number of episodes ended by the stability guard.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, task: Task) -> None:
        self.task = task
        self.observation_space = task.observation_space
        self.action_space = task.action_space
        self.model: mujoco.MjModel | None = None
        self.data: mujoco.MjData | None = None
        self.unstable_episodes = 0
        self._effects = ChannelEffects()
        self._episode_info: dict[str, Any] = {}
        self._pending: deque[np.ndarray] = deque()
        self._n_substeps = 1
        self._steps = 0
        self._episode_unstable = False
        self._ctrl_low = task.action_space.low.astype(np.float64)
        self._ctrl_high = task.action_space.high.astype(np.float64)

    @abstractmethod
    def _setup_episode(self, options: Mapping[str, Any] | None) -> EpisodeSetup:
        """Return the model and channel effects of the next episode (uses ``np_random``)."""

    @property
    def dt(self) -> float:
        """Seconds of simulated time per environment step."""
        return self.task.control_dt

    @property
    def elapsed_steps(self) -> int:
        """Environment steps taken in the current episode."""
        return self._steps

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: draw its model and effects, then the initial state."""
        super().reset(seed=seed)
        setup = self._setup_episode(options)
        if setup.model is not self.model or self.data is None:
            self.model = setup.model
            self.data = mujoco.MjData(setup.model)
            self._n_substeps = self.task.n_substeps(setup.model)
        self._effects = setup.effects
        self._episode_info = setup.info
        zero = np.zeros(self.action_space.shape, dtype=np.float64)
        self._pending = deque([zero] * self._effects.latency_steps)
        self._steps = 0
        self._episode_unstable = False
        mujoco.mj_resetData(self.model, self.data)
        self.task.initialize_episode(self.model, self.data, self.np_random)
        return self._observe(), self._info(unstable=False)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one control step; see the class docstring for the stability guard."""
        if self.data is None or self.model is None:
            raise ResetNeeded("call reset() before step()")
        model, data = self.model, self.data
        action = self._sanitize(action)
        before = self.task.before_step(model, data)
        data.ctrl[:] = self._actuate(action)
        time_before = data.time
        warnings_before = data.warning.number.copy()
        try:
            mujoco.mj_step(model, data, nstep=self._n_substeps)
            unstable = (
                data.time < time_before  # MuJoCo reset the state itself (e.g. bad qacc)
                or not np.array_equal(data.warning.number, warnings_before)
                or self.task.diverged(model, data)
            )
        except mujoco.FatalError:
            unstable = True
        self._steps += 1
        if unstable:
            if not self._episode_unstable:
                self.unstable_episodes += 1
            self._episode_unstable = True
            mujoco.mj_resetData(model, data)
            mujoco.mj_forward(model, data)
            terminated, reward = True, 0.0
        else:
            terminated = self.task.terminated(model, data)
            reward = float(self.task.step_reward(model, data, terminated, action, before))
        truncated = self._steps >= self.task.max_episode_steps
        return self._observe(), reward, terminated, truncated, self._info(unstable=unstable)

    def _sanitize(self, action: np.ndarray) -> np.ndarray:
        """Return the action as float64 of the action shape, NaN -> 0, clipped to the range."""
        a = np.array(action, dtype=np.float64)
        if a.size != self._ctrl_low.size:
            raise ValueError(f"action has {a.size} entries, expected {self._ctrl_low.size}")
        a = a.reshape(self._ctrl_low.shape)
        if not math.isfinite(a.sum()):
            a[np.isnan(a)] = 0.0
        np.minimum(a, self._ctrl_high, out=a)
        return np.maximum(a, self._ctrl_low, out=a)

    def _actuate(self, action: np.ndarray) -> np.ndarray:
        """Return the control applied now: delayed by the latency FIFO, then dead-zoned."""
        if self._effects.latency_steps:
            self._pending.append(action)
            action = self._pending.popleft()
        if self._effects.deadzone:
            threshold = self._effects.deadzone * np.maximum(-self._ctrl_low, self._ctrl_high)
            action = np.where(np.abs(action) < threshold, 0.0, action)
        return action

    def _observe(self) -> np.ndarray:
        obs = self.task.observation(self.model, self.data)
        if self._effects.obs_noise_std:
            obs = obs + self.np_random.normal(0.0, self._effects.obs_noise_std, obs.shape)
        return obs

    def _info(self, *, unstable: bool) -> dict[str, Any]:
        info = {
            key: (dict(v) if isinstance(v, dict) else v) for key, v in self._episode_info.items()
        }
        info["unstable"] = unstable
        return info


class TaskEnv(MujocoTaskEnv):
    """One generator family's env: each episode's theta is drawn from a task distribution.

    At every reset the env draws theta from the current :class:`TaskDistribution` with its
    own ``np_random``, builds (or reuses from a small LRU cache) the family's model at that
    theta and the distribution's fidelity, and applies the theta's latency and observation
    noise. ``info`` always holds ``theta``, ``fidelity`` and ``unstable``.

    RLlib constructs env classes as ``cls(env_config)``; passing a mapping as ``family``
    is therefore equivalent to :meth:`from_config`.

    Args:
        family: A family, its registered name, or an env-config mapping (see
            :meth:`from_config`).
        theta: A fixed theta (missing names -> nominal) when no distribution is given.
        fidelity: Fidelity for the default point distribution; defaults to ``"fine"``. If a
            distribution is given it carries the fidelity, and a different value here raises.
        space: Parameter space of the distribution (default: the family's).
        distribution: Initial task distribution (default: a point at ``theta``).
    """

    def __init__(
        self,
        family: Family | str | Mapping[str, Any],
        theta: Mapping[str, float] | None = None,
        fidelity: str | None = None,
        *,
        space: ParamSpace | None = None,
        distribution: TaskDistribution | Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(family, Mapping):
            config = _EnvConfig.parse(family)
            family, theta, fidelity = config.family, config.theta, config.fidelity
            space, distribution = config.space, config.distribution
        self.family = get_family(family) if isinstance(family, str) else family
        super().__init__(self.family.task)
        self.episode_log = EpisodeLog()
        """Finished episodes (theta, fidelity, return, length, unstable), drained by learners."""
        self._return = 0.0
        self.space = self.family.space if space is None else space
        self.family.check_space(self.space)
        distribution = resolve_distribution(self.space, theta, fidelity, distribution)
        self._source = ModelSource(self.family, slots=1, cache_size=_MODEL_CACHE_SIZE)
        self.distribution: TaskDistribution = distribution
        self.set_task_distribution(distribution)  # validates it against space and family
        self.theta: dict[str, float] = {}  # the current episode's theta

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TaskEnv:
        """Build from plain data, e.g. an RLlib ``env_config``.

        Keys: ``family`` (name, required), ``theta``, ``fidelity``, ``space``
        (:meth:`ParamSpace.to_dict` data), ``distribution``
        (:meth:`TaskDistribution.to_dict` data). Other keys (RLlib's worker indices) are
        ignored.
        """
        return cls(config)

    @property
    def fidelity(self) -> str:
        """Fidelity of the current task distribution (applies from the next reset)."""
        return self.distribution.fidelity

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode at a theta drawn from the task distribution."""
        self._return = 0.0
        return super().reset(seed=seed, options=options)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one control step; a finished episode is added to :attr:`episode_log`."""
        obs, reward, terminated, truncated, info = super().step(action)
        self._return += reward
        if terminated or truncated:
            self.episode_log.add(
                [float(x) for x in self.space.to_unit(info["theta"])],
                info["fidelity"],
                self._return,
                self.elapsed_steps,
                info["unstable"],
            )
        return obs, reward, terminated, truncated, info

    def set_task_distribution(self, distribution: TaskDistribution | Mapping[str, Any]) -> None:
        """Replace the task distribution; it takes effect at the next reset.

        Raises:
            ValueError: If the distribution's dimension does not match the space or the
                family cannot simulate its fidelity.
        """
        distribution = _as_distribution(distribution)
        distribution.check_space(self.space)
        self.family.check_fidelity(distribution.fidelity)
        self.distribution = distribution

    def _setup_episode(self, options: Mapping[str, Any] | None) -> EpisodeSetup:
        if options and options.get("theta") is not None:
            theta = self.space.complete(options["theta"])
        else:
            theta = self.distribution.sample(self.space, self.np_random)
        theta = self.family.space.complete(
            {name: _round_significant(value) for name, value in theta.items()}
        )
        fidelity = self.distribution.fidelity
        self.theta = theta
        if (options and options.get("theta") is not None) or is_point(self.distribution):
            model, _ = self._source.shared(0, theta, fidelity)
        else:  # a theta per episode: the env's own model, rewritten in place
            model, _ = self._source.private(0, theta, fidelity)
        return EpisodeSetup(
            model=model,
            effects=ChannelEffects.from_theta(theta),
            info={"theta": theta, "fidelity": fidelity},
        )


@dataclass
class _EnvConfig:
    """Parsed :meth:`TaskEnv.from_config` data."""

    family: str
    theta: Mapping[str, float] | None
    fidelity: str | None
    space: ParamSpace | None
    distribution: TaskDistribution | None

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> _EnvConfig:
        if "family" not in config:
            raise ValueError("env config needs a 'family' key")
        space = config.get("space")
        distribution = config.get("distribution")
        return cls(
            family=str(config["family"]),
            theta=config.get("theta"),
            fidelity=config.get("fidelity"),
            space=ParamSpace.from_dict(space) if isinstance(space, Mapping) else space,
            distribution=None if distribution is None else _as_distribution(distribution),
        )


def resolve_distribution(
    space: ParamSpace,
    theta: Mapping[str, float] | None,
    fidelity: str | None,
    distribution: TaskDistribution | Mapping[str, Any] | None,
) -> TaskDistribution:
    """The task distribution an env's arguments describe: a given one, or a point at theta.

    Raises:
        ValueError: If both theta and a distribution are given, or the fidelity disagrees
            with the distribution's.
    """
    if distribution is None:
        return TaskDistribution.point(space, theta, fidelity or "fine")
    if theta is not None:
        raise ValueError("pass either theta or distribution, not both")
    distribution = _as_distribution(distribution)
    if fidelity is not None and fidelity != distribution.fidelity:
        raise ValueError(
            f"fidelity {fidelity!r} disagrees with the distribution's {distribution.fidelity!r}"
        )
    return distribution


def _as_distribution(distribution: TaskDistribution | Mapping[str, Any]) -> TaskDistribution:
    if isinstance(distribution, TaskDistribution):
        return distribution
    if isinstance(distribution, Mapping):
        return TaskDistribution.from_dict(distribution)
    raise TypeError(f"expected a TaskDistribution or its dict, got {type(distribution).__name__}")


def is_point(distribution: TaskDistribution) -> bool:
    """Whether every draw of ``distribution`` is the same theta (and consumes no randomness)."""
    if len(distribution.components) != 1:
        return False
    _, low, high = distribution.components[0]
    return low == high


def _round_significant(value: float) -> float:
    return float(format(value, _SIGNIFICANT))


def round_significant(values: np.ndarray) -> np.ndarray:
    """``values`` (any shape) kept to the significant digits of an episode's theta, entry by
    entry as :class:`TaskEnv` rounds its draws (a batched env rounds many draws at once)."""
    values = np.asarray(values, dtype=float)
    flat = [float(format(v, _SIGNIFICANT)) for v in values.ravel().tolist()]
    return np.array(flat, dtype=float).reshape(values.shape)
