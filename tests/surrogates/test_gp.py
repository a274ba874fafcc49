"""The controller's GP models: multi-fidelity fit, warm start, drift, feasibility."""

from __future__ import annotations

import pytest
import torch
from botorch.acquisition.analytic import PosteriorMean

import surrogates.gp as gp_module
from surrogates import (
    FeasibilityWeightedAcquisition,
    feasibility_constraint,
    fit_feasibility,
    fit_mf_gp,
    fit_unit_cube_gp,
    main_effects,
)

D = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small GPs gain nothing from threads; on a busy machine they lose a lot."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _mf_data(n: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(n, 2, generator=g, dtype=D)
    s = (torch.arange(n) % 2).to(D).unsqueeze(-1)  # fidelities 0 and 1
    y = torch.sin(6 * theta[:, 0]) + theta[:, 1] + 0.1 * (1 - s[:, 0]) * theta[:, 0]
    return torch.cat([theta, s], dim=-1), y


def test_fit_predicts_training_data_at_their_fidelity() -> None:
    X, y = _mf_data()
    model, hp = fit_mf_gp(X, y, fidelity_dim=2)
    mean = model.posterior(X).mean.squeeze(-1)
    assert mean.dtype == torch.float64
    assert torch.allclose(mean, y, atol=0.1)
    assert all(isinstance(v, list | float) for v in hp.values())
    assert "covar_module.kernels.1.raw_offset" in hp  # the downsampling kernel on fidelity


def test_warm_start_initializes_from_previous_hyperparameters(monkeypatch) -> None:
    X, y = _mf_data()
    _, hp = fit_mf_gp(X, y, fidelity_dim=2)
    seen: dict[str, list] = {}

    def fake_fit(mll, **kwargs):
        seen.update(gp_module.hyperparameters_of(mll.model))
        return mll

    monkeypatch.setattr(gp_module, "fit_gpytorch_mll", fake_fit)
    X2, y2 = _mf_data(n=30, seed=1)
    fit_mf_gp(X2, y2, fidelity_dim=2, warm_start=hp)
    assert seen == hp
    # A state from another input dimension does not apply, and does not fail.
    X3 = torch.cat([X2[:, :2], X2[:, :1], X2[:, 2:]], dim=-1)
    fit_mf_gp(X3, y2, fidelity_dim=3, warm_start=hp)
    assert (
        seen["covar_module.kernels.0.raw_lengthscale"]
        != hp["covar_module.kernels.0.raw_lengthscale"]
    )


def test_time_kernel_forgets_what_changed() -> None:
    # The objective flips sign half-way; at the latest time the posterior must follow
    # the recent data, which a static model (no time column) cannot.
    g = torch.Generator().manual_seed(0)
    n = 40
    theta = torch.rand(n, 1, generator=g, dtype=D)
    t = torch.arange(n, dtype=D).unsqueeze(-1) // 4  # 10 rounds of 4
    s = torch.ones(n, 1, dtype=D)
    f = torch.sin(6 * theta[:, 0])
    y = torch.where(t[:, 0] < 5, f, -f)
    X = torch.cat([theta, s, t], dim=-1)
    drifting, hp = fit_mf_gp(X, y, fidelity_dim=1, time_dim=2)
    static, _ = fit_mf_gp(X[:, :2], y, fidelity_dim=1)

    grid = torch.linspace(0, 1, 25, dtype=D).unsqueeze(-1)
    now = torch.cat([grid, torch.ones_like(grid), torch.full_like(grid, 9.0)], dim=-1)
    recent = -torch.sin(6 * grid[:, 0])
    err_drift = (drifting.posterior(now).mean.squeeze(-1) - recent).abs().mean()
    err_static = (static.posterior(now[:, :2]).mean.squeeze(-1) - recent).abs().mean()
    assert err_drift < 0.25
    assert err_static > 2 * err_drift
    assert "covar_module.kernels.0.kernels.1.raw_lengthscale" in hp  # the time kernel


def test_main_effects_rank_by_how_far_the_outcome_moves_not_by_wiggliness() -> None:
    """A big smooth trend (column 0) outranks a small fast ripple (column 1), which the
    length scales rank the other way round; a column the outcome ignores scores ~0."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(150, 3, generator=g, dtype=D)
    y = 2.0 * x[:, 0] + 0.3 * torch.sin(12 * x[:, 1])
    model = fit_unit_cube_gp(x, y)
    lengthscale = model.covar_module.lengthscale.detach().reshape(-1)
    assert lengthscale[1] < lengthscale[0]  # the ripple is the wiggliest column
    effect = main_effects(model, x[:64], range(3))
    assert effect.shape == (3,)
    assert effect[0] == pytest.approx(0.685, rel=0.05)  # std of 2v, v on 9 points in [0, 1]
    assert effect[1] < 0.4 * effect[0]
    assert effect[2] < 0.01 * effect[0]


def test_feasibility_separates_unstable_region() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(60, 2, generator=g, dtype=D)
    unstable = X[:, 0] > 0.7
    feas = fit_feasibility(X, unstable)
    p = feas.prob_stable(torch.tensor([[0.2, 0.5], [0.95, 0.5]], dtype=D))
    assert p[0] > 0.7 and p[1] < 0.3
    assert feasibility_constraint(feas, [0, 1])(torch.tensor([[0.95, 0.5, 1.0]], dtype=D)) < 0

    # As an acquisition weight: a flat acquisition ranks the stable point higher.
    X_mf = torch.cat([X, torch.ones(60, 1, dtype=D)], dim=-1)
    model, _ = fit_mf_gp(X_mf, torch.zeros(60, dtype=D) + X[:, 1], fidelity_dim=2)
    acqf = FeasibilityWeightedAcquisition(PosteriorMean(model), feas, theta_dims=[0, 1])
    v = acqf(torch.tensor([[[0.2, 0.5, 1.0]], [[0.95, 0.5, 1.0]]], dtype=D))
    assert v[0] > v[1]


def test_feasibility_without_unstable_flags_is_constant() -> None:
    X = torch.rand(10, 3, dtype=D)
    feas = fit_feasibility(X, [False] * 10)
    assert feas.gp is None
    p = feas.prob_stable(X)
    assert p.shape == (10,) and torch.all(p > 0.9)
