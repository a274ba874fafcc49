"""Shared fixtures for the generators tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import generators
from generators import Family, ParamSpace, RealityProxy
from generators.models import clear_bases

REALITY = "gymnasium/InvertedPendulum-v5"


@pytest.fixture(autouse=True)
def _scratch_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run in a scratch directory: MuJoCo appends its warnings to ./MUJOCO_LOG.TXT."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _no_compiled_bases() -> None:
    """Start without compiled bases: the envs of a process share them, and tests count
    compiles."""
    clear_bases()


@pytest.fixture
def family() -> Family:
    return generators.get_family("inverted_pendulum")


@pytest.fixture
def space(family: Family) -> ParamSpace:
    return family.space


@pytest.fixture
def proxy() -> RealityProxy:
    return generators.get_reality(REALITY)


Rollout = Callable[..., dict[str, list]]


def _balance(t: int, obs: np.ndarray) -> np.ndarray:
    """A linear state-feedback controller that balances the nominal cart-pole indefinitely."""
    del t
    return np.array([10.0 * obs[1] + obs[3] + 0.5 * obs[0] + 0.5 * obs[2]])


def _rollout(
    env: gym.Env,
    actions: Callable[[int, np.ndarray], np.ndarray] | list[np.ndarray],
    *,
    seed: int | None = 0,
    steps: int = 20,
    stop_at_end: bool = True,
) -> dict[str, list]:
    """Reset ``env`` with ``seed`` and step it; return observations, rewards, flags, infos."""
    obs, info = env.reset(seed=seed)
    out: dict[str, list] = {"obs": [obs], "reward": [], "terminated": [], "truncated": []}
    out["info"] = [info]
    for t in range(steps):
        action = actions(t, obs) if callable(actions) else actions[t]
        obs, reward, terminated, truncated, info = env.step(action)
        for key, value in zip(
            ("obs", "reward", "terminated", "truncated", "info"),
            (obs, reward, terminated, truncated, info),
            strict=True,
        ):
            out[key].append(value)
        if stop_at_end and (terminated or truncated):
            break
    return out


@pytest.fixture
def balance() -> Callable[[int, np.ndarray], np.ndarray]:
    """Policy ``(t, obs) -> action`` that keeps the nominal pole up for a whole episode."""
    return _balance


@pytest.fixture
def rollout() -> Rollout:
    """``rollout(env, actions, seed=0, steps=20)``: reset and step, collecting everything."""
    return _rollout
