"""Multi-fidelity Bayesian optimization core of the `bo` controller.

`MultiFidelityBO` keeps observations (theta in the unit cube, a fidelity index, a value, a
measured cost) as plain data and proposes batches of ``(theta, fidelity index)`` by
maximizing an information-gain-per-cost acquisition over a multi-fidelity GP
(`surrogates.fit_mf_gp`):

* ``mes`` (default): BoTorch's ``qMultiFidelityMaxValueEntropy`` with
  ``InverseCostWeightedUtility`` over an ``AffineFidelityCostModel`` fitted to the measured
  costs, ``project_to_target_fidelity`` onto the top fidelity at the current time, and a
  Sobol candidate set for the max-value samples;
* ``mfkg``: ``qMultiFidelityKnowledgeGradient`` with the same cost utility and projection;
* ``ucb``: `CostWeightedUCB`, the target-fidelity UCB whose exploration bonus counts only the
  variance an evaluation at the chosen fidelity removes at the target, per unit cost.

Batches (``q >= 1``) are built sequentially greedy. Per slot, MES and UCB are evaluated on
``raw_samples`` Sobol thetas at every fidelity in one batched call (the fidelity and time
columns are fixed features), the best fidelity's top points are polished by a few L-BFGS-B
iterations, and the chosen point becomes pending (BoTorch fantasies for MES and KG, or the
kriging believer with ``pending="believer"``; the believer always for UCB). KG, a one-shot
acquisition, is optimized per fidelity by ``optimize_acqf``. All torch work of a `propose`
runs seeded (from the optimizer's numpy RNG) and on ``num_threads`` threads.

Guard against the known failure of cost-aware multi-fidelity acquisitions (Ax #475: they
never leave the cheapest fidelity, or their values underflow to zero):

* ``zero_acquisition``: when the best value of a slot is non-finite or below
  ``zero_tol`` in absolute value, that slot and the rest of the batch fall back to
  target-fidelity UCB;
* ``stuck_low_fidelity``: when the last ``stuck_rounds - 1`` rounds proposed nothing at the
  top fidelity, the batch's last slots are forced to the top fidelity (target-fidelity UCB)
  until it holds at least ``ceil(target_share * q)`` top-fidelity proposals, as long as the
  remaining budget (if given) covers a top-fidelity evaluation.

What happened is recorded in `MultiFidelityBO.diagnostics` after every `propose`.

`MultiFidelityBO.relevance` reads, per theta dimension, how strongly the fitted GP's
covariance depends on it: the inverse of the ARD length scale the marginal likelihood chose
(`kernel_relevance`). A dimension the objective does not depend on gets a long length scale
and a relevance near zero. The `bo` controller uses it to decide in which dimensions its
training boxes are narrow (`loop.bo`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from botorch.acquisition.acquisition import AcquisitionFunction, OneShotAcquisitionFunction
from botorch.acquisition.analytic import PosteriorMean
from botorch.acquisition.cost_aware import InverseCostWeightedUtility
from botorch.acquisition.knowledge_gradient import qMultiFidelityKnowledgeGradient
from botorch.acquisition.max_value_entropy_search import qMultiFidelityMaxValueEntropy
from botorch.acquisition.utils import project_to_target_fidelity
from botorch.models.cost import AffineFidelityCostModel
from botorch.models.model import Model
from botorch.optim.optimize import optimize_acqf
from botorch.utils.sampling import draw_sobol_samples
from gpytorch.kernels import Kernel
from torch import Tensor

from surrogates import (
    FeasibilityModel,
    FeasibilityWeightedAcquisition,
    fit_feasibility,
    fit_mf_gp,
)

DTYPE = torch.float64


@dataclass(frozen=True)
class MFBOSettings:
    """Knobs of `MultiFidelityBO` (defaults keep one q=4 propose near 1-3 s at n=200, d=8)."""

    acquisition: str = "mes"
    """Name in `ACQUISITIONS`: ``mes``, ``mfkg`` or ``ucb``."""
    drift: bool = True
    """Model the objective as drifting over time (a time column with its own kernel)."""
    use_feasibility: bool = True
    """Weight the acquisition by P(stable | theta) once an unstable result was observed."""
    n_init: int = 4
    """Below this many observations, propose a scrambled Sobol design instead."""
    num_restarts: int = 2
    """Best raw points polished by L-BFGS-B per batch slot."""
    raw_samples: int = 128
    """Sobol thetas evaluated at every fidelity per batch slot (a discrete search)."""
    maxiter: int = 5
    """L-BFGS-B iterations of the polish (0: discrete search only)."""
    candidate_size: int = 256
    """Sobol candidate set size for the MES max-value samples."""
    num_fantasies: int = 4
    """Fantasies for pending points (MES with ``pending="fantasize"``) and for KG."""
    pending: str = "fantasize"
    """How MES conditions on a batch's earlier slots: ``fantasize`` (BoTorch's fantasy
    models, ``num_fantasies`` times the cost) or ``believer`` (kriging believer: condition
    the GP on the pending points at their posterior mean; one model, much faster)."""
    num_mv_samples: int = 8
    """Max-value samples (MES)."""
    num_y_samples: int = 64
    """Posterior samples per point in the MES information gain."""
    beta: float = 4.0
    """UCB exploration weight (``mean + sqrt(beta) * std``)."""
    zero_tol: float = 1e-12
    """Acquisition values below this (absolute) count as numerically zero."""
    stuck_rounds: int = 3
    """Rounds without a top-fidelity proposal before proposals are forced to the top."""
    target_share: float = 0.25
    """Share of a batch forced to the top fidelity when stuck (at least one proposal)."""
    gp_maxiter: int = 50
    """L-BFGS-B iteration cap of the GP fit. Warm-started fits move little, and the cap
    bounds the fit at about a third of a propose (the loop's budget is 5% of an iteration)."""
    max_observations: int = 256
    """The GP is fitted to the most recent this many observations: a propose's cost stays
    bounded in long runs (the drift kernel discounts older observations anyway). The
    feasibility model also keeps every older unstable result."""
    num_threads: int = 1
    """Torch intra-op threads while proposing (0: leave torch's setting). Small GPs gain
    nothing from more threads, and on a busy machine they lose up to 30x to
    oversubscription; a fixed count also keeps proposals bit-reproducible across hosts."""


@dataclass(frozen=True)
class AcquisitionContext:
    """What an acquisition builder gets: the fitted model and the problem layout.

    Attributes:
        model: the fitted multi-fidelity GP over ``D``-dim inputs.
        dim: ``D``, theta dims plus the fidelity column (plus the time column).
        fidelity_dim: index of the fidelity column.
        target: fixed columns of the target: ``{fidelity_dim: 1.0, time_dim: now}``.
        project: maps ``batch x q x D`` onto the target (``project_to_target_fidelity``).
        cost_utility: ``InverseCostWeightedUtility`` over the fitted affine cost model.
        candidate_set: ``N x D`` Sobol points at the target, for MES max-value samples
            (the given candidates, when there are any).
        bounds: ``2 x D`` optimization bounds.
        settings: the optimizer's settings.
        choices: ``m x d`` thetas the batch must be chosen from (``propose``'s
            ``candidates``), or None: the whole cube.
    """

    model: Model
    dim: int
    fidelity_dim: int
    target: dict[int, float]
    project: Callable[[Tensor], Tensor]
    cost_utility: InverseCostWeightedUtility
    candidate_set: Tensor
    bounds: Tensor
    settings: MFBOSettings
    choices: Tensor | None = None


AcquisitionBuilder = Callable[[AcquisitionContext, Tensor | None], AcquisitionFunction]
"""``(context, X_pending: m x D or None) -> acquisition function``."""

ACQUISITIONS: dict[str, AcquisitionBuilder] = {}


def register_acquisition(name: str) -> Callable[[AcquisitionBuilder], AcquisitionBuilder]:
    """Register an acquisition builder under the name `MFBOSettings.acquisition` uses."""

    def add(builder: AcquisitionBuilder) -> AcquisitionBuilder:
        if name in ACQUISITIONS:
            raise ValueError(f"acquisition {name!r} is already registered")
        ACQUISITIONS[name] = builder
        return builder

    return add


class CostWeightedUCB(AcquisitionFunction):
    """Target-fidelity UCB with a fidelity-aware exploration bonus, per unit cost.

    For a candidate ``x`` at fidelity ``s`` and its projection ``x*`` onto the target,

        delta(x, s) = mu(x*) + sqrt(beta * c(x, x*)^2 / (var(x) + noise)) - incumbent

    where ``c(x, x*)^2 / (var(x) + noise)`` is the variance at the target that observing
    ``(x, s)`` removes (equal to about ``var(x*)`` at the target fidelity itself), and
    ``incumbent`` is the best posterior mean at the target over the training points.
    ``delta`` is then weighted by the inverse cost (``InverseCostWeightedUtility``).
    Pending points are handled by the kriging believer: the model is conditioned on them
    at their posterior mean, which shrinks the variance around them.

    Args:
        model: fitted single-output GP with a ``Standardize`` outcome transform.
        beta: exploration weight.
        incumbent: best posterior mean at the target (output units).
        cost_utility: cost-aware utility applied to ``delta``.
        project: maps ``batch x q x D`` onto the target.
        X_pending: ``m x D`` pending points, or None.
    """

    def __init__(
        self,
        model: Model,
        beta: float,
        incumbent: float,
        cost_utility: InverseCostWeightedUtility,
        project: Callable[[Tensor], Tensor],
        X_pending: Tensor | None = None,
    ) -> None:
        super().__init__(model=model)
        self.base_model = model
        self.beta = beta
        self.incumbent = incumbent
        self.cost_utility = cost_utility
        self.project = project
        self.set_X_pending(X_pending)

    def set_X_pending(self, X_pending: Tensor | None = None) -> None:
        self.X_pending = X_pending
        if X_pending is None:
            self.model = self.base_model
            return
        self.model = _believer(self.base_model, X_pending)

    def forward(self, X: Tensor) -> Tensor:
        """Values at ``batch x 1 x D`` -> ``batch``."""
        X_all = torch.cat([X, self.project(X)], dim=-2)
        post = self.model.posterior(X_all)
        cov = post.distribution.covariance_matrix
        stdv = self.model.outcome_transform.stdvs.squeeze()
        noise = self.model.likelihood.noise.reshape(-1)[0] * stdv.pow(2)
        var_s = cov[..., 0, 0].clamp_min(1e-12)
        reduction = cov[..., 0, 1].pow(2) / (var_s + noise)
        mean_target = post.mean[..., 1, 0]
        delta = mean_target + (self.beta * reduction.clamp_min(1e-12)).sqrt() - self.incumbent
        return self.cost_utility(X=X, deltas=delta)


def _believer(model: Model, X_pending: Tensor) -> Model:
    """``model`` conditioned on ``m x D`` pending points at its posterior mean."""
    with torch.no_grad():
        mean = model.posterior(X_pending).mean
    return model.condition_on_observations(X=X_pending, Y=mean)


def _incumbent(ctx: AcquisitionContext) -> float:
    """Best posterior mean at the target over the training inputs."""
    train_x = ctx.model.train_inputs[0]
    # train_inputs are transformed; theta and fidelity bounds are the unit cube, so theta
    # columns are unchanged and projection overwrites fidelity and time.
    with torch.no_grad():
        mean = ctx.model.posterior(ctx.project(train_x)).mean
    return float(mean.max())


@register_acquisition("mes")
def build_mes(ctx: AcquisitionContext, X_pending: Tensor | None) -> AcquisitionFunction:
    """Cost-aware multi-fidelity max-value entropy search (BoTorch)."""
    s = ctx.settings
    model = ctx.model
    if X_pending is not None and s.pending == "believer":
        model = _believer(model, X_pending)
        X_pending = None
    return qMultiFidelityMaxValueEntropy(
        model=model,
        candidate_set=ctx.candidate_set,
        num_fantasies=s.num_fantasies,
        num_mv_samples=s.num_mv_samples,
        num_y_samples=s.num_y_samples,
        X_pending=X_pending,
        cost_aware_utility=ctx.cost_utility,
        project=ctx.project,
    )


@register_acquisition("mfkg")
def build_mfkg(ctx: AcquisitionContext, X_pending: Tensor | None) -> AcquisitionFunction:
    """Cost-aware multi-fidelity knowledge gradient (one-shot, BoTorch)."""
    s = ctx.settings
    _, current_value = optimize_acqf(
        PosteriorMean(ctx.model),
        bounds=ctx.bounds,
        q=1,
        num_restarts=s.num_restarts,
        raw_samples=s.raw_samples,
        fixed_features=ctx.target,
        options={"maxiter": s.maxiter},
    )
    return qMultiFidelityKnowledgeGradient(
        model=ctx.model,
        num_fantasies=s.num_fantasies,
        current_value=current_value,
        cost_aware_utility=ctx.cost_utility,
        project=ctx.project,
        X_pending=X_pending,
    )


@register_acquisition("ucb")
def build_ucb(ctx: AcquisitionContext, X_pending: Tensor | None) -> AcquisitionFunction:
    """Cost-weighted UCB (`CostWeightedUCB`)."""
    return CostWeightedUCB(
        ctx.model,
        beta=ctx.settings.beta,
        incumbent=_incumbent(ctx),
        cost_utility=ctx.cost_utility,
        project=ctx.project,
        X_pending=X_pending,
    )


def fit_affine_cost(
    fidelity_values: Sequence[float], costs: Sequence[float | None], weights: Sequence[float]
) -> tuple[float, float]:
    """Fit ``cost(s) = fixed + slope * s`` to per-fidelity cost estimates.

    Weighted least squares over the fidelities with an estimate, with ``slope >= 0`` and
    ``fixed`` at least 1e-3 of the largest cost (InverseCostWeightedUtility needs strictly
    positive costs). One estimate gives a flat model; none gives ``(1, 0)``.

    Args:
        fidelity_values: ``K`` fidelity values in ``[0, 1]``.
        costs: ``K`` cost estimates (None where unknown).
        weights: ``K`` least-squares weights (e.g. observation counts).

    Returns:
        ``(fixed_cost, slope)``.
    """
    pts = [
        (s, c, w)
        for s, c, w in zip(fidelity_values, costs, weights, strict=True)
        if c is not None and w > 0
    ]
    if not pts:
        return 1.0, 0.0
    s = np.array([p[0] for p in pts])
    c = np.array([p[1] for p in pts])
    w = np.array([p[2] for p in pts])
    floor = 1e-3 * float(c.max()) if c.max() > 0 else 1e-6
    if len(pts) == 1 or np.ptp(s) == 0:
        return max(float(np.average(c, weights=w)), floor), 0.0
    s_bar, c_bar = np.average(s, weights=w), np.average(c, weights=w)
    slope = float(np.sum(w * (s - s_bar) * (c - c_bar)) / np.sum(w * (s - s_bar) ** 2))
    slope = max(slope, 0.0)
    fixed = float(c_bar - slope * s_bar)
    if fixed < floor:
        # Refit the slope through (0, floor) so both stay consistent with the data.
        fixed = floor
        slope = max(float(np.sum(w * s * (c - floor)) / np.sum(w * s * s)), 0.0)
    return fixed, slope


def kernel_relevance(kernel: Kernel, columns: Sequence[int], num_inputs: int) -> np.ndarray:
    """Relevance of input ``columns`` to a (composite) kernel: ARD inverse length scales.

    Walks the kernel tree (products, sums, scale kernels, ...) and, for every kernel with a
    length scale, maps its length scales to model input columns: through the kernel's own
    ``active_dims``, else the nearest enclosing kernel's (a ``ScaleKernel`` copies its base
    kernel's), else all ``num_inputs`` columns; a single (non-ARD) length scale applies to
    all of its columns. A column's relevance is ``sqrt(sum 1 / l^2)`` over the kernels that
    read it, which for a product of RBF kernels is exactly the inverse of the effective
    length scale. Columns no kernel reads get 0.

    Length scales are in the units the kernel sees (after the model's input transform; the
    controller's theta columns are the unit cube both before and after ``Normalize``).

    Args:
        kernel: the model's ``covar_module``.
        columns: the model input columns to report (e.g. the theta columns).
        num_inputs: ``D``, the number of model input columns.

    Returns:
        ``len(columns)`` non-negative relevances, in the order of ``columns``.
    """
    index = {int(c): i for i, c in enumerate(columns)}
    inv_sq = np.zeros(len(index))

    def walk(k: torch.nn.Module, inherited: list[int]) -> None:
        cols = inherited
        if isinstance(k, Kernel) and k.active_dims is not None:
            cols = [int(c) for c in k.active_dims.reshape(-1).tolist()]
        if isinstance(k, Kernel) and k.has_lengthscale:
            ls = k.lengthscale.detach().to(DTYPE)
            ls = ls.reshape(-1, ls.shape[-1]).mean(dim=0).cpu().numpy()  # over batch shapes
            if ls.size == 1:
                ls = np.full(len(cols), float(ls[0]))
            if ls.size == len(cols):
                for col, scale in zip(cols, ls, strict=True):
                    if col in index and math.isfinite(scale) and scale > 0:
                        inv_sq[index[col]] += 1.0 / scale**2
        for child in k.children():
            walk(child, cols)

    walk(kernel, list(range(num_inputs)))
    return np.sqrt(inv_sq)


@dataclass
class _Observations:
    x: list[list[float]] = field(default_factory=list)
    fidelity: list[int] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    unstable: list[bool] = field(default_factory=list)


class MultiFidelityBO:
    """Cost-aware multi-fidelity BO over the unit cube with discrete, ordered fidelities.

    Fidelity ``k`` of ``K`` (cheapest first, the last is the target) is the GP input value
    ``k / (K - 1)`` (1.0 when ``K == 1``). Observation time is the index of the `observe`
    call unless given; with ``settings.drift`` it is a GP input and the target of every
    acquisition is the top fidelity at the latest observed time.

    Args:
        dim: ``d``, the number of theta dimensions (unit cube).
        fidelities: names of the fidelities, cheapest first; the last is the target.
        seed: seeds Sobol designs, candidate sets, restarts and MC samples.
        settings: knobs (acquisition name, budgets of the inner optimizers, fallback rule).
        cost_prior: per-fidelity cost guesses used until a fidelity's cost is measured.

    Attributes:
        diagnostics: what the last `propose` did: ``acquisition`` (name, or ``sobol`` for the
            initial design), ``fallback`` (None, ``initial_design``, ``zero_acquisition`` or
            ``stuck_low_fidelity``), ``fallback_slots`` (batch slots the fallback chose),
            ``fidelities`` (chosen indices), ``acq_values`` (value of each chosen point),
            ``acq_values_by_fidelity`` (per slot, the best value found at each fidelity),
            ``info_gain_per_cost`` (MES: information gain about the max value per unit cost,
            per slot; None where not MES), ``cost_model`` (``fixed_cost``, ``slope``),
            ``dominated`` (fidelities skipped as no cheaper than the target, `dominated`),
            ``feasibility`` (whether P(stable) weighted the acquisition), ``fit_s``,
            ``propose_s``, ``n_obs`` and ``rounds_without_target``.
        model: the GP fitted by the last `propose` (None before the first fit).
    """

    def __init__(
        self,
        dim: int,
        fidelities: Sequence[str],
        *,
        seed: int = 0,
        settings: MFBOSettings | None = None,
        cost_prior: Sequence[float] | None = None,
    ) -> None:
        if dim < 1 or not fidelities:
            raise ValueError("need dim >= 1 and at least one fidelity")
        self.dim = dim
        self.fidelities = list(fidelities)
        self.settings = settings or MFBOSettings()
        if self.settings.acquisition not in ACQUISITIONS:
            raise ValueError(
                f"unknown acquisition {self.settings.acquisition!r} "
                f"(known: {', '.join(sorted(ACQUISITIONS))})"
            )
        if cost_prior is not None and len(cost_prior) != len(self.fidelities):
            raise ValueError("cost_prior needs one cost per fidelity")
        self.cost_prior = None if cost_prior is None else [float(c) for c in cost_prior]
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.obs = _Observations()
        self.hyperparameters: dict[str, Any] | None = None
        self.n_observe_calls = 0
        self.rounds_without_target = 0
        self.diagnostics: dict[str, Any] = {}
        self.model: Model | None = None
        """The GP fitted by the last `propose` (not checkpointed: refitted on demand)."""

    # ----------------------------------------------------------------- layout
    @property
    def num_fidelities(self) -> int:
        return len(self.fidelities)

    @property
    def fidelity_values(self) -> list[float]:
        """GP input value of each fidelity, cheapest first, the target is 1.0."""
        k = self.num_fidelities
        return [1.0] if k == 1 else [i / (k - 1) for i in range(k)]

    @property
    def _fid_dim(self) -> int:
        return self.dim

    @property
    def _time_dim(self) -> int | None:
        return self.dim + 1 if self.settings.drift else None

    @property
    def _D(self) -> int:
        return self.dim + (2 if self.settings.drift else 1)

    @property
    def _window(self) -> slice:
        """The observations the GP is fitted to (`MFBOSettings.max_observations`)."""
        return slice(max(0, self.num_observations - self.settings.max_observations), None)

    def _inputs(self) -> Tensor:
        """``n x D`` GP inputs of the observations in the window."""
        w = self._window
        x = torch.tensor(self.obs.x[w], dtype=DTYPE).reshape(-1, self.dim)
        s = torch.tensor([self.fidelity_values[k] for k in self.obs.fidelity[w]], dtype=DTYPE)
        cols = [x, s.unsqueeze(-1)]
        if self.settings.drift:
            cols.append(torch.tensor(self.obs.time[w], dtype=DTYPE).unsqueeze(-1))
        return torch.cat(cols, dim=-1)

    def _target(self) -> dict[int, float]:
        target = {self._fid_dim: 1.0}
        if self._time_dim is not None:
            target[self._time_dim] = max(self.obs.time) if self.obs.time else 0.0
        return target

    def relevance(self) -> np.ndarray | None:
        """Per theta dimension, how much the fitted GP depends on it (``d`` floats >= 0).

        The inverse ARD length scale of each theta column in the GP's covariance
        (`kernel_relevance`; the fidelity and time columns are left out), in the unit cube's
        units: about 1 / (the distance over which the objective changes). A dimension the
        objective does not depend on gets a long length scale and a small relevance.

        Read from `model`, the GP the last `propose` fitted (the one that chose that
        batch). That fit is deterministic given the observations and the warm-start
        hyperparameters, both in `state_dict`, so after a restore the next `propose` fits
        the same GP and this returns what the uninterrupted optimizer's would. None when no
        GP was fitted yet (the initial design, or a restored optimizer before its next
        `propose`).
        """
        if self.model is None:
            return None
        theta_cols = list(range(self.dim))
        return kernel_relevance(self.model.covar_module, theta_cols, self._D)

    # ------------------------------------------------------------ observations
    def observe(
        self,
        x: np.ndarray | Sequence[Sequence[float]],
        fidelity: Sequence[int],
        y: Sequence[float],
        cost: Sequence[float],
        unstable: Sequence[bool] | None = None,
        time: float | None = None,
    ) -> None:
        """Record a batch of results.

        Args:
            x: ``n x d`` theta points in the unit cube.
            fidelity: ``n`` fidelity indices into ``fidelities``.
            y: ``n`` values (higher is better; non-finite values are dropped).
            cost: ``n`` measured costs (e.g. seconds), used to fit the cost model.
            unstable: ``n`` flags, True where the run was unstable (feasibility model).
            time: the batch's time stamp; default: the number of earlier `observe` calls.
        """
        xs = np.asarray(x, dtype=float).reshape(-1, self.dim)
        n = xs.shape[0]
        flags = [False] * n if unstable is None else [bool(u) for u in unstable]
        if not (len(fidelity) == len(y) == len(cost) == len(flags) == n):
            raise ValueError("x, fidelity, y, cost and unstable need the same length")
        if np.any(xs < 0) or np.any(xs > 1):
            raise ValueError("x must lie in the unit cube")
        t = float(self.n_observe_calls if time is None else time)
        for i in range(n):
            k = int(fidelity[i])
            if not 0 <= k < self.num_fidelities:
                raise ValueError(f"fidelity index {k} out of range")
            if not math.isfinite(float(y[i])):
                continue
            self.obs.x.append([float(v) for v in xs[i]])
            self.obs.fidelity.append(k)
            self.obs.y.append(float(y[i]))
            self.obs.cost.append(float(cost[i]))
            self.obs.time.append(t)
            self.obs.unstable.append(flags[i])
        self.n_observe_calls += 1

    @property
    def num_observations(self) -> int:
        return len(self.obs.y)

    def _cost_estimates(self) -> tuple[list[float | None], list[float]]:
        """Per fidelity, the mean measured cost (else the prior, else None) and its weight."""
        means: list[float | None] = []
        counts: list[float] = []
        for k in range(self.num_fidelities):
            c = [c for c, f in zip(self.obs.cost, self.obs.fidelity, strict=True) if f == k]
            if c:
                means.append(float(np.mean(c)))
                counts.append(float(len(c)))
            elif self.cost_prior is not None:
                means.append(self.cost_prior[k])
                counts.append(1.0)
            else:
                means.append(None)
                counts.append(0.0)
        return means, counts

    def cost_model(self) -> tuple[float, float]:
        """``(fixed_cost, slope)`` of the affine cost model fitted to the measured costs."""
        means, counts = self._cost_estimates()
        return fit_affine_cost(self.fidelity_values, means, counts)

    def dominated(self) -> list[int]:
        """Lower fidelities whose estimated cost is at least the target's (ascending).

        Such a fidelity tells less about the target than the target itself does and saves
        nothing, so proposals skip it. The affine cost model cannot say this: its slope is
        clamped at zero, which makes such a fidelity exactly as cheap as the target. A
        fidelity without a cost estimate, or a target without one, dominates nothing. With
        measured costs a skipped fidelity is not measured again; it comes back when the
        target's mean cost rises above its own.
        """
        means, _ = self._cost_estimates()
        top = means[-1]
        if top is None:
            return []
        return [k for k, c in enumerate(means[:-1]) if c is not None and c >= top]

    # ---------------------------------------------------------------- propose
    def propose(
        self,
        q: int = 4,
        budget_remaining: float | None = None,
        candidates: np.ndarray | None = None,
    ) -> list[tuple[np.ndarray, int]]:
        """The next batch: ``q`` pairs of (theta: ``d`` array in the unit cube, fidelity index).

        Args:
            q: batch size.
            budget_remaining: remaining cost budget; the stuck-at-low-fidelity fallback only
                forces top-fidelity proposals while it covers one (None: unlimited).
            candidates: ``m x d`` thetas to choose from instead of the whole cube (e.g. the
                thetas system identification found consistent with the real system); each
                is chosen at most once while the batch has others left.

        Returns:
            ``q`` proposals, in the order they were chosen.
        """
        if q < 1:
            raise ValueError("q must be >= 1")
        if candidates is not None:
            candidates = np.asarray(candidates, dtype=float).reshape(-1, self.dim)
            if not len(candidates):
                raise ValueError("candidates: need at least one theta")
        seed = int(self.rng.integers(2**31 - 1))
        t0 = time.perf_counter()
        with self._torch_env(seed):
            if self.num_observations < max(self.settings.n_init, 2):
                out = self._initial_design(q, seed, candidates)
            else:
                out = self._propose_bo(q, seed, budget_remaining, candidates)
        self.diagnostics["propose_s"] = time.perf_counter() - t0
        top = self.num_fidelities - 1
        if any(k == top for _, k in out):
            self.rounds_without_target = 0
        else:
            self.rounds_without_target += 1
        self.diagnostics["rounds_without_target"] = self.rounds_without_target
        return out

    @contextmanager
    def _torch_env(self, seed: int) -> Iterator[None]:
        """Seed torch (without touching the caller's RNG) and bound its thread count."""
        threads = torch.get_num_threads()
        try:
            if self.settings.num_threads > 0:
                torch.set_num_threads(self.settings.num_threads)
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                yield
        finally:
            torch.set_num_threads(threads)

    def _initial_design(
        self, q: int, seed: int, candidates: np.ndarray | None = None
    ) -> list[tuple[np.ndarray, int]]:
        if candidates is None:
            pts = draw_sobol_samples(
                bounds=torch.tensor([[0.0] * self.dim, [1.0] * self.dim], dtype=DTYPE),
                n=q,
                q=1,
                seed=seed,
            ).squeeze(1)
        else:  # distinct candidates while they last, in a seeded order
            order = np.random.default_rng(seed).permutation(len(candidates))
            pts = torch.tensor(candidates[np.resize(order, q)], dtype=DTYPE)
        dominated = self.dominated()
        usable = [k for k in reversed(range(self.num_fidelities)) if k not in dominated]
        fids = [usable[i % len(usable)] for i in range(q)]  # the target first, then cheaper ones
        self.diagnostics = {
            "acquisition": "sobol",
            "fallback": "initial_design",
            "fallback_slots": list(range(q)),
            "fidelities": fids,
            "acq_values": [],
            "acq_values_by_fidelity": [],
            "info_gain_per_cost": [],
            "fit_s": 0.0,
            "dominated": dominated,
        }
        return [(pts[i].numpy().copy(), fids[i]) for i in range(q)]

    def _fit(self) -> tuple[Model, FeasibilityModel | None, float]:
        t0 = time.perf_counter()
        model, self.hyperparameters = fit_mf_gp(
            self._inputs(),
            torch.tensor(self.obs.y[self._window], dtype=DTYPE),
            fidelity_dim=self._fid_dim,
            time_dim=self._time_dim,
            warm_start=self.hyperparameters,
            maxiter=self.settings.gp_maxiter,
        )
        feas = None
        # Stability does not drift: unstable results older than the window still count.
        start = self._window.start
        rows = [i for i in range(start) if self.obs.unstable[i]] + list(
            range(start, self.num_observations)
        )
        unstable = [self.obs.unstable[i] for i in rows]
        if self.settings.use_feasibility and any(unstable):
            x = torch.tensor([self.obs.x[i] for i in rows], dtype=DTYPE)
            feas = fit_feasibility(x, unstable, seed=self.seed)
        return model, feas, time.perf_counter() - t0

    def _context(
        self, model: Model, seed: int, candidates: np.ndarray | None = None
    ) -> AcquisitionContext:
        D = self._D
        target = self._target()
        project = partial(project_to_target_fidelity, target_fidelities=target, d=D)
        fixed, slope = self.cost_model()
        cost_model = AffineFidelityCostModel(
            fidelity_weights={self._fid_dim: slope}, fixed_cost=fixed
        )
        bounds = torch.zeros(2, D, dtype=DTYPE)
        bounds[1] = 1.0
        for col, v in target.items():
            if col != self._fid_dim:
                bounds[:, col] = v
        choices = None if candidates is None else torch.tensor(candidates, dtype=DTYPE)
        if choices is None:
            theta = draw_sobol_samples(
                bounds=bounds[:, : self.dim], n=self.settings.candidate_size, q=1, seed=seed
            ).squeeze(1)
        else:
            theta = choices
        candidate_set = project(
            torch.cat([theta, torch.zeros(theta.shape[0], D - self.dim, dtype=DTYPE)], -1)
        )
        return AcquisitionContext(
            model=model,
            dim=D,
            fidelity_dim=self._fid_dim,
            target=target,
            project=project,
            cost_utility=InverseCostWeightedUtility(cost_model=cost_model),
            candidate_set=candidate_set,
            bounds=bounds,
            settings=self.settings,
            choices=choices,
        )

    def _weighted(
        self, acqf: AcquisitionFunction, feas: FeasibilityModel | None
    ) -> AcquisitionFunction:
        if feas is None:
            return acqf
        return FeasibilityWeightedAcquisition(acqf, feas, theta_dims=range(self.dim))

    def _optimize_at(
        self, acqf: AcquisitionFunction, ctx: AcquisitionContext, k: int, seed: int
    ) -> tuple[Tensor, float]:
        """Best ``1 x D`` point of ``acqf`` at fidelity ``k`` and its value (multi-start)."""
        fixed = dict(ctx.target)
        fixed[self._fid_dim] = self.fidelity_values[k]
        cand, value = optimize_acqf(
            acqf,
            bounds=ctx.bounds,
            q=1,
            num_restarts=self.settings.num_restarts,
            raw_samples=self.settings.raw_samples,
            fixed_features=fixed,
            options={"seed": seed, "maxiter": max(self.settings.maxiter, 1)},
        )
        return cand.detach(), float(value)

    def _optimize_slot(
        self,
        acqf: AcquisitionFunction,
        ctx: AcquisitionContext,
        fidelities: Sequence[int],
        seed: int,
        taken: Sequence[int] = (),
    ) -> tuple[Tensor, float, int, list[float | None]]:
        """Choose one ``(x, fidelity)`` for a batch slot.

        Non-one-shot acquisitions (MES, UCB) are evaluated on ``raw_samples`` Sobol thetas at
        every allowed fidelity in one batched call; the best fidelity's top
        ``num_restarts`` points are then polished by L-BFGS-B (``maxiter`` iterations, none
        when 0). One-shot acquisitions (KG) are optimized per fidelity by ``optimize_acqf``.
        With ``ctx.choices`` every acquisition is evaluated on those thetas (the rows in
        ``taken`` excluded while others remain) and nothing is polished.

        Returns:
            The ``1 x D`` point, its value, its fidelity index and the best value found at
            each fidelity (None where not evaluated).
        """
        s = self.settings
        row: list[float | None] = [None] * self.num_fidelities
        one_shot = isinstance(acqf, OneShotAcquisitionFunction) or (
            isinstance(acqf, FeasibilityWeightedAcquisition)
            and isinstance(acqf.acq_function, OneShotAcquisitionFunction)
        )
        if ctx.choices is not None:
            return self._choose_slot(acqf, ctx, fidelities, taken, one_shot)
        if one_shot:
            best: tuple[Tensor, float, int] | None = None
            for k in fidelities:
                cand, value = self._optimize_at(acqf, ctx, k, seed + k)
                row[k] = value
                if best is None or value > best[1]:
                    best = (cand, value, k)
            assert best is not None
            return best[0], best[1], best[2], row
        theta = draw_sobol_samples(
            bounds=ctx.bounds[:, : self.dim], n=s.raw_samples, q=1, seed=seed
        ).squeeze(1)
        base = ctx.project(
            torch.cat([theta, torch.zeros(theta.shape[0], ctx.dim - self.dim, dtype=DTYPE)], -1)
        )
        X = []
        for k in fidelities:
            Xk = base.clone()
            Xk[:, self._fid_dim] = self.fidelity_values[k]
            X.append(Xk)
        X_raw = torch.cat(X, dim=0).unsqueeze(-2)  # (K' N) x 1 x D
        with torch.no_grad():
            vals = torch.cat([acqf(chunk) for chunk in X_raw.split(512)])
        vals = torch.nan_to_num(vals, nan=-math.inf).reshape(len(fidelities), -1)
        for i, k in enumerate(fidelities):
            row[k] = float(vals[i].max())
        i_best = int(vals.max(dim=-1).values.argmax())
        k_best = fidelities[i_best]
        top = vals[i_best].topk(min(s.num_restarts, vals.shape[-1])).indices
        cand, value = X_raw[i_best * len(base) + top[0]], float(vals[i_best, top[0]])
        if s.maxiter > 0 and math.isfinite(value):
            fixed = dict(ctx.target)
            fixed[self._fid_dim] = self.fidelity_values[k_best]
            polished, pvalue = optimize_acqf(
                acqf,
                bounds=ctx.bounds,
                q=1,
                num_restarts=len(top),
                batch_initial_conditions=X_raw[i_best * len(base) + top],
                fixed_features=fixed,
                options={"maxiter": s.maxiter},
                retry_on_optimization_warning=False,
            )
            if float(pvalue) >= value:
                cand, value = polished.detach(), float(pvalue)
                row[k_best] = value
        return cand.reshape(1, -1), value, k_best, row

    def _choose_slot(
        self,
        acqf: AcquisitionFunction,
        ctx: AcquisitionContext,
        fidelities: Sequence[int],
        taken: Sequence[int],
        one_shot: bool,
    ) -> tuple[Tensor, float, int, list[float | None]]:
        """`_optimize_slot` over the discrete ``ctx.choices``: the best untaken row at the
        best fidelity. A one-shot acquisition (KG), whose fantasies need a continuous domain,
        is replaced by its current-value form: the posterior mean at the target fidelity."""
        assert ctx.choices is not None
        rows = [i for i in range(len(ctx.choices)) if i not in set(taken)]
        rows = rows or list(range(len(ctx.choices)))
        score = acqf
        if one_shot:
            score = PosteriorMean(ctx.model)
            fidelities = [self.num_fidelities - 1]
        base = ctx.project(
            torch.cat(
                [ctx.choices[rows], torch.zeros(len(rows), ctx.dim - self.dim, dtype=DTYPE)], -1
            )
        )
        row: list[float | None] = [None] * self.num_fidelities
        best: tuple[int, float, int] | None = None
        for k in fidelities:
            X = base.clone()
            X[:, self._fid_dim] = self.fidelity_values[k]
            with torch.no_grad():
                vals = torch.nan_to_num(score(X.unsqueeze(-2)), nan=-math.inf)
            i = int(vals.argmax())
            row[k] = float(vals[i])
            if best is None or row[k] > best[1]:
                best = (i, float(vals[i]), k)
        assert best is not None
        i, value, k = best
        cand = base[i : i + 1].clone()
        cand[:, self._fid_dim] = self.fidelity_values[k]
        return cand, value, k, row

    def _propose_bo(
        self,
        q: int,
        seed: int,
        budget_remaining: float | None,
        candidates: np.ndarray | None = None,
    ) -> list[tuple[np.ndarray, int]]:
        s = self.settings
        model, feas, fit_s = self._fit()
        self.model = model
        ctx = self._context(model, seed, candidates)
        builder = ACQUISITIONS[s.acquisition]
        top = self.num_fidelities - 1
        fixed_cost, slope = self.cost_model()
        top_cost = fixed_cost + slope * 1.0
        n_forced = max(1, math.ceil(s.target_share * q))
        may_force = (
            self.num_fidelities > 1
            and self.rounds_without_target + 1 >= s.stuck_rounds
            and (budget_remaining is None or budget_remaining >= top_cost)
        )
        dominated = self.dominated()
        all_fids = [k for k in range(self.num_fidelities) if k not in dominated]
        pending: list[Tensor] = []
        chosen: list[tuple[np.ndarray, int]] = []
        values: list[float] = []
        by_fidelity: list[list[float | None]] = []
        info_gain_per_cost: list[float | None] = []
        fallback_slots: list[int] = []
        fallback: str | None = None
        zero_mode = False
        taken: list[int] = []  # rows of ctx.choices already in the batch
        for slot in range(q):
            X_pending = torch.cat(pending, dim=0) if pending else None
            slot_seed = seed + 1000 * (slot + 1)
            n_top = sum(k == top for _, k in chosen)
            forced = may_force and q - slot <= n_forced - n_top
            row: list[float | None] = [None] * self.num_fidelities
            best: tuple[Tensor, float, int] | None = None
            if not zero_mode and not forced:
                acqf = self._weighted(builder(ctx, X_pending), feas)
                cand, value, k, row = self._optimize_slot(acqf, ctx, all_fids, slot_seed, taken)
                if not math.isfinite(value) or abs(value) < s.zero_tol:
                    zero_mode = True
                    fallback = "zero_acquisition"
                else:
                    best = (cand, value, k)
            if best is None:
                if forced and fallback is None:
                    fallback = "stuck_low_fidelity"
                acqf = self._weighted(build_ucb(ctx, X_pending), feas)
                cand, value, _, _ = self._optimize_slot(acqf, ctx, [top], slot_seed, taken)
                best = (cand, value, top)
                fallback_slots.append(slot)
            cand, value, k = best
            if ctx.choices is not None:
                taken.append(int(((ctx.choices - cand[0, : self.dim]) ** 2).sum(-1).argmin()))
            pending.append(cand)
            chosen.append((cand[0, : self.dim].numpy().copy(), k))
            values.append(value)
            by_fidelity.append(row)
            mes_slot = s.acquisition == "mes" and slot not in fallback_slots
            info_gain_per_cost.append(value if mes_slot else None)
        self.diagnostics = {
            "acquisition": s.acquisition,
            "fallback": fallback,
            "fallback_slots": fallback_slots,
            "fidelities": [k for _, k in chosen],
            "acq_values": values,
            "acq_values_by_fidelity": by_fidelity,
            "info_gain_per_cost": info_gain_per_cost,
            "cost_model": {"fixed_cost": fixed_cost, "slope": slope},
            "dominated": dominated,
            "feasibility": feas is not None,
            "fit_s": fit_s,
            "n_obs": self.num_observations,
        }
        return chosen

    def recommend(self) -> np.ndarray:
        """The ``d``-dim theta maximizing the posterior mean at the target (fit on demand)."""
        if self.num_observations < 2:
            return np.full(self.dim, 0.5)
        seed = int(self.seed + 7919 * self.num_observations)
        with self._torch_env(seed):
            model, _, _ = self._fit()
            ctx = self._context(model, seed)
            cand, _ = self._optimize_at(PosteriorMean(model), ctx, self.num_fidelities - 1, seed)
        return cand[0, : self.dim].numpy().copy()

    def posterior_slice(
        self, dims: Sequence[int], n: int = 25, base: Sequence[float] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and std at the target fidelity and the latest time on a grid.

        The grid spans theta dims ``dims`` (one or two) over ``[0, 1]`` with ``n`` points
        each; the other dims sit at ``base`` (default: the cube's center). Returns two arrays
        of shape ``n x n`` (``[i, j]``: ``dims[0]`` at grid point i, ``dims[1]`` at j) or
        ``1 x n`` for one dim, in the objective's units. Uses the last `propose`'s GP.
        """
        if not 1 <= len(dims) <= 2:
            raise ValueError("posterior_slice takes one or two dims")
        model = self.model
        if model is None:
            if self.num_observations < 2:
                raise ValueError("no GP yet: needs at least 2 observations")
            # A temporary fit: a picture must not change the warm start the next propose uses.
            saved = self.hyperparameters
            with self._torch_env(self.seed):
                model, _, _ = self._fit()
            self.hyperparameters = saved
        axis = np.linspace(0.0, 1.0, n)
        grids = np.meshgrid(*([axis] * len(dims)), indexing="ij")
        pts = np.tile(
            np.full(self.dim, 0.5) if base is None else np.asarray(base),
            (axis.size ** len(dims), 1),
        )
        for dim, grid in zip(dims, grids, strict=True):
            pts[:, dim] = grid.reshape(-1)
        X = torch.zeros(pts.shape[0], self._D, dtype=DTYPE)
        X[:, : self.dim] = torch.as_tensor(pts, dtype=DTYPE)
        for col, v in self._target().items():
            X[:, col] = v
        with torch.no_grad():
            post = model.posterior(X)
            mean = post.mean.squeeze(-1).numpy()
            std = post.variance.clamp_min(0).sqrt().squeeze(-1).numpy()
        shape = (n, n) if len(dims) == 2 else (1, n)
        return mean.reshape(shape), std.reshape(shape)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything `propose` depends on, as plain data (JSON-serializable)."""
        return {
            "version": 1,
            "dim": self.dim,
            "fidelities": list(self.fidelities),
            "seed": self.seed,
            "settings": asdict(self.settings),
            "cost_prior": self.cost_prior,
            "observations": asdict(self.obs),
            "hyperparameters": self.hyperparameters,
            "n_observe_calls": self.n_observe_calls,
            "rounds_without_target": self.rounds_without_target,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from `state_dict`; seed, settings and cost prior come from the state.

        The layout (``dim`` and ``fidelities``) must match this optimizer's. The next
        `propose` refits the GP warm-started from the saved hyperparameters and draws its
        seed from the restored numpy RNG (torch is re-seeded from it inside every call), so
        it returns exactly what the uninterrupted optimizer would.
        """
        if state["dim"] != self.dim or list(state["fidelities"]) != self.fidelities:
            raise ValueError("state was saved for another dim or fidelity list")
        self.seed = int(state["seed"])
        self.settings = MFBOSettings(**state["settings"])
        self.cost_prior = state["cost_prior"]
        self.obs = _Observations(**{k: list(v) for k, v in state["observations"].items()})
        self.hyperparameters = state["hyperparameters"]
        self.n_observe_calls = int(state["n_observe_calls"])
        self.rounds_without_target = int(state["rounds_without_target"])
        self.model = None  # fitted for another state; the next `propose` refits
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]


__all__ = [
    "ACQUISITIONS",
    "AcquisitionContext",
    "CostWeightedUCB",
    "MFBOSettings",
    "MultiFidelityBO",
    "build_mes",
    "build_mfkg",
    "build_ucb",
    "fit_affine_cost",
    "kernel_relevance",
    "register_acquisition",
]
