"""The exported policy maps observations to bounded actions and loads without pickled code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from learners import MLPPolicy


def make(normalized: bool) -> MLPPolicy:
    g = torch.Generator().manual_seed(0)
    layers = [
        (torch.randn(8, 4, generator=g), torch.randn(8, generator=g)),
        (torch.randn(2, 8, generator=g), torch.randn(2, generator=g)),  # mean + log_std
    ]
    return MLPPolicy(layers, "tanh", np.array([-3.0]), np.array([3.0]), normalized)


def test_actions_are_the_mean_within_bounds() -> None:
    pol = make(normalized=False)
    obs = np.random.default_rng(0).normal(size=(64, 4)) * 5
    act = pol(obs)
    assert act.shape == (64, 1)
    assert (act >= -3).all() and (act <= 3).all()
    raw = pol.net(torch.as_tensor(obs, dtype=torch.float32))[:, :1].detach().double().numpy()
    inside = np.abs(raw) < 3
    assert np.allclose(act[inside], raw[inside], atol=1e-6)
    assert pol(obs[0]).shape == (1,)


def test_normalized_actions_are_unsquashed_like_rllib() -> None:
    pol = make(normalized=True)
    obs = np.random.default_rng(1).normal(size=(32, 4))
    raw = pol.net(torch.as_tensor(obs, dtype=torch.float32))[:, :1].detach().double().numpy()
    expected = np.clip(-3 + (raw + 1) * 3, -3, 3)
    assert np.allclose(pol(obs), expected, atol=1e-6)


def test_save_load_round_trip_with_weights_only(tmp_path: Path) -> None:
    pol = make(normalized=False)
    pol.save(tmp_path / "p.pt")
    torch.load(tmp_path / "p.pt", weights_only=True)  # no arbitrary unpickling
    back = MLPPolicy.load(tmp_path / "p.pt")
    obs = np.random.default_rng(2).normal(size=(16, 4))
    assert np.array_equal(back(obs), pol(obs))


def test_rllib_episode_counts_treat_nan_as_zero() -> None:
    from learners.rllib_learner import _count

    assert _count(float("nan")) == 0  # no episode ended in the iteration
    assert _count(None) == 0
    assert _count(3.0) == 3
