"""Multi-fidelity BO core: fidelity choice, fallbacks, acquisitions, state round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from gpytorch.kernels import MaternKernel, ProductKernel, RBFKernel, ScaleKernel

from loop.mfbo import (
    ACQUISITIONS,
    AcquisitionContext,
    MFBOSettings,
    MultiFidelityBO,
    fit_affine_cost,
    kernel_relevance,
)

COSTS = (1.0, 10.0)  # the cheap fidelity costs a tenth of the target
SMALL = {"raw_samples": 64, "candidate_size": 128, "maxiter": 3}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _objective(x: np.ndarray, k: int) -> float:
    """Target: a smooth bump; the cheap fidelity is the same bump, slightly biased."""
    hi = float(np.exp(-8 * np.sum((x - np.array([0.3, 0.7])) ** 2)))
    return hi if k == 1 else hi + 0.05 * float(x[0])


def _run(opt: MultiFidelityBO, rounds: int, q: int = 4) -> list[dict]:
    diags = []
    for _ in range(rounds):
        props = opt.propose(q)
        opt.observe(
            [x for x, _ in props],
            [k for _, k in props],
            [_objective(x, k) for x, k in props],
            [COSTS[k] for _, k in props],
        )
        diags.append(dict(opt.diagnostics))
    return diags


def _make(seed: int = 0, **settings) -> MultiFidelityBO:
    return MultiFidelityBO(
        2, ["coarse", "fine"], seed=seed, settings=MFBOSettings(**{**SMALL, **settings})
    )


def test_mes_uses_both_fidelities_when_the_cheap_one_is_informative() -> None:
    opt = _make()
    diags = _run(opt, rounds=4)
    bo = [d for d in diags if d["fallback"] != "initial_design"]
    chosen = [k for d in bo for k in d["fidelities"]]
    assert {0, 1} <= set(chosen), chosen
    # Both chosen by the acquisition itself, not forced by the fallback.
    assert all(d["fallback"] is None for d in bo)
    d = bo[-1]
    assert d["cost_model"]["fixed_cost"] == pytest.approx(1.0)
    assert d["cost_model"]["slope"] == pytest.approx(9.0)
    assert len(d["acq_values"]) == 4 and all(v > 0 for v in d["info_gain_per_cost"])
    assert d["fit_s"] > 0 and d["propose_s"] > 0


class _Constant(AcquisitionFunction):
    """Acquisition returning ``value(s)`` for fidelity ``s``, the same at every theta."""

    def __init__(self, ctx: AcquisitionContext, fn) -> None:
        super().__init__(ctx.model)
        self.fid = ctx.fidelity_dim
        self.fn = fn

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.fn(X[..., 0, self.fid]) + 0 * X[..., 0, 0]

    def set_X_pending(self, X_pending=None) -> None:
        pass


def test_zero_acquisition_falls_back_to_target_fidelity_ucb(monkeypatch) -> None:
    monkeypatch.setitem(
        ACQUISITIONS, "zero", lambda ctx, pending: _Constant(ctx, lambda s: 0.0 * s)
    )
    opt = _make(acquisition="zero")
    _run(opt, rounds=1)  # initial design
    props = opt.propose(4)
    assert opt.diagnostics["fallback"] == "zero_acquisition"
    assert opt.diagnostics["fallback_slots"] == [0, 1, 2, 3]
    assert [k for _, k in props] == [1, 1, 1, 1]
    assert len({tuple(x) for x, _ in props}) == 4  # pending points spread the batch


def test_stuck_at_cheap_fidelity_forces_target_share(monkeypatch) -> None:
    # An acquisition that always prefers the cheapest fidelity (the Ax #475 symptom).
    monkeypatch.setitem(
        ACQUISITIONS, "cheap", lambda ctx, pending: _Constant(ctx, lambda s: 2.0 - s)
    )
    opt = _make(acquisition="cheap", stuck_rounds=2, target_share=0.5)
    _run(opt, rounds=1)  # initial design (has the target first)
    d1 = _run(opt, rounds=1)[0]
    assert d1["fidelities"] == [0, 0, 0, 0] and d1["fallback"] is None
    d2 = _run(opt, rounds=1)[0]
    assert d2["fallback"] == "stuck_low_fidelity"
    assert d2["fidelities"] == [0, 0, 1, 1]
    assert d2["fallback_slots"] == [2, 3]
    # Without budget for a target evaluation, nothing is forced.
    opt.rounds_without_target = 5
    props = opt.propose(4, budget_remaining=5.0)
    assert [k for _, k in props] == [0, 0, 0, 0]


def test_a_fidelity_no_cheaper_than_the_target_is_never_proposed(monkeypatch) -> None:
    # An acquisition that prefers the cheap fidelity, which here costs more than the target:
    # the clamped affine cost model calls both equally cheap, the dominance rule drops it.
    monkeypatch.setitem(
        ACQUISITIONS, "cheap", lambda ctx, pending: _Constant(ctx, lambda s: 2.0 - s)
    )
    opt = _make(acquisition="cheap")
    assert opt.dominated() == []  # nothing measured yet
    costs = (12.0, 10.0)
    for _ in range(3):
        props = opt.propose(4)
        opt.observe(
            [x for x, _ in props],
            [k for _, k in props],
            [_objective(x, k) for x, k in props],
            [costs[k] for _, k in props],
        )
    d = opt.diagnostics
    assert d["fallback"] is None and d["dominated"] == [0]
    assert d["fidelities"] == [1, 1, 1, 1] and d["cost_model"]["slope"] == 0.0
    # Cheaper again, it is proposed again.
    opt.observe([np.full(2, 0.5)], [0], [0.0], [1.0])
    assert opt.dominated() == [] and [k for _, k in opt.propose(4)] == [0, 0, 0, 0]
    # Costs known up front (a prior) keep even the initial design at the target.
    for prior, fids in (([10.0, 10.0], [1, 1, 1, 1]), ([1.0, 10.0], [1, 0, 1, 0])):
        fresh = MultiFidelityBO(
            2, ["coarse", "fine"], settings=MFBOSettings(**SMALL), cost_prior=prior
        )
        assert [k for _, k in fresh.propose(4)] == fids


@pytest.mark.parametrize("name", ["mfkg", "ucb"])
def test_other_acquisitions_are_selectable(name: str) -> None:
    opt = _make(acquisition=name, n_init=2, num_fantasies=4, raw_samples=16, num_restarts=1)
    diags = _run(opt, rounds=2, q=2)
    d = diags[-1]
    assert d["acquisition"] == name
    assert len(d["fidelities"]) == 2 and all(np.isfinite(d["acq_values"]))


def test_restored_optimizer_proposes_what_the_uninterrupted_one_would() -> None:
    a = _make(seed=3)
    _run(a, rounds=2)
    state = json.loads(json.dumps(a.state_dict()))  # plain data
    b = _make(seed=99)
    b.load_state_dict(state)
    pa, pb = a.propose(4), b.propose(4)
    assert [k for _, k in pa] == [k for _, k in pb]
    for (xa, _), (xb, _) in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(xa, xb)
    # And the same seed from scratch reproduces the whole run.
    c = _make(seed=3)
    _run(c, rounds=2)
    pc = c.propose(4)
    for (xa, _), (xc, _) in zip(pa, pc, strict=True):
        np.testing.assert_array_equal(xa, xc)


def test_posterior_picture_of_a_restored_optimizer_leaves_its_next_proposal_alone() -> None:
    a = _make(seed=3)
    _run(a, rounds=2)
    state = json.loads(json.dumps(a.state_dict()))
    b = _make(seed=3)
    b.load_state_dict(state)
    mean, std = b.posterior_slice([0, 1], n=5)  # no GP yet after a restore: a temporary fit
    assert mean.shape == std.shape == (5, 5) and np.isfinite(mean).all()
    assert b.state_dict() == state
    for (xa, ka), (xb, kb) in zip(a.propose(4), b.propose(4), strict=True):
        assert ka == kb
        np.testing.assert_array_equal(xa, xb)


def test_feasibility_model_weights_proposals() -> None:
    opt = _make(seed=1)
    rng = np.random.default_rng(0)
    x = rng.random((12, 2))
    unstable = x[:, 0] > 0.6
    opt.observe(x, [1] * 12, [_objective(xi, 1) for xi in x], [10.0] * 12, unstable=unstable)
    props = opt.propose(4)
    assert opt.diagnostics["feasibility"] is True
    assert sum(xi[0] > 0.6 for xi, _ in props) <= 1


def test_unstable_results_older_than_the_window_are_still_avoided() -> None:
    opt = _make(seed=1, max_observations=8)
    rng = np.random.default_rng(0)
    x = rng.random((12, 2))
    unstable = x[:, 0] > 0.6
    opt.observe(x, [1] * 12, [_objective(xi, 1) for xi in x], [10.0] * 12, unstable=unstable)
    x_new = rng.random((8, 2)) * [0.6, 1.0]  # newer results, all stable, none in the region
    opt.observe(x_new, [1] * 8, [_objective(xi, 1) for xi in x_new], [10.0] * 8)
    props = opt.propose(4)
    assert opt.diagnostics["feasibility"] is True
    assert sum(xi[0] > 0.6 for xi, _ in props) <= 1


def test_fit_affine_cost() -> None:
    assert fit_affine_cost([0.0, 1.0], [2.0, 12.0], [3, 1]) == pytest.approx((2.0, 10.0))
    assert fit_affine_cost([0.0, 1.0], [5.0, None], [1, 0]) == (5.0, 0.0)
    assert fit_affine_cost([0.0, 1.0], [None, None], [0, 0]) == (1.0, 0.0)
    fixed, slope = fit_affine_cost([0.0, 0.5, 1.0], [0.0, 0.0, 9.0], [1, 1, 1])
    assert fixed > 0 and slope > 0  # costs stay strictly positive


@pytest.mark.parametrize("drift", [True, False])
def test_relevance_ranks_the_dims_the_objective_depends_on(drift: bool) -> None:
    opt = MultiFidelityBO(
        5, ["coarse", "fine"], seed=0, settings=MFBOSettings(**SMALL, drift=drift)
    )
    assert opt.relevance() is None  # no GP yet
    x = np.random.default_rng(0).random((24, 5))
    y = np.exp(-((x[:, 0] - 0.3) ** 2 + (x[:, 3] - 0.6) ** 2) / 0.1)
    opt.observe(x[:12], [0] * 12, 0.9 * y[:12], [1.0] * 12)
    opt.observe(x[12:], [1] * 12, y[12:], [10.0] * 12)
    state = json.loads(json.dumps(opt.state_dict()))
    opt.propose(1)
    rel = opt.relevance()
    assert rel.shape == (5,) and np.all(rel >= 0)  # theta dims only (no fidelity, time)
    assert sorted(np.argsort(-rel)[:2]) == [0, 3]
    assert rel[[0, 3]].min() > 3 * rel[[1, 2, 4]].max()
    # Deterministic given the state: a restored optimizer's next fit reads the same.
    restored = MultiFidelityBO(
        5, ["coarse", "fine"], seed=9, settings=MFBOSettings(**SMALL, drift=drift)
    )
    restored.load_state_dict(state)
    assert restored.relevance() is None
    restored.propose(1)
    np.testing.assert_array_equal(restored.relevance(), rel)


def test_kernel_relevance_maps_length_scales_to_input_columns() -> None:
    theta = ScaleKernel(RBFKernel(ard_num_dims=2, active_dims=[2, 0]))
    theta.base_kernel.lengthscale = torch.tensor([[0.5, 4.0]])
    time_kernel = MaternKernel(active_dims=[3])
    time_kernel.lengthscale = 0.01  # a time column never counts
    shared = RBFKernel(active_dims=[0, 1])  # one length scale for both columns
    shared.lengthscale = 2.0
    kernel = ProductKernel(ProductKernel(theta, time_kernel), shared)
    rel = kernel_relevance(kernel, [0, 1, 2], num_inputs=5)
    # Column 0: 1/4 from the ARD kernel and 1/2 from the shared one, combined as in a
    # product of RBFs (inverse squared length scales add).
    np.testing.assert_allclose(rel, [np.sqrt(1 / 16 + 1 / 4), 0.5, 2.0])
    assert kernel_relevance(RBFKernel(ard_num_dims=5), [4], num_inputs=5).shape == (1,)


def test_gp_is_fitted_to_the_newest_max_observations() -> None:
    """A long run's propose cost stays bounded: older observations than the window do not
    change what the optimizer proposes."""
    rng = np.random.default_rng(0)
    x_old, x_new = rng.uniform(size=(12, 2)), rng.uniform(size=(8, 2))
    y_new = [_objective(x, 1) for x in x_new]
    proposals = []
    for y_old in (np.zeros(12), np.ones(12)):
        opt = _make(seed=5, max_observations=8)
        opt.observe(x_old, [1] * 12, y_old, [COSTS[1]] * 12, time=0.0)
        opt.observe(x_new, [1] * 8, y_new, [COSTS[1]] * 8, time=1.0)
        proposals.append(opt.propose(2))
    for (xa, ka), (xb, kb) in zip(*proposals, strict=True):
        np.testing.assert_array_equal(xa, xb)
        assert ka == kb
    unbounded = _make(seed=5)
    unbounded.observe(x_old, [1] * 12, np.ones(12), [COSTS[1]] * 12, time=0.0)
    unbounded.observe(x_new, [1] * 8, y_new, [COSTS[1]] * 8, time=1.0)
    assert not np.array_equal(unbounded.propose(2)[0][0], proposals[0][0][0])
