"""The task half of an environment: what the agent sees, is rewarded for, and when it stops.

As in dm_control's Physics/Task split, a :class:`Task` never builds a model; it reads and
initializes the state of whichever ``mujoco.MjModel`` it is handed. The same task object
therefore serves a generator family's procedural models and the reality proxy's
independently authored model, which only have to share the state layout.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import mujoco
import numpy as np
from gymnasium import spaces

# Names of the theta entries that act on the action/observation channels, not the model.
LATENCY = "latency_steps"
OBS_NOISE = "obs_noise_std"
CHANNEL_PARAMS = (LATENCY, OBS_NOISE)


@dataclass(frozen=True)
class ChannelEffects:
    """Effects between the agent and the physics that no MjModel field expresses.

    Attributes:
        latency_steps: The action applied at control step ``t`` is the one given at
            ``t - latency_steps`` (zeros before the first); whole control steps.
        obs_noise_std: Standard deviation of Gaussian noise added to every observation entry,
            in observation units.
        deadzone: Actuator deadzone as a fraction of the control range: applied controls with
            ``|u| < deadzone * max|ctrlrange|`` become 0. Used by reality proxies only.

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
        """Read the channel parameters from a theta dict (absent entries -> no effect)."""
        latency = theta.get(LATENCY, 0.0)
        # Integer parameters arrive as floats (2.0); rounding absorbs unit-cube round trips.
        latency = round(latency) if abs(latency - round(latency)) < 1e-6 else latency
        return cls(latency, float(theta.get(OBS_NOISE, 0.0)), deadzone)


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
    def initialize_episode(
        self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator
    ) -> None:
        """Set the initial state of a freshly reset ``data`` (then ``mj_forward`` it)."""

    @abstractmethod
    def observation(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        """Return the noise-free observation of the current state."""

    @abstractmethod
    def terminated(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        """Whether the current (true) state ends the episode."""

    @abstractmethod
    def reward(self, model: mujoco.MjModel, data: mujoco.MjData, terminated: bool) -> float:
        """Reward for the step that led to the current (true) state."""

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
