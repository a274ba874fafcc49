"""Where in Theta the reality proxy lies: system identification from real transitions.

A family's model at theta is scored by how well it predicts what the real system did: from
each real observation, the model (with theta's latency and deadzone applied to the recorded
actions) is rolled out open loop for `horizon` control steps with ``mujoco.rollout``, and the
squared error of its observations against the recorded ones is averaged over windows and
steps. Observation noise is isotropic in observation units, so the plain squared error is
the Gaussian log-likelihood up to constants; multi-step windows let a parameter's effect
grow over the window while the noise stays the same.

`identify` searches the unit cube for low-error thetas with the cross-entropy method (CEM)
and returns the thetas consistent with the data (error within a tolerance of the best) and
the box they span. A parameter the data do not constrain (observation noise, a damping far
below the dynamics' scale) keeps a wide spread among them and so a wide box; one the data
pin down (latency) gets a narrow one. Parameters that trade off along a ridge of equal
dynamics (masses, gain, gravity) keep wide boxes while the consistent thetas lie on the
ridge. Pure functions: the caller owns the trajectories and the seed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np
from mujoco import rollout
from scipy.stats import qmc

from evaluators.rollout import Trajectory
from generators import BatchState, ChannelEffects, Family, ModelSource, ParamSpace, Task

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS
_BAD = 1e12
"""Error of a candidate whose prediction diverged (non-finite)."""


@dataclass(frozen=True)
class Windows:
    """Fixed prediction windows cut from real trajectories, shared by every candidate.

    Attributes:
        start_obs: Observation each window starts from, ``w x o``.
        targets: The recorded observations of the next ``horizon`` steps, ``w x h x o``.
        actions: Recorded (clipped) actions from ``max_latency`` steps before the start
            to the window's last step, ``w x (max_latency + h) x nu``; zeros before an
            episode's first step, as a latency FIFO starts.
    """

    start_obs: np.ndarray
    targets: np.ndarray
    actions: np.ndarray
    max_latency: int

    @property
    def horizon(self) -> int:
        return int(self.targets.shape[1])

    def __len__(self) -> int:
        return int(self.start_obs.shape[0])


def make_windows(
    trajectories: Sequence[Trajectory],
    horizon: int,
    max_latency: int,
    max_windows: int,
    rng: np.random.Generator,
) -> Windows:
    """Cut every ``horizon``-step window of ``trajectories`` (a trajectory's transitions
    into an unstable end are dropped) and keep a uniform draw of at most ``max_windows``.

    Raises:
        ValueError: If no trajectory has ``horizon`` stable transitions.
    """
    if horizon < 1:
        raise ValueError(f"horizon: must be >= 1 (got {horizon})")
    starts, targets, actions = [], [], []
    for traj in trajectories:
        obs, act = traj.observations, traj.actions
        steps = len(act) - (1 if traj.unstable else 0)
        if steps < horizon:
            continue
        padded = np.concatenate([np.zeros((max_latency, act.shape[1])), act[:steps]])
        for t in range(steps - horizon + 1):
            starts.append(obs[t])
            targets.append(obs[t + 1 : t + 1 + horizon])
            actions.append(padded[t : t + max_latency + horizon])
    if not starts:
        raise ValueError(f"no real trajectory has {horizon} stable transitions to identify from")
    keep = np.arange(len(starts))
    if len(keep) > max_windows:
        keep = np.sort(rng.choice(len(keep), size=max_windows, replace=False))
    return Windows(
        np.asarray(starts)[keep],
        np.asarray(targets)[keep],
        np.asarray(actions)[keep],
        max_latency,
    )


def prediction_errors(
    family: Family,
    space: ParamSpace,
    units: np.ndarray,
    windows: Windows,
    fidelity: str = "fine",
    source: ModelSource | None = None,
    threads: int = 1,
) -> np.ndarray:
    """Mean squared multi-step prediction error of the family's model at each unit point.

    Args:
        family: The family whose models predict (its task maps observations to states).
        space: The parameter space ``units`` live in.
        units: Candidate thetas, ``k x d`` in the unit cube.
        windows: The real data (`make_windows`).
        fidelity: The fidelity that predicts.
        source: Where models come from (made if omitted; pass one to reuse compiled bases).
        threads: Threads ``mujoco.rollout`` steps the windows on.

    Returns:
        ``k`` errors (sum over observation entries, mean over windows and steps), in squared
        observation units; a diverged prediction scores ``1e12``.
    """
    task = family.task
    state = task.state_from_observation(windows.start_obs)
    if state is None:
        raise ValueError(f"family {family.name!r}: observations do not determine the state")
    qpos, qvel = state
    source = source or ModelSource(family, slots=1)
    out = np.empty(len(units))
    for i, u in enumerate(np.asarray(units, dtype=float)):
        theta = family.space.complete(space.from_unit(space.snap(u)))
        model, _ = source.private(0, theta, fidelity)
        effects = ChannelEffects.from_theta(theta)
        out[i] = _error(task, model, effects, qpos, qvel, windows, threads)
    return out


def _error(
    task: Task,
    model: mujoco.MjModel,
    effects: ChannelEffects,
    qpos: np.ndarray,
    qvel: np.ndarray,
    windows: Windows,
    threads: int,
) -> float:
    """One model's mean squared prediction error over ``windows``."""

    w, h = len(windows), windows.horizon
    lag = effects.latency_steps
    if lag > windows.max_latency:
        raise ValueError(f"latency {lag} exceeds the windows' max_latency {windows.max_latency}")
    first = windows.max_latency - lag
    ctrl = windows.actions[:, first : first + h].copy()
    if effects.deadzone:
        bound = np.maximum(-model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1])
        ctrl[np.abs(ctrl) < effects.deadzone * bound] = 0.0
    substeps = task.n_substeps(model)
    control = np.repeat(ctrl, substeps, axis=1)
    data = [mujoco.MjData(model) for _ in range(max(threads, 1))]
    template = np.empty(mujoco.mj_stateSize(model, _FULL))
    mujoco.mj_getState(model, data[0], template, _FULL)
    initial = np.tile(template, (w, 1))
    nq, nv = model.nq, model.nv
    initial[:, 1 : 1 + nq] = qpos
    initial[:, 1 + nq : 1 + nq + nv] = qvel
    states, _ = rollout.rollout(model, data, initial, control)
    ends = states[:, substeps - 1 :: substeps]  # w x h x nstate, after each control step
    flat = ends.reshape(w * h, -1)
    # MuJoCo resets a simulation that blew up (time back to 0) and goes on: not a match.
    elapsed = np.tile(np.arange(1, h + 1) * substeps * model.opt.timestep, w)
    if not np.allclose(flat[:, 0], elapsed, rtol=1e-9, atol=1e-12):
        return _BAD
    qpos_end, qvel_end = flat[:, 1 : 1 + nq], flat[:, 1 + nq : 1 + nq + nv]
    batch = BatchState([model] * (w * h), flat[:, 0], qpos_end, qvel_end, np.zeros((w * h, 0)))
    predicted = task.observation_batch(batch)
    if predicted is None:  # a task without a batched observation: one row at a time
        scratch = data[0]
        rows = []
        for qp, qv in zip(qpos_end, qvel_end, strict=True):
            scratch.qpos[:], scratch.qvel[:] = qp, qv
            mujoco.mj_forward(model, scratch)
            rows.append(task.observation(model, scratch))
        predicted = np.asarray(rows)
    err = float(np.mean(np.sum((predicted.reshape(w, h, -1) - windows.targets) ** 2, axis=-1)))
    return err if np.isfinite(err) else _BAD


@dataclass(frozen=True)
class Identification:
    """Where the real data put theta (unit cube).

    Attributes:
        low, high: The identified box per parameter, ``d`` each.
        mean, std: The ``elites`` best thetas' mean and standard deviation per parameter.
        best: The lowest-error point found, ``d``.
        best_error: Its prediction error (squared observation units).
        nominal_error: The error of the space's nominal theta, for reference.
        consistent: Scored thetas within the tolerance of the best, lowest error first,
            ``m x d`` (they span the box; the best is the first).
        consistent_errors: Their errors, ``m``.
        windows: Prediction windows used.
        evaluations: Candidate thetas scored.
        seconds: Wall time of the search.
    """

    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    best: np.ndarray
    best_error: float
    nominal_error: float
    consistent: np.ndarray
    consistent_errors: np.ndarray
    windows: int
    evaluations: int
    seconds: float

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Identification:
        arrays = ("low", "high", "mean", "std", "best", "consistent", "consistent_errors")
        return cls(
            **{k: np.asarray(d[k], dtype=float) for k in arrays},
            best_error=float(d["best_error"]),
            nominal_error=float(d["nominal_error"]),
            windows=int(d["windows"]),
            evaluations=int(d["evaluations"]),
            seconds=float(d["seconds"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "best": self.best.tolist(),
            "best_error": self.best_error,
            "nominal_error": self.nominal_error,
            "consistent": self.consistent.tolist(),
            "consistent_errors": self.consistent_errors.tolist(),
            "windows": self.windows,
            "evaluations": self.evaluations,
            "seconds": self.seconds,
        }


def identify(
    family: Family,
    space: ParamSpace,
    trajectories: Sequence[Trajectory],
    seed: int,
    *,
    horizon: int = 5,
    rounds: int = 4,
    population: int = 64,
    elites: int = 8,
    tolerance: float = 0.1,
    min_halfwidth: float = 0.1,
    max_windows: int = 384,
    fidelity: str = "fine",
    threads: int = 2,
) -> Identification:
    """Cross-entropy search of the unit cube for thetas that predict ``trajectories``.

    The first round is a scrambled Sobol design over the whole cube; each later round
    draws ``population`` thetas from a normal per parameter fitted to the ``elites`` best
    scored so far (clipped to the cube). The box spans every scored theta whose error is
    within ``1 + tolerance`` times the best one (the thetas the data cannot tell from the best:
    correlated parameters such as pole mass, length and gravity spread along a ridge), and
    at least ``min_halfwidth`` on each side of the best point, clipped to ``[0, 1]``.

    Raises:
        ValueError: If the family cannot recover states from observations, or no
            trajectory is long enough.
    """
    if not 1 <= elites <= population:
        raise ValueError(f"elites: must be in [1, population] (got {elites})")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    max_latency = int(space["latency_steps"].high) if "latency_steps" in space.names else 0
    windows = make_windows(trajectories, horizon, max_latency, max_windows, rng)
    source = ModelSource(family, slots=1)
    d = space.dim

    def score(units: np.ndarray) -> np.ndarray:
        return prediction_errors(family, space, units, windows, fidelity, source, threads)

    sobol = qmc.Sobol(d, scramble=True, seed=rng)  # its first points of a power of two
    xs = sobol.random_base2(max(population - 1, 1).bit_length())[:population]
    ys = score(xs)
    for _ in range(rounds - 1):
        top = xs[np.argsort(ys, kind="stable")[:elites]]
        mean, std = top.mean(axis=0), np.maximum(top.std(axis=0), 1e-3)
        draws = np.clip(rng.normal(mean, std, size=(population, d)), 0.0, 1.0)
        xs, ys = np.concatenate([xs, draws]), np.concatenate([ys, score(draws)])
    order = np.argsort(ys, kind="stable")
    best, best_error = xs[order[0]].copy(), float(ys[order[0]])
    keep = order[ys[order] <= best_error * (1.0 + tolerance)]
    accepted = xs[keep]
    low = np.minimum(accepted.min(axis=0), best - min_halfwidth)
    high = np.maximum(accepted.max(axis=0), best + min_halfwidth)
    top = xs[order[:elites]]
    nominal = space.to_unit(space.nominal())
    return Identification(
        low=np.clip(low, 0.0, 1.0),
        high=np.clip(high, 0.0, 1.0),
        mean=top.mean(axis=0),
        std=top.std(axis=0),
        best=best,
        best_error=best_error,
        nominal_error=float(score(nominal[None])[0]),
        consistent=accepted.copy(),
        consistent_errors=ys[keep].copy(),
        windows=len(windows),
        evaluations=len(xs) + 1,
        seconds=time.perf_counter() - t0,
    )


__all__ = ["Identification", "Windows", "identify", "make_windows", "prediction_errors"]
