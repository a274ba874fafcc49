"""Policy evaluation over envs: pure functions, one result dataclass out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

Policy = Callable[[np.ndarray], np.ndarray]
"""Deterministic batched policy: `b x obs_dim` observations -> `b x act_dim` actions."""


@dataclass(frozen=True)
class Trajectory:
    """One recorded episode: what the agent saw and did (system identification's data)."""

    observations: np.ndarray
    """Observations from the reset to the last step, ``(T + 1) x obs_dim``."""
    actions: np.ndarray
    """The policy's actions as the env takes them (NaN -> 0, clipped to the action space;
    before its latency and deadzone), ``T x act_dim``."""
    unstable: bool = False
    """Whether the stability guard ended the episode (its last transition is not physics)."""


@dataclass(frozen=True)
class EpisodeStats:
    """Returns and lengths of evaluation episodes."""

    returns: np.ndarray
    """Episode returns, shape `n`."""
    lengths: np.ndarray
    """Episode lengths in env steps, shape `n`."""
    unstable: int
    """Episodes ended by the stability guard."""
    trajectories: tuple[Trajectory, ...] | None = None
    """Each episode's observations and actions, in episode order (with ``record=True``)."""

    @property
    def episodes(self) -> int:
        return int(self.returns.shape[0])

    @property
    def mean(self) -> float:
        return float(self.returns.mean()) if self.episodes else float("nan")

    @property
    def stderr(self) -> float:
        """Standard error of the mean return (0 for a single episode)."""
        if self.episodes < 2:
            return 0.0
        return float(self.returns.std(ddof=1) / np.sqrt(self.episodes))

    @property
    def env_steps(self) -> int:
        return int(self.lengths.sum())


def evaluate_policy(
    policy: Policy, envs: Sequence[gym.Env], episodes: int, seed: int, record: bool = False
) -> EpisodeStats:
    """Run `episodes` episodes of `policy`, stepping `envs` in lockstep with batched actions.

    Episode `i` is reset with seed `seed + i`, so results do not depend on how many envs
    share the work. The envs are left open (the caller owns them). With `record`, the
    result also holds every episode's `Trajectory`.
    """
    if episodes <= 0:
        raise ValueError(f"episodes: must be > 0 (got {episodes})")
    if not envs:
        raise ValueError("evaluate_policy needs at least one env")
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    unstable = 0
    next_episode = 0
    slots: list[int | None] = [None] * len(envs)
    obs: list[np.ndarray | None] = [None] * len(envs)
    seen: list[list[np.ndarray]] = [[] for _ in range(episodes)]
    done: list[list[np.ndarray]] = [[] for _ in range(episodes)]
    ended_unstable = [False] * episodes

    def start(k: int) -> None:
        nonlocal next_episode
        if next_episode < episodes:
            slots[k] = next_episode
            obs[k], _ = envs[k].reset(seed=seed + next_episode)
            if record:
                seen[next_episode].append(np.asarray(obs[k], dtype=np.float64))
            next_episode += 1
        else:
            slots[k] = None

    for k in range(len(envs)):
        start(k)
    while any(s is not None for s in slots):
        active = [k for k, s in enumerate(slots) if s is not None]
        actions = policy(np.stack([obs[k] for k in active]))
        for k, action in zip(active, actions, strict=True):
            ep = slots[k]
            o, r, terminated, truncated, info = envs[k].step(action)
            returns[ep] += float(r)
            lengths[ep] += 1
            obs[k] = o
            if record:
                space = envs[k].action_space
                taken = np.nan_to_num(np.asarray(action, np.float64), nan=0.0)
                done[ep].append(np.clip(taken, space.low, space.high))
                seen[ep].append(np.asarray(o, dtype=np.float64))
            if terminated or truncated:
                ended_unstable[ep] = bool(info.get("unstable", False))
                unstable += int(ended_unstable[ep])
                start(k)
    trajectories = None
    if record:
        trajectories = tuple(
            Trajectory(np.stack(o), np.stack(a).reshape(len(a), -1), u)
            for o, a, u in zip(seen, done, ended_unstable, strict=True)
        )
    return EpisodeStats(returns, lengths, unstable, trajectories)
