"""Policy evaluation over envs: pure functions, one result dataclass out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

Policy = Callable[[np.ndarray], np.ndarray]
"""Deterministic batched policy: `b x obs_dim` observations -> `b x act_dim` actions."""


@dataclass(frozen=True)
class EpisodeStats:
    """Returns and lengths of evaluation episodes."""

    returns: np.ndarray
    """Episode returns, shape `n`."""
    lengths: np.ndarray
    """Episode lengths in env steps, shape `n`."""
    unstable: int
    """Episodes ended by the stability guard."""

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
    policy: Policy, envs: Sequence[gym.Env], episodes: int, seed: int
) -> EpisodeStats:
    """Run `episodes` episodes of `policy`, stepping `envs` in lockstep with batched actions.

    Episode `i` is reset with seed `seed + i`, so results do not depend on how many envs
    share the work. The envs are left open (the caller owns them).
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

    def start(k: int) -> None:
        nonlocal next_episode
        if next_episode < episodes:
            slots[k] = next_episode
            obs[k], _ = envs[k].reset(seed=seed + next_episode)
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
            if terminated or truncated:
                unstable += int(bool(info.get("unstable", False)))
                start(k)
    return EpisodeStats(returns=returns, lengths=lengths, unstable=unstable)
