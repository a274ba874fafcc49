"""Compiled per-step work of the batched env (Numba), for what numpy does in many small calls.

At batch 256 and a coarse timestep a physics step of every sub-env takes a few hundred
microseconds on two cores, and each numpy call around it costs about a microsecond however
few rows it touches. These kernels do in one pass over the rows what took several calls:
the actions' sanitizing, latency FIFOs and deadzone, the stability guard's state check, a
step's flags and returns, and the state rows of new episodes.
They compute exactly what the numpy code they replace computed (the same IEEE operations in
the same order), so trajectories are unchanged bit for bit.

Each kernel is compiled at import for fixed signatures (:func:`compiled`) and cached next to
its module: compiling on first use would specialize on the arrays' layouts and dtypes, and
stall a timed step whenever a new combination first appeared (a float32 action batch from
RLlib, a single-row reset whose column slice happens to be contiguous).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

F1, F2, F3 = "float64[:]", "float64[:, :]", "float64[:, :, :]"
"""Signature types of float64 arrays of 1-3 dims, any layout."""
I1, B1 = "int64[:]", "boolean[:]"
"""Signature types of int64 and bool vectors, any layout."""


def compiled(*signatures: str) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit`` for exactly ``signatures`` (compiled at import, cached, GIL released);
    a call with other dtypes raises ``TypeError`` instead of compiling."""
    return numba.njit(list(signatures), cache=True, nogil=True)


_CONTROLS = f"{F1}, {F1}, {F3}, {I1}, {I1}, {F1}, {F1}, {F2}, {F2}"


@compiled(f"void(float64[:], {_CONTROLS})", f"void(float32[:], {_CONTROLS})")
def controls(
    raw: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    history: np.ndarray,
    steps: np.ndarray,
    latency: np.ndarray,
    deadzone: np.ndarray,
    scale: np.ndarray,
    action: np.ndarray,
    ctrl: np.ndarray,
) -> None:
    """The agents' actions and the controls they become, per sub-env ``i``.

    Args:
        raw: The actions as given, flat ``(n * nu,)``: NaN -> 0, then clipped to
            ``[low, high]`` into ``action`` ``(n, nu)``.
        low, high: The action space's bounds ``(nu,)``.
        history: Latency FIFOs ``(n, H, nu)``: slot ``k % H`` gets the action of episode
            step ``k = steps[i]``; the control is the one of step ``k - latency[i]``, 0
            before the episode's first.
        steps, latency: Episode steps taken and latency in control steps ``(n,)``.
        deadzone, scale: A control whose magnitude is below ``deadzone[i] * scale[j]``
            becomes 0.
        action, ctrl: Outputs ``(n, nu)``.
    """
    n, nu = action.shape
    size = history.shape[1]
    delayed = False
    dead = False
    for i in range(n):
        delayed |= latency[i] != 0
        dead |= deadzone[i] != 0.0
    for i in range(n):
        k = steps[i]
        for j in range(nu):
            a = raw[i * nu + j]
            if a != a:
                a = 0.0
            a = max(min(a, high[j]), low[j])
            action[i, j] = a
            if delayed:
                history[i, k % size, j] = a
                a = history[i, (k - latency[i]) % size, j] if k >= latency[i] else 0.0
            if dead and abs(a) < deadzone[i] * scale[j]:
                a = 0.0
            ctrl[i, j] = a


@compiled(f"boolean({F2}, {F2}, float64, {B1})")
def unsound_rows(qpos: np.ndarray, qvel: np.ndarray, max_speed: float, out: np.ndarray) -> bool:
    """Mark in ``out`` ``(n,)`` the rows with a non-finite position or a joint speed above
    ``max_speed`` (a NaN speed included); return whether any row is marked."""
    found = False
    for i in range(qpos.shape[0]):
        bad = False
        for j in range(qpos.shape[1]):
            bad |= not abs(qpos[i, j]) < np.inf
        for j in range(qvel.shape[1]):
            bad |= not abs(qvel[i, j]) <= max_speed
        out[i] = bad
        found |= bad
    return found


@compiled(f"int64({B1}, {B1}, {B1}, {B1}, {F1}, {I1}, int64, {F1}, {B1}, {B1})")
def finish_step(
    resetting: np.ndarray,
    unstable: np.ndarray,
    diverged: np.ndarray,
    terminated: np.ndarray,
    rewards: np.ndarray,
    steps: np.ndarray,
    max_steps: int,
    returns: np.ndarray,
    truncated: np.ndarray,
    done: np.ndarray,
) -> int:
    """A step's flags per sub-env, in place; returns how many sub-envs became unstable.

    A resetting sub-env (``resetting``: its episode ended at the previous step) reports
    nothing: no flags, reward 0. A stepping one counts the step (``steps``), is unstable if
    MuJoCo stopped it (``unstable`` on entry) or its state diverged (``diverged``), which
    terminates it with reward 0, and is truncated at ``max_steps``. ``done`` is terminated
    or truncated; ``returns`` adds the rewards.
    """
    count = 0
    for i in range(resetting.shape[0]):
        if resetting[i]:
            unstable[i] = False
            terminated[i] = False
            rewards[i] = 0.0
            truncated[i] = False
        else:
            steps[i] += 1
            if unstable[i] or diverged[i]:
                unstable[i] = True
                terminated[i] = True
                rewards[i] = 0.0
                count += 1
            truncated[i] = steps[i] >= max_steps
        done[i] = terminated[i] or truncated[i]
        returns[i] += rewards[i]
    return count


@compiled(f"void({I1}, {F2}, {F2}, int64, {F2}, {F2}, {I1}, {F1}, {B1}, {B1})")
def start_episodes(
    idx: np.ndarray,
    state: np.ndarray,
    reset_state: np.ndarray,
    qpos_start: int,
    qpos: np.ndarray,
    qvel: np.ndarray,
    steps: np.ndarray,
    returns: np.ndarray,
    done: np.ndarray,
    unstable: np.ndarray,
) -> None:
    """Start an episode in the sub-envs ``idx``: state row ``idx[p]`` becomes ``reset_state``
    (one row for all, or one per ``p``) with ``qpos[p]`` and ``qvel[p]`` (which follows
    ``qpos`` in the row) written in; its steps, return and flags are cleared."""
    shared = reset_state.shape[0] == 1
    nq, nv = qpos.shape[1], qvel.shape[1]
    for p in range(idx.shape[0]):
        i = idx[p]
        source = 0 if shared else p
        for j in range(state.shape[1]):
            state[i, j] = reset_state[source, j]
        for j in range(nq):
            state[i, qpos_start + j] = qpos[p, j]
        for j in range(nv):
            state[i, qpos_start + nq + j] = qvel[p, j]
        steps[i] = 0
        returns[i] = 0.0
        done[i] = False
        unstable[i] = False


@compiled(f"boolean({I1}, {F2}, {I1}, int64, boolean, {F2})")
def take_windows(
    rows: np.ndarray,
    chunks: np.ndarray,
    pos: np.ndarray,
    width: int,
    advance: bool,
    out: np.ndarray,
) -> bool:
    """Copy each sub-env ``rows[p]``'s next ``width`` doubles of its chunk (``chunks[i]``
    from ``pos[i]`` on) into ``out[p]``, and with ``advance`` move ``pos`` past them;
    ``False``, copying nothing, if some row's chunk has fewer left."""
    size = chunks.shape[1]
    for p in range(rows.shape[0]):
        if pos[rows[p]] + width > size:
            return False
    for p in range(rows.shape[0]):
        i = rows[p]
        start = pos[i]
        for j in range(width):
            out[p, j] = chunks[i, start + j]
        if advance:
            pos[i] = start + width
    return True
