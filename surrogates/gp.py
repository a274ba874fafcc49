"""GP models for the controller: a drifting multi-fidelity GP and a stability classifier.

Both models follow BoTorch's conventions: double precision, inputs in (or mapped to) the
unit cube by ``Normalize``, outcomes standardized by ``Standardize``, and all fitted state
exported as plain data (``dict`` of nested lists) so a checkpoint never holds a torch module.

Column layout of the regression model's inputs (``n x D``): the generator parameters theta
in the unit cube, one fidelity column in ``[0, 1]`` (1 is the target fidelity), and optionally
one time column (any unit, e.g. the controller's round index).

Drift handling (the learning signal changes as the learner trains): time is an input with
its own kernel. The covariance is the product

    k((theta, s, t), (theta', s', t')) = k_RBF(theta, theta') * k_Matern52(t, t')
                                         * k_Downsampling(s, s')

so observations far apart in time are weakly correlated and the posterior *at the current
time* follows recent data while old data still inform the shape where nothing newer exists.
The time column is normalized to ``[0, 1]`` over the observed history (its length scale is
a fraction of the history, learned with a Gamma prior). Compared with a forgetting window
this keeps all data, needs no window size, and lets the marginal likelihood decide how
fast the objective drifts (a stationary objective learns a long time length scale).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.fit import fit_gpytorch_mll
from botorch.models.gp_regression import SingleTaskGP
from botorch.models.gp_regression_fidelity import SingleTaskMultiFidelityGP
from botorch.models.model import Model
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import MaternKernel, ProductKernel, RBFKernel, ScaleKernel
from gpytorch.likelihoods import BernoulliLikelihood
from gpytorch.means import ConstantMean
from gpytorch.mlls import ExactMarginalLogLikelihood, VariationalELBO
from gpytorch.models import ApproximateGP
from gpytorch.priors import GammaPrior
from gpytorch.variational import CholeskyVariationalDistribution, VariationalStrategy
from torch import Tensor

DTYPE = torch.float64

Hyperparameters = dict[str, Any]
"""Fitted GP hyperparameters as plain data: parameter name -> nested list of floats."""


def _as_tensor(a: Any) -> Tensor:
    return torch.as_tensor(a, dtype=DTYPE)


def hyperparameters_of(model: torch.nn.Module) -> Hyperparameters:
    """The trainable parameters of ``model`` as plain data (name -> nested list)."""
    return {name: p.detach().cpu().tolist() for name, p in model.named_parameters()}


def load_hyperparameters(model: torch.nn.Module, hyperparameters: Mapping[str, Any]) -> list[str]:
    """Copy matching entries of ``hyperparameters`` into ``model``'s parameters.

    Entries whose name is unknown or whose shape differs are skipped (a warm start from a
    model with another input dimension simply does not apply).

    Returns:
        The names of the parameters that were loaded.
    """
    loaded = []
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in hyperparameters.items():
            p = params.get(name)
            if p is None:
                continue
            v = torch.as_tensor(value, dtype=p.dtype)
            if v.shape != p.shape:
                continue
            p.copy_(v)
            loaded.append(name)
    return loaded


def fit_mf_gp(
    X: Tensor,
    Y: Tensor,
    *,
    fidelity_dim: int,
    time_dim: int | None = None,
    warm_start: Mapping[str, Any] | None = None,
    maxiter: int = 200,
) -> tuple[SingleTaskMultiFidelityGP, Hyperparameters]:
    """Fit a multi-fidelity GP (optionally drifting in time) by maximum marginal likelihood.

    The model is BoTorch's ``SingleTaskMultiFidelityGP`` with a ``DownsamplingKernel`` on the
    fidelity column (``data_fidelities=[fidelity_dim]``), an ARD RBF kernel with BoTorch's
    dimension-scaled length-scale prior on the theta columns and, when ``time_dim`` is given,
    a Matern-5/2 kernel on the time column (product of all three; see the module docstring).

    Args:
        X: ``n x D`` inputs: theta columns in the unit cube, the fidelity column in
            ``[0, 1]`` (1 = target fidelity) and optionally a time column (any unit).
        Y: ``n`` or ``n x 1`` observations (higher is better).
        fidelity_dim: index of the fidelity column of ``X``.
        time_dim: index of the time column of ``X``, or None when the objective is static.
        warm_start: hyperparameters of a previous fit (as returned by this function); entries
            whose name and shape match initialize the optimization, the rest keep their
            defaults.
        maxiter: L-BFGS-B iteration cap (a warm start converges in far fewer; reaching the
            cap is not an error).

    Returns:
        The fitted model (eval mode) and its hyperparameters as plain data.
    """
    X = _as_tensor(X)
    Y = _as_tensor(Y).reshape(-1, 1)
    n, D = X.shape
    if n != Y.shape[0]:
        raise ValueError(f"X has {n} rows but Y has {Y.shape[0]}")
    fidelity_dim %= D
    if time_dim is not None:
        time_dim %= D
        if time_dim == fidelity_dim:
            raise ValueError("time_dim and fidelity_dim must differ")
    # Fixed bounds: theta and fidelity are already in [0, 1] and must stay there (the
    # downsampling kernel reads fidelity 1 as the target); time is mapped onto [0, 1] over
    # the observed history.
    bounds = torch.zeros(2, D, dtype=DTYPE)
    bounds[1] = 1.0
    covar_module = None
    if time_dim is not None:
        t = X[:, time_dim]
        lo, hi = float(t.min()), float(t.max())
        bounds[0, time_dim] = lo
        bounds[1, time_dim] = hi if hi > lo else lo + 1.0
        theta_dims = [i for i in range(D) if i not in (fidelity_dim, time_dim)]
        covar_module = ProductKernel(
            get_covar_module_with_dim_scaled_prior(
                ard_num_dims=len(theta_dims), active_dims=theta_dims
            ),
            MaternKernel(nu=2.5, active_dims=[time_dim], lengthscale_prior=GammaPrior(3.0, 6.0)),
        )
    model = SingleTaskMultiFidelityGP(
        X,
        Y,
        data_fidelities=[fidelity_dim],
        linear_truncated=False,
        covar_module=covar_module,
        input_transform=Normalize(d=D, bounds=bounds),
        outcome_transform=Standardize(m=1),
    )
    if warm_start:
        load_hyperparameters(model, warm_start)
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}})
    model.eval()
    return model, hyperparameters_of(model)


def fit_unit_cube_gp(X: Tensor, Y: Tensor, *, maxiter: int = 200) -> SingleTaskGP:
    """Fit BoTorch's ``SingleTaskGP`` (ARD kernel, dimension-scaled length-scale prior) to
    inputs already in the unit cube, by maximum marginal likelihood.

    The bounds are fixed to ``[0, 1]`` rather than learned from the data, so the length
    scales are in unit-cube units whatever range the rows happen to cover.

    Args:
        X: ``n x D`` inputs in ``[0, 1]``.
        Y: ``n`` or ``n x 1`` observations.
        maxiter: L-BFGS-B iteration cap.

    Returns:
        The fitted model, in eval mode.
    """
    X = _as_tensor(X)
    Y = _as_tensor(Y).reshape(-1, 1)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    bounds = torch.zeros(2, X.shape[1], dtype=DTYPE)
    bounds[1] = 1.0
    model = SingleTaskGP(
        X,
        Y,
        input_transform=Normalize(d=X.shape[1], bounds=bounds),
        outcome_transform=Standardize(m=1),
    )
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}})
    model.eval()
    return model


def main_effects(model: Model, base: Tensor, columns: Sequence[int], n_grid: int = 9) -> Tensor:
    """How much a model's posterior mean moves along each input column on its own.

    For column ``j`` the partial dependence ``f_j(v)`` is the posterior mean averaged over
    ``base`` rows with column ``j`` set to ``v``; its standard deviation over ``n_grid``
    values evenly spaced in ``[0, 1]`` is the column's main effect, in outcome units. Unlike
    an inverse ARD length scale (how wiggly the function is along a column), it measures
    how much the outcome changes: a large smooth trend scores high, a small fast ripple low.

    Args:
        model: a fitted single-output BoTorch model.
        base: ``m x D`` rows (unit cube) the other columns are averaged over.
        columns: the columns to score.
        n_grid: values of each column in ``[0, 1]``.

    Returns:
        ``len(columns)`` non-negative spreads.
    """
    base = _as_tensor(base)
    m, D = base.shape
    grid = torch.linspace(0.0, 1.0, n_grid, dtype=DTYPE)
    spreads = []
    with torch.no_grad():
        for j in columns:
            X = base.unsqueeze(0).repeat(n_grid, 1, 1)
            X[:, :, j] = grid[:, None]
            mean = model.posterior(X.reshape(-1, D)).mean.reshape(n_grid, m).mean(dim=1)
            spreads.append(mean.std())
    return torch.stack(spreads)


class _BernoulliGP(ApproximateGP):
    """Variational GP classifier on the unit cube (latent f, P(y=1) = Phi(f))."""

    def __init__(self, inducing_points: Tensor) -> None:
        strategy = VariationalStrategy(
            self,
            inducing_points,
            CholeskyVariationalDistribution(inducing_points.shape[0]),
            learn_inducing_locations=True,
        )
        super().__init__(strategy)
        self.mean_module = ConstantMean()
        self.covar_module = ScaleKernel(
            RBFKernel(
                ard_num_dims=inducing_points.shape[-1],
                lengthscale_prior=GammaPrior(3.0, 6.0),
            )
        )

    def forward(self, x: Tensor) -> MultivariateNormal:
        return MultivariateNormal(self.mean_module(x), self.covar_module(x))


@dataclass
class FeasibilityModel:
    """P(stable | theta), learned from stability flags.

    Attributes:
        gp: the variational classifier, or None when every observation was stable (or every
            one unstable): then the probability is the constant ``prior``.
        likelihood: its Bernoulli likelihood (None with ``gp``).
        prior: the constant P(stable) used when there is no classifier.
    """

    gp: _BernoulliGP | None
    likelihood: BernoulliLikelihood | None
    prior: float

    def prob_stable(self, X: Tensor) -> Tensor:
        """P(stable) at ``batch_shape x n x d`` theta points -> ``batch_shape x n``.

        The hyperparameters are frozen at eval time, but the result is differentiable in X.
        """
        X = _as_tensor(X)
        if self.gp is None or self.likelihood is None:
            return torch.full(X.shape[:-1], self.prior, dtype=DTYPE)
        batch = X.shape[:-1]
        flat = X.reshape(-1, X.shape[-1])
        # P(unstable) under the Gaussian latent: Phi(mu / sqrt(1 + var)); exact for the probit
        # link and differentiable in X, so it can weight an acquisition being optimized.
        f = self.gp(flat)
        p_unstable = torch.special.ndtr(f.mean / torch.sqrt(1.0 + f.variance))
        return (1.0 - p_unstable).reshape(batch)


def fit_feasibility(
    X: Tensor,
    unstable_flags: Tensor | Sequence[bool],
    *,
    num_inducing: int = 32,
    steps: int = 75,
    lr: float = 0.1,
    seed: int = 0,
) -> FeasibilityModel:
    """Fit P(stable | theta) from per-observation stability flags.

    A small sparse variational GP classifier (Bernoulli likelihood, probit link, ARD RBF,
    ``num_inducing`` inducing points initialized on training points) trained with Adam on
    the ELBO, full batch. With no positive (or no negative) flag there is nothing to
    separate, and the model is the constant empirical rate (Laplace-smoothed).

    Args:
        X: ``n x d`` theta points in the unit cube.
        unstable_flags: ``n`` booleans, True where the run at that point was unstable.
        num_inducing: at most this many inducing points.
        steps: Adam steps.
        lr: Adam learning rate.
        seed: seeds the choice of inducing points (the fit is otherwise deterministic).

    Returns:
        The fitted feasibility model.
    """
    X = _as_tensor(X)
    y = torch.as_tensor(unstable_flags, dtype=DTYPE).reshape(-1)
    n = X.shape[0]
    if n != y.shape[0]:
        raise ValueError(f"X has {n} rows but {y.shape[0]} flags were given")
    n_unstable = int(y.sum())
    if n_unstable in (0, n):
        return FeasibilityModel(None, None, 1.0 - (n_unstable + 1.0) / (n + 2.0))
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=gen)[: min(num_inducing, n)]
    gp = _BernoulliGP(X[idx].clone()).to(DTYPE)
    likelihood = BernoulliLikelihood().to(DTYPE)
    gp.train()
    likelihood.train()
    mll = VariationalELBO(likelihood, gp, num_data=n)
    opt = torch.optim.Adam([*gp.parameters(), *likelihood.parameters()], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = -mll(gp(X), y)
        loss.backward()
        opt.step()
    gp.eval()
    likelihood.eval()
    return FeasibilityModel(gp, likelihood, 1.0 - n_unstable / n)


class FeasibilityWeightedAcquisition(AcquisitionFunction):
    """Weights an acquisition function by P(stable) of its candidates.

    ``value(X) = acqf(X) * prod_q P(stable | theta_q) ** power`` for non-negative values,
    and ``acqf(X) / prod_q ...`` for negative ones, so a likely unstable candidate always
    ranks lower (the same sign convention as BoTorch's ``InverseCostWeightedUtility``).

    Args:
        acq_function: the acquisition to weight; ``forward`` takes ``batch x q x D``.
        feasibility: the fitted feasibility model.
        theta_dims: the columns of ``X`` that are theta (the model's input).
        power: sharpens (>1) or softens (<1) the weight.
        min_prob: probabilities are clamped to at least this (keeps values finite).
    """

    def __init__(
        self,
        acq_function: AcquisitionFunction,
        feasibility: FeasibilityModel,
        theta_dims: Sequence[int],
        power: float = 1.0,
        min_prob: float = 1e-3,
    ) -> None:
        super().__init__(model=acq_function.model)
        self.acq_function = acq_function
        self.feasibility = feasibility
        self.theta_dims = list(theta_dims)
        self.power = power
        self.min_prob = min_prob

    def set_X_pending(self, X_pending: Tensor | None = None) -> None:
        self.acq_function.set_X_pending(X_pending)

    def forward(self, X: Tensor) -> Tensor:
        """Weighted values at ``batch x q x D`` -> ``batch``."""
        values = self.acq_function(X)
        weight = feasibility_weight(self.feasibility, X[..., self.theta_dims], self.min_prob)
        weight = weight.prod(dim=-1).pow(self.power).to(values)
        return torch.where(values >= 0, values * weight, values / weight)


def feasibility_weight(
    feasibility: FeasibilityModel, theta: Tensor, min_prob: float = 1e-3
) -> Tensor:
    """The acquisition weight P(stable | theta), clamped to ``[min_prob, 1]``.

    Args:
        feasibility: the fitted feasibility model.
        theta: ``batch_shape x n x d`` theta points in the unit cube.
        min_prob: lower clamp.

    Returns:
        ``batch_shape x n`` weights.
    """
    return feasibility.prob_stable(theta).clamp(min_prob, 1.0)


def feasibility_constraint(
    feasibility: FeasibilityModel, theta_dims: Sequence[int], min_prob: float = 0.5
) -> Callable[[Tensor], Tensor]:
    """A callable ``X -> P(stable | theta) - min_prob`` (>= 0 where feasible).

    Usable as a hard filter on candidate sets; ``X`` is ``... x D`` and the result ``...``.
    """
    dims = list(theta_dims)

    def constraint(X: Tensor) -> Tensor:
        return feasibility.prob_stable(X[..., dims]) - min_prob

    return constraint


__all__ = [
    "DTYPE",
    "FeasibilityModel",
    "FeasibilityWeightedAcquisition",
    "Hyperparameters",
    "feasibility_constraint",
    "feasibility_weight",
    "fit_feasibility",
    "fit_mf_gp",
    "fit_unit_cube_gp",
    "hyperparameters_of",
    "load_hyperparameters",
    "main_effects",
]
