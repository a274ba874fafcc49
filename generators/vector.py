"""Batched heterogeneous stepping: many sub-envs with different physics, one MuJoCo call per step.

:class:`BatchedVectorEnv` is a ``gymnasium.vector.VectorEnv`` over one family. Every sub-env
draws its own theta from the task distribution at its own reset (with the same rounding and
model cache as :class:`~generators.env.TaskEnv`), so the batch holds models with different
masses, lengths, dampings or integrators. The sub-envs' integration states (``mjSTATE_INTEGRATION``:
positions, velocities, controls, the solver's warm start...) are stacked into one
``(n, nstate)`` array (the rows of the first layout's batch itself), and a control step
advances all of them with a single ``mujoco.batch.Batch.step`` call per model layout: one
simulation per sub-env on its own model (``set_models``), ``nstep`` = the family's physics
substeps per control step, on a persistent thread pool. Latency FIFOs, deadzone,
observation noise, reward, termination and the stability guard run on the stacked arrays,
in compiled passes (:mod:`generators.kernels`, the task's own) where numpy would take many
small calls, and the sub-envs whose episode ended start the next one (theta draw, model,
initial state) together.

Sub-env ``i`` reproduces a :class:`TaskEnv` reset with seed ``seed + i`` and given the same
actions bit for bit (same randomness stream, same ``mj_step`` calls from the same states).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import mujoco.batch
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from generators import kernels
from generators.distribution import TaskDistribution
from generators.env import (
    _MODEL_CACHE_SIZE,
    _as_distribution,
    _EnvConfig,
    is_point,
    resolve_distribution,
    round_significant,
)
from generators.episodes import EpisodeLog
from generators.families import FIDELITIES, Family, get_family
from generators.models import ModelSource
from generators.space import ParamSpace
from generators.task import LATENCY, BatchState, ChannelEffects, Task

_INTEGRATION = mujoco.mjtState.mjSTATE_INTEGRATION.value
_NOISE_CHUNK = 32  # standard normals drawn per sub-env at a time (rows of obs size)
_RESET_CHUNK = 64  # initial-state draws per sub-env at a time (windows of the task's count)
_CLOSED = 1 << 40  # position in a sub-env's reset chunk when none is open
_NO_IDS = np.zeros(0, dtype=np.int32)
COST_SMOOTHING = 0.05
"""Default weight of the newest measurement in the per-fidelity cost average."""


def default_nthread(num_envs: int) -> int:
    """Physics threads for ``num_envs`` sub-envs (the calling thread included): one per 16
    sub-envs, at most one per CPU."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, num_envs // 16))


def state_slices(model: mujoco.MjModel) -> dict[str, slice]:
    """Where ``time``, ``qpos``, ``qvel``, ``act`` and ``ctrl`` lie in an integration state
    row of ``model`` (``mjSTATE_INTEGRATION``: components in the order of their bits)."""
    slices = {}
    for name in ("time", "qpos", "qvel", "act", "ctrl"):
        bit = int(getattr(mujoco.mjtState, f"mjSTATE_{name.upper()}"))
        start = mujoco.mj_stateSize(model, _INTEGRATION & (bit - 1))
        slices[name] = slice(start, start + mujoco.mj_stateSize(model, bit))
    return slices


class BatchedVectorEnv(gym.vector.VectorEnv):
    """``n`` sub-envs of one family with per-sub-env physics, stepped by one ``mujoco.batch``.

    Semantics per sub-env are those of :class:`~generators.env.TaskEnv`: theta drawn from
    the task distribution at each of its resets (``info["theta"]``, ``info["fidelity"]``),
    latency, observation noise and deadzone from :class:`ChannelEffects`, the task's reward
    and termination, truncation after ``max_episode_steps``, and the stability guard (a
    non-finite or exploding state, or MuJoCo resetting the state, ends that sub-env's
    episode with ``terminated=True``, reward 0 and ``info["unstable"]``; it is counted in
    :attr:`unstable_episodes` and never raises).

    Autoreset is gymnasium's next-step mode (``metadata["autoreset_mode"]``), the default
    of ``SyncVectorEnv`` and what RLlib's ``SingleAgentEnvRunner`` expects: the step after a
    sub-env's episode ended ignores that sub-env's action, resets it and returns its reset
    observation and info with reward 0 and both flags ``False``.

    Randomness: sub-env ``i`` has its own generator (``reset(seed=s)`` seeds it with
    ``s + i``) and draws from it in the same order as a ``TaskEnv``, so trajectories match
    one-by-one. Physics is ``mj_step``'s, bit for bit: the batch carries every sub-env's
    whole integration state, the solver's warm start included, from one step to the next.

    Tasks that only implement the per-``MjData`` methods still work: for them every
    sub-env keeps a live ``MjData`` that replays the last physics substep after the batched
    call, so derived quantities (``xpos``, ``ctrl``) are exactly those ``mj_step`` leaves.

    Args:
        family: A family or its registered name.
        num_envs: Number of sub-envs ``n``.
        fidelity: Fidelity for the default point distribution (default ``"fine"``); a
            distribution carries its own.
        space: Parameter space of the distribution (default: the family's).
        distribution: Initial task distribution of every sub-env (default: nominal point).
        theta: A fixed theta (missing names -> nominal) when no distribution is given.
        nthread: Physics threads, the calling thread included (default
            :func:`default_nthread`); 1 steps on the calling thread alone.
        cost_smoothing: Weight of the newest measurement in the exponentially smoothed cost
            per fidelity (:attr:`cost_s_per_step`). A fidelity's first step is not timed:
            it carries one-off work (the batch's first call, first-touch memory).

    Attributes:
        family: The family.
        space: The parameter space of the task distributions.
        task: The family's task.
        envs: One lightweight :class:`SubEnv` view per sub-env (``theta``, ``fidelity``,
            ``set_task_distribution``...), like ``SyncVectorEnv.envs``.
        unstable_episodes: Episodes ended by the stability guard.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "render_modes": [],
    }

    def __init__(
        self,
        family: Family | str,
        num_envs: int,
        fidelity: str | None = None,
        *,
        space: ParamSpace | None = None,
        distribution: TaskDistribution | Mapping[str, Any] | None = None,
        theta: Mapping[str, float] | None = None,
        nthread: int | None = None,
        cost_smoothing: float = COST_SMOOTHING,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"n must be >= 1 (got {num_envs})")
        if not 0.0 < cost_smoothing <= 1.0:
            raise ValueError(f"cost_smoothing: must be in (0, 1] (got {cost_smoothing})")
        self.family = get_family(family) if isinstance(family, str) else family
        self.task: Task = self.family.task
        self.space = self.family.space if space is None else space
        self.family.check_space(self.space)
        distribution = resolve_distribution(self.space, theta, fidelity, distribution)
        self._check_distribution(distribution)

        n = self.num_envs = int(num_envs)
        self.single_observation_space = self.task.observation_space
        self.single_action_space = self.task.action_space
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self._obs_shape = tuple(self.single_observation_space.shape or ())
        self._ctrl_low = np.asarray(self.task.action_space.low, dtype=np.float64).reshape(-1)
        self._ctrl_high = np.asarray(self.task.action_space.high, dtype=np.float64).reshape(-1)
        self._ctrl_scale = np.maximum(-self._ctrl_low, self._ctrl_high)
        nu = self._ctrl_low.size
        self._nthread = default_nthread(n) if nthread is None else max(1, int(nthread))
        self._sims: dict[tuple[int, ...], _Sims] = {}  # by layout (size signature)
        self._new_model = np.zeros(n, dtype=bool)  # model new or edited since set_models
        self._scratch: dict[tuple[int, ...], mujoco.MjData] = {}
        self._points: dict[int, _Draw] = {}  # by id of a point distribution in use
        self._point_dists: dict[int, TaskDistribution] = {}
        self._source = ModelSource(self.family, slots=n, cache_size=_MODEL_CACHE_SIZE + n)

        # Per sub-env episode state.
        self._dists: list[TaskDistribution] = [distribution] * n
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._models: list[mujoco.MjModel | None] = [None] * n
        self._datas: list[mujoco.MjData | None] = [None] * n
        self._keys: list[tuple[int, ...]] = [()] * n
        self._groups: list[tuple[tuple[int, ...], np.ndarray]] | None = None
        self._names = self.family.space.names
        # Column maps between the env's space and the family's order (the same names).
        self._family_cols = np.array([self.space.names.index(n) for n in self._names])
        self._space_cols = np.array([self._names.index(n) for n in self.space.names])
        self._theta = np.zeros((n, len(self._names)))
        self._unit = np.zeros((n, len(self._names)))  # theta in the unit cube of `space`
        self._fidelity = np.full(n, distribution.fidelity, dtype=object)
        self._fid_code = np.zeros(n, dtype=np.int64)  # index into FIDELITIES
        self._nsub = np.ones(n, dtype=np.int64)
        self._min_advance = np.zeros(n)  # least time a sound step advances: nsub - 1/2 steps
        self._latency = np.zeros(n, dtype=np.int64)
        self._noise_std = np.zeros(n)
        self._deadzone = np.zeros(n)
        self._steps = np.zeros(n, dtype=np.int64)
        self._done = np.zeros(n, dtype=bool)  # episode ended: reset at the next step
        self._episode_unstable = np.zeros(n, dtype=bool)
        self._started = False
        self._obs = np.zeros((n, *self._obs_shape))
        # Latency FIFOs as ring buffers: slot ``k % H`` holds the action of episode step k.
        max_latency = int(self.space[LATENCY].high) if LATENCY in self.space else 0
        self._hist = np.zeros((n, max_latency + 1, nu))
        # Observation noise: chunks of standard normals per sub-env, drawn ahead from its
        # generator; the generator state before the chunk lets a reset rewind to the draws
        # actually used, so the stream is the one a TaskEnv consumes.
        obs_size = int(np.prod(self._obs_shape))
        self._noise_buf = np.zeros((n, _NOISE_CHUNK, obs_size))
        self._noise_pos = np.full(n, _NOISE_CHUNK, dtype=np.int64)
        self._noise_saved: list[dict[str, Any] | None] = [None] * n
        # Initial states likewise, for sub-envs whose generator draws nothing else (a point
        # distribution, no observation noise) and tasks that read at most a known count of
        # doubles per reset (`Task.initial_state_randoms`): a flat chunk of doubles per
        # sub-env, of which each reset reads its own number; at most one chunk is open.
        self._reset_buf: np.ndarray | None = None  # (n, _RESET_CHUNK * count) at first use
        self._reset_pos = np.full(n, _CLOSED, dtype=np.int64)  # doubles read of the chunk
        self._reset_saved: list[dict[str, Any] | None] = [None] * n
        self._model_ids = np.zeros(n, dtype=np.int64)  # id() of each sub-env's model
        self._shared_draw: _Draw | None = None  # the last draw shared by every reset row
        self._draws_version = 0  # counts writes of per-draw fields (theta, fidelity...)
        self._step_info: tuple[int, dict[str, Any], np.ndarray] | None = None
        self._any_noise = False  # some sub-env has observation noise
        self._views: tuple[np.ndarray, ...] = ()  # the stacked state and its field views
        self._on_shared = np.zeros(n, dtype=bool)  # rows whose per-draw fields are its
        self._one_dist: TaskDistribution | None = distribution  # shared by every sub-env
        # Stacked physics state (allocated at the first reset, when the layout is known).
        self._nstate = 0
        self._state = np.zeros((n, 0))
        self._slices: dict[str, slice] = {}
        # Which task methods run batched; decided once from the task's overrides/answers.
        cls = type(self.task)
        self._custom_before = cls.before_step is not Task.before_step
        self._const: np.ndarray | None = None  # stacked task.batch_constants, one row each
        self._batched: dict[str, bool] | None = None  # decided at the first reset
        self._batched_methods: dict[str, Any] = {}  # the task's batched methods that answer
        self._live_data = True
        # Measured cost per fidelity: smoothed seconds per env step (value, bias-correction
        # weight) and the sub-env steps counted.
        self._cost_smoothing = float(cost_smoothing)
        self._cost: dict[str, list[float]] = {}
        self.unstable_episodes = 0
        self.episode_log = EpisodeLog()
        """Finished episodes (theta, fidelity, return, length, unstable), drained by learners."""
        self._returns = np.zeros(n)
        self._all_rows = np.ones(n, dtype=bool)  # the info mask of a step
        self._all_rows.flags.writeable = False
        self._mask_keys = [f"_{name}" for name in self._names]
        self.envs = [SubEnv(self, i) for i in range(n)]

    # -----------------------------------------------------------------------------------------
    # Construction from plain data and distribution handling

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BatchedVectorEnv:
        """Build from plain data, e.g. the env config RLlib passes a vector entry point.

        Keys as :meth:`TaskEnv.from_config` (``family`` required, ``theta``, ``fidelity``,
        ``space``, ``distribution``) plus ``num_envs`` (required) and ``nthread``. Other
        keys are ignored.
        """
        if "num_envs" not in config:
            raise ValueError("vector env config needs a 'num_envs' key")
        parsed = _EnvConfig.parse(config)
        return cls(
            parsed.family,
            int(config["num_envs"]),
            parsed.fidelity,
            space=parsed.space,
            distribution=parsed.distribution,
            theta=parsed.theta,
            nthread=config.get("nthread"),
        )

    @property
    def distribution(self) -> TaskDistribution:
        """Task distribution of sub-env 0 (all sub-envs share it unless set one by one)."""
        return self._dists[0]

    @property
    def fidelity(self) -> str:
        """Fidelity of :attr:`distribution` (applies from each sub-env's next reset)."""
        return self._dists[0].fidelity

    @property
    def nthread(self) -> int:
        """Physics threads, the calling thread included (1: the calling thread alone)."""
        return self._nthread

    def set_task_distribution(
        self,
        distribution: TaskDistribution | Mapping[str, Any],
        indices: Sequence[int] | None = None,
    ) -> None:
        """Replace the task distribution of every (or the given) sub-env.

        It takes effect at each sub-env's next reset (as for ``TaskEnv``).

        Raises:
            ValueError: If the distribution's dimension does not match the space or the
                family cannot simulate its fidelity.
        """
        distribution = _as_distribution(distribution)
        self._check_distribution(distribution)
        for i in range(self.num_envs) if indices is None else indices:
            self._dists[i] = distribution
        first = self._dists[0]
        self._one_dist = first if all(d is first for d in self._dists) else None
        live = {id(d) for d in self._dists}
        self._points = {k: v for k, v in self._points.items() if k in live}
        self._point_dists = {k: v for k, v in self._point_dists.items() if k in live}

    def _check_distribution(self, distribution: TaskDistribution) -> None:
        distribution.check_space(self.space)
        self.family.check_fidelity(distribution.fidelity)

    # -----------------------------------------------------------------------------------------
    # Measured cost

    @property
    def cost_s_per_step(self) -> float:
        """Measured seconds per env step at the current fidelity (``nan`` before any step)."""
        return self.cost(self.fidelity)

    def cost(self, fidelity: str) -> float:
        """Measured, exponentially smoothed seconds per env step at ``fidelity``.

        ``nan`` until the fidelity has stepped twice (its first step is not timed).
        """
        entry = self._cost.get(fidelity)
        if entry is None or not entry[1]:
            return math.nan
        value, weight, _ = entry
        return float(value / weight)

    def costs(self) -> dict[str, dict[str, float]]:
        """Plain data for a scheduler: ``{fidelity: {"s_per_step", "env_steps"}}``.

        ``s_per_step`` is the wall time of :meth:`step` (physics, bookkeeping, autoresets)
        per sub-env step, exponentially smoothed over steps after the fidelity's first
        (``nan`` before); ``env_steps`` counts every sub-env step at the fidelity.
        """
        return {
            fid: {"s_per_step": self.cost(fid), "env_steps": float(entry[2])}
            for fid, entry in self._cost.items()
        }

    def _record_cost(self, fidelity: str, seconds_per_step: float, steps: int) -> None:
        entry = self._cost.get(fidelity)
        if entry is None:  # the first step: counted, not timed (one-off work lands in it)
            self._cost[fidelity] = [0.0, 0.0, steps]
            return
        # Bias-corrected exponential average: weight tracks 1 - (1 - alpha)^k.
        alpha = self._cost_smoothing
        entry[0] = (1.0 - alpha) * entry[0] + alpha * seconds_per_step
        entry[1] = (1.0 - alpha) * entry[1] + alpha
        entry[2] += steps

    # -----------------------------------------------------------------------------------------
    # Gymnasium API

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-env (or those in ``options["reset_mask"]``).

        Args:
            seed: ``None``, an int (sub-env ``i`` gets ``seed + i``) or one seed per sub-env.
            options: ``theta`` (fixed theta for the reset sub-envs) and ``reset_mask``
                (bool array ``(n,)``), as for ``SyncVectorEnv``.

        Returns:
            Observations ``(n, *obs_shape)`` and the vector info dict of the reset sub-envs.
        """
        super().reset(seed=seed if isinstance(seed, int) else None)
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"got {len(seeds)} seeds for {n} sub-envs")
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(n, dtype=bool)
        else:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (n,) or not mask.any():
                raise ValueError(f"reset_mask must be a bool array of shape ({n},), not all False")
        if not self._started and not mask.all():
            raise ValueError("the first reset must reset every sub-env")
        idx = np.flatnonzero(mask)
        for i in idx:
            if seeds[i] is not None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
                self._noise_pos[i], self._noise_saved[i] = _NOISE_CHUNK, None
                self._reset_pos[i], self._reset_saved[i] = _CLOSED, None
        self._reset_envs(idx, options.get("theta"))
        if self._batched is None:
            self._probe_task()
        self._started = True
        self._obs[idx] = self._observe(idx)
        return self._obs.copy(), self._infos(idx, np.zeros(idx.size, dtype=bool), mask)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every sub-env by one control step (next-step autoreset).

        Args:
            actions: Shape ``(n, *action_shape)``; NaN -> 0, clipped to the action space.

        Returns:
            ``obs (n, *obs_shape)``, ``rewards (n,)``, ``terminations (n,)``,
            ``truncations (n,)`` and the vector info dict (``theta``, ``fidelity``,
            ``unstable``).
        """
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        t_start = time.perf_counter()
        n = self.num_envs
        action, ctrl = self._controls(actions)
        resetting = self._done.copy()
        all_step = not resetting.any()
        stepping = ~resetting
        live = self._live_data
        before: list[Any] = [None] * n if self._custom_before and live else []
        if before:
            for i in np.flatnonzero(stepping):
                before[i] = self.task.before_step(self._models[i], self._datas[i])

        time_before = self._state[:, 0].copy()
        qpos_before = self._state[:, self._slices["qpos"]].copy()
        prev = self._state.copy() if live else None
        last_sub, physics = self._physics(ctrl, stepping, all_step)
        # MuJoCo stopped or reset the state: less time passed than the substeps take.
        unstable = self._state[:, 0] < time_before + self._min_advance
        unstable &= stepping
        if live:
            for i in np.flatnonzero(stepping & ~unstable):
                start = prev[i] if self._nsub[i] == 1 else last_sub[i]
                self._replay(i, start, ctrl[i])

        # The batched task methods see every row: a resetting row holds its last, sound
        # state (an unsound one was put back by the guard), and its results are masked.
        state = self._batch_state(slice(None), ctrl=ctrl, action=action, qpos_before=qpos_before)
        div = self._call_batched("diverged", state)
        if div is None:
            div = np.zeros(n, dtype=bool)
            for i in np.flatnonzero(stepping & ~unstable):
                div[i] = self._data_call(i, self.task.diverged)
        if live:  # the per-env methods below skip the unstable rows
            unstable |= stepping & div

        terminated = self._call_batched("terminated", state)
        if terminated is None:
            terminated = np.zeros(n, dtype=bool)
            for i in np.flatnonzero(stepping & ~unstable):
                terminated[i] = self._data_call(i, self.task.terminated)
        else:
            terminated = np.array(terminated, dtype=bool)
        rewards = self._call_batched("step_reward", state, terminated)
        if rewards is None:
            rewards = np.zeros(n)
            for i in np.flatnonzero(stepping & ~unstable):
                model, data = self._models[i], self._datas[i]
                rewards[i] = float(
                    self.task.step_reward(model, data, bool(terminated[i]), action[i], before[i])
                )
        else:
            rewards = np.array(rewards, dtype=np.float64)

        truncated = np.empty(n, dtype=bool)
        done = np.empty(n, dtype=bool)
        max_steps = self.task.max_episode_steps
        args = (div, terminated, rewards, self._steps, max_steps, self._returns, truncated, done)
        any_unstable = kernels.finish_step(resetting, unstable, *args) > 0
        if any_unstable:
            for i in np.flatnonzero(unstable):
                self._reset_unstable(i)
        if not all_step:  # the sub-envs whose episode ended start the next one
            self._reset_envs(np.flatnonzero(resetting), None)
        # Unless a row was reset, the observation reads the state the step's methods did.
        self._obs = self._observe(slice(None), state if all_step and not any_unstable else None)
        self._done = done
        ended = np.flatnonzero(self._done)
        if ended.size:
            self.episode_log.extend(
                self._unit[ended],
                self._fidelity[ended],
                self._returns[ended],
                self._steps[ended],
                unstable[ended],
            )
        infos = self._infos(slice(None), unstable, None)

        stepped = n - int(np.count_nonzero(resetting))
        self._record_costs(time.perf_counter() - t_start, physics, stepped)
        return self._obs.copy(), rewards, terminated, truncated, infos

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call method ``name`` of every :class:`SubEnv` (or read the attribute), as
        ``SyncVectorEnv.call``: e.g. ``call("set_task_distribution", dist)``."""
        results = []
        for env in self.envs:
            attr = getattr(env, name)
            results.append(attr(*args, **kwargs) if callable(attr) else attr)
        return tuple(results)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Read attribute ``name`` of every :class:`SubEnv`."""
        return self.call(name)

    def close_extras(self, **kwargs: Any) -> None:
        """Free the batches (their thread pools)."""
        self._sims = {}

    # -----------------------------------------------------------------------------------------
    # Episodes

    def _rng(self, i: int) -> np.random.Generator:
        """Sub-env ``i``'s generator, rewound to the draws used (see ``_noise`` and
        ``_initial_states``)."""
        rng = self._rngs[i]
        if rng is None:
            rng = self._rngs[i] = seeding.np_random(None)[0]
        saved = self._noise_saved[i]
        if saved is not None:
            if self._noise_pos[i] < _NOISE_CHUNK:  # a used-up chunk is where the stream is
                rng.bit_generator.state = saved
                rng.standard_normal((int(self._noise_pos[i]), self._noise_buf.shape[2]))
            self._noise_saved[i] = None
            self._noise_pos[i] = _NOISE_CHUNK
        saved = self._reset_saved[i]
        if saved is not None:
            assert self._reset_buf is not None
            if self._reset_pos[i] < self._reset_buf.shape[1]:
                rng.bit_generator.state = saved
                rng.random(int(self._reset_pos[i]))
            self._reset_saved[i] = None
            self._reset_pos[i] = _CLOSED
        return rng

    def _reset_envs(self, idx: np.ndarray, fixed_theta: Mapping[str, float] | None) -> None:
        """Start a new episode in each sub-env of ``idx``, as ``TaskEnv.reset`` does."""
        if not idx.size:
            return
        draws, one = self._episode_draws(idx, fixed_theta)
        first = draws[0]
        # The latency FIFOs need no clearing: an episode reads only slots it wrote (episode
        # step k reads step k - latency's, and none before the episode's step `latency`).
        # Rows that start another episode of the shared draw keep its per-draw fields (model,
        # constants, channel effects, theta, fidelity); the others are written from theirs.
        if one:
            if first is not self._shared_draw:
                self._shared_draw = first  # held, so the identity stays valid
                self._on_shared[:] = False
            fresh = idx[~self._on_shared[idx]]
        else:
            self._on_shared[idx] = False
            fresh = idx
        if fresh.size:
            self._set_draws(fresh, first if one else draws)
            if one:
                self._on_shared[fresh] = True
        if self._live_data:  # per-env task methods read this sub-env's MjData
            for i, draw in zip(idx.tolist(), draws, strict=True):
                model, data = draw.model, self._data(i)
                mujoco.mj_resetData(model, data)
                self.task.initialize_episode(model, data, self._rng(i))
                mujoco.mj_getState(model, data, self._state[i], _INTEGRATION)
        else:  # the state rows alone: reset state, the task's qpos, qvel
            qpos, qvel = self._initial_states(idx, draws, one)
            reset = first.reset_state[None] if one else np.array([d.reset_state for d in draws])
            kernels.start_episodes(
                idx,
                self._state,
                reset,
                self._slices["qpos"].start,
                np.asarray(qpos, dtype=np.float64).reshape(idx.size, -1),
                np.asarray(qvel, dtype=np.float64).reshape(idx.size, -1),
                self._steps,
                self._returns,
                self._done,
                self._episode_unstable,
            )
            return
        self._steps[idx] = 0
        self._returns[idx] = 0.0
        self._done[idx] = False
        self._episode_unstable[idx] = False

    def _set_draws(self, idx: np.ndarray, draws: _Draw | list[_Draw]) -> None:
        """Give the rows ``idx`` the per-draw fields of ``draws`` (one per row, or one shared
        draw): model, task constants, channel effects, theta and fidelity."""
        one = isinstance(draws, _Draw)

        def column(get: Any) -> Any:  # one value for all rows of a shared draw, else a list
            return get(draws) if one else [get(d) for d in draws]

        model_ids = column(lambda d: id(d.model))
        for p in np.flatnonzero(self._model_ids[idx] != model_ids).tolist():
            draw = draws if one else draws[p]
            self._set_model(int(idx[p]), draw.model, draw.key)
        sample = draws if one else draws[0]
        if sample.constants is not None:
            if self._const is None:
                self._const = np.zeros((self.num_envs, sample.constants.size))
            self._const[idx] = column(lambda d: d.constants)
        latency = np.asarray(column(lambda d: d.effects.latency_steps), dtype=np.int64)
        if latency.max() >= self._hist.shape[1]:
            self._grow_history(int(latency.max()) + 1)
        self._latency[idx] = latency
        self._noise_std[idx] = column(lambda d: d.effects.obs_noise_std)
        self._deadzone[idx] = column(lambda d: d.effects.deadzone)
        self._theta[idx] = column(lambda d: d.theta)
        self._unit[idx] = column(lambda d: d.unit)
        self._fidelity[idx] = column(lambda d: d.fidelity)
        self._fid_code[idx] = column(lambda d: FIDELITIES.index(d.fidelity))
        self._draws_version += 1
        self._any_noise = bool(self._noise_std.any())

    def _initial_states(
        self, idx: np.ndarray, draws: list[_Draw], one: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """The new episodes' ``qpos`` and ``qvel`` rows, from each sub-env's generator.

        For a task that reads at most a known count of doubles per reset, sub-envs whose
        generator draws nothing else in the episode (``_Draw.quiet``) take theirs from a
        chunk drawn ahead: one ``random`` call per sub-env per ``_RESET_CHUNK`` resets
        instead of per reset. Each reset reads its own number of the chunk's doubles
        (:meth:`Task.initial_state_reads`), so the stream stays the one ``initial_state``
        reads; a reset whose window was too short draws from the rewound generator.
        """
        models = [draws[0].model] * idx.size if one else [d.model for d in draws]
        task = self.task
        count = task.initial_state_randoms(models[0])
        if count is None:
            rngs = [self._rng(i) for i in idx.tolist()]
            drawn = task.initial_state_batch(models, rngs)
            if drawn is None:
                drawn = zip(*map(task.initial_state, models, rngs), strict=True)
            qpos, qvel = drawn
            return qpos, qvel
        size = _RESET_CHUNK * count
        if self._reset_buf is None:
            self._reset_buf = np.zeros((self.num_envs, size))
        if one:
            quiet, rows = (None, idx) if draws[0].quiet else (np.zeros(idx.size, bool), idx[:0])
        else:
            quiet = np.array([d.quiet for d in draws])
            rows = idx[quiet]
        pos = self._reset_pos
        fixed = type(task).initial_state_reads is Task.initial_state_reads
        ahead = np.empty((rows.size, count))
        if not kernels.take_windows(rows, self._reset_buf, pos, count, fixed, ahead):
            for i in rows[pos[rows] + count > size].tolist():
                rng = self._rng(i)  # rewound: the chunk starts where the stream is
                self._reset_saved[i] = rng.bit_generator.state
                self._reset_buf[i] = rng.random(size)
                pos[i] = 0
            kernels.take_windows(rows, self._reset_buf, pos, count, fixed, ahead)
        if quiet is None:  # every row drew ahead
            randoms = ahead
        else:
            randoms = np.zeros((idx.size, count))  # rows not drawn ahead: redone below
            randoms[quiet] = ahead
            for p in np.flatnonzero(~quiet).tolist() if fixed else ():
                randoms[p] = self._rng(int(idx[p])).random(count)
        qpos, qvel = task.initial_state_from_randoms(models, randoms)
        if fixed:  # the windows were read whole
            return qpos, qvel
        reads = np.zeros(0, dtype=np.int64)
        if rows.size:
            ahead_models = models if quiet is None else _Rows(models, np.flatnonzero(quiet))
            reads = task.initial_state_reads(ahead_models, ahead)
        pos[rows] += np.maximum(reads, 0)
        # Per row, from the generator: a window too short for its reset, a row not drawn ahead.
        redo = np.flatnonzero(reads < 0) if quiet is None else np.flatnonzero(quiet)[reads < 0]
        if quiet is not None:
            redo = np.union1d(redo, np.flatnonzero(~quiet))
        for p in redo.tolist():
            qpos[p], qvel[p] = task.initial_state(models[p], self._rng(int(idx[p])))
        return qpos, qvel

    def _episode_draws(
        self, idx: np.ndarray, fixed_theta: Mapping[str, float] | None
    ) -> tuple[list[_Draw], bool]:
        """Each sub-env of ``idx``'s next theta (rounded as ``TaskEnv`` does) and its model,
        and whether every row shares one draw.

        The draws come from each sub-env's own generator, as its ``TaskEnv`` would make them;
        snapping, the map to theta, rounding and the map back to the unit cube then run once
        over all of them. A point distribution draws no randomness: its draw is kept and
        reused while the distribution is in use.
        """
        if fixed_theta is None and self._one_dist is not None:
            kept = self._points.get(id(self._one_dist))
            if kept is not None:
                return [kept] * idx.size, True
        draws: list[_Draw | None] = [None] * idx.size
        fresh: list[int] = []  # positions in idx that need a new draw
        firsts: dict[int, int] = {}  # a point distribution's first fresh position
        if fixed_theta is not None:  # kept as given (from_unit would clip it)
            theta = self.space.complete(fixed_theta)
            values = np.tile([theta[n] for n in self.space.names], (idx.size, 1))
            fresh = list(range(idx.size))
        else:
            units, boxes = [], []
            for p, i in enumerate(idx.tolist()):
                dist = self._dists[i]
                draws[p] = self._points.get(id(dist))
                if draws[p] is not None:
                    continue
                if is_point(dist):
                    if id(dist) in firsts:  # drawn earlier in this batch
                        continue
                    firsts[id(dist)] = p
                u, box = dist.draw_unit(self._rng(i))  # rewound before it draws again
                units.append(u)
                boxes.append(box)
                fresh.append(p)
            if fresh:
                rows, from_box = np.array(units), np.array(boxes)
                rows[from_box] = self.space.snap(rows[from_box])
                values = self.space.from_unit_array(rows)
        if fresh:
            values = round_significant(values)[:, self._family_cols]
            unit_rows = self.space.to_unit_array(values[:, self._space_cols])
            shared = fixed_theta is not None
            for p, row, unit in zip(fresh, values, unit_rows, strict=True):
                i = int(idx[p])
                dist = self._dists[i]
                point = not shared and is_point(dist)
                draws[p] = self._model_draw(i, dist, row, unit, shared or point)
                if point:
                    self._points[id(dist)] = draws[p]
                    self._point_dists[id(dist)] = dist  # keeps the id valid while cached
        for p, i in enumerate(idx.tolist()):  # the rest of a point drawn in this batch
            if draws[p] is None:
                draws[p] = self._points[id(self._dists[i])]
        return draws, False  # type: ignore[return-value]

    def _model_draw(
        self, i: int, dist: TaskDistribution, row: np.ndarray, unit: np.ndarray, shared: bool
    ) -> _Draw:
        """The draw of theta ``row`` (the family's order) for sub-env ``i``: its model, the
        model's reset state and the channel effects."""
        theta = dict(zip(self._names, row.tolist(), strict=True))
        if shared:  # a point: the cached model, never modified
            model, key = self._source.shared(i, theta, dist.fidelity)
        else:  # a theta per episode: this sub-env's own model, rewritten in place
            model, key = self._source.private(i, theta, dist.fidelity)
            self._new_model[i] = True  # a batch is given its models again after an edit
        constants = self.task.batch_constants(model)
        scratch = self._scratch_data(key, model)
        mujoco.mj_resetData(model, scratch)
        reset_state = np.empty(mujoco.mj_stateSize(model, _INTEGRATION))
        mujoco.mj_getState(model, scratch, reset_state, _INTEGRATION)
        effects = ChannelEffects.from_theta(theta)
        return _Draw(
            theta=row,
            unit=unit,
            fidelity=dist.fidelity,
            effects=effects,
            quiet=shared and effects.obs_noise_std == 0.0,
            model=model,
            key=key,
            constants=None if constants is None else np.asarray(constants, dtype=np.float64),
            reset_state=reset_state,
        )

    def _set_model(self, i: int, model: mujoco.MjModel, key: tuple[int, ...]) -> None:
        nstate = mujoco.mj_stateSize(model, _INTEGRATION)
        if not self._nstate:
            self._nstate = nstate
            self._state = np.zeros((self.num_envs, nstate))
            self._slices = state_slices(model)
            assert self._slices["qvel"].start == self._slices["qpos"].stop  # as resets write
        elif nstate != self._nstate:
            raise ValueError(
                f"family {self.family.name!r}: models differ in state size ({nstate} vs "
                f"{self._nstate}); a batched env needs one state layout"
            )
        self._models[i] = model
        self._model_ids[i] = id(model)
        self._new_model[i] = True
        self._datas[i] = None  # allocated on demand (only live data is kept per sub-env)
        self._nsub[i] = key[0]
        self._min_advance[i] = (key[0] - 0.5) * model.opt.timestep
        if key != self._keys[i]:
            self._keys[i] = key
            self._groups = None

    def _reset_unstable(self, i: int) -> None:
        """Put sub-env ``i`` back to its model's reference state and count the episode."""
        if not self._episode_unstable[i]:
            self.unstable_episodes += 1
        self._episode_unstable[i] = True
        model, data = self._models[i], self._data(i)
        mujoco.mj_resetData(model, data)
        mujoco.mj_forward(model, data)
        mujoco.mj_getState(model, data, self._state[i], _INTEGRATION)

    def _data(self, i: int) -> mujoco.MjData:
        """Sub-env ``i``'s ``MjData``: its own if live, else a scratch one of its layout."""
        if self._live_data:
            data = self._datas[i]
            if data is None:
                data = self._datas[i] = mujoco.MjData(self._models[i])
            return data
        return self._scratch_data(self._keys[i], self._models[i])

    def _scratch_data(self, key: tuple[int, ...], model: mujoco.MjModel) -> mujoco.MjData:
        """A shared scratch ``MjData`` for models of layout ``key``."""
        data = self._scratch.get(key)
        if data is None:
            data = self._scratch[key] = mujoco.MjData(model)
        return data

    def _grow_history(self, size: int) -> None:
        """Enlarge the latency ring buffers to ``size`` slots, keeping every sub-env's FIFO."""
        old = self._hist
        old_size = old.shape[1]
        new = np.zeros((old.shape[0], size, old.shape[2]))
        rows = np.arange(old.shape[0])
        last = self._steps - 1  # episode step of the newest stored action
        for back in range(old_size):
            k = last - back
            ok = k >= 0
            new[rows[ok], k[ok] % size] = old[rows[ok], k[ok] % old_size]
        self._hist = new

    # -----------------------------------------------------------------------------------------
    # One control step

    def _controls(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The actions as float64 ``(n, nu)``, NaN -> 0, clipped to the range, and the
        controls applied now: delayed by each latency FIFO, then dead-zoned."""
        raw = np.asarray(actions)
        if raw.dtype != np.float32:
            raw = raw.astype(np.float64, copy=False)
        raw = raw.reshape(-1)
        nu = self._ctrl_low.size
        if raw.size != self.num_envs * nu:
            raise ValueError(f"actions have {raw.size} entries, expected {self.num_envs} x {nu}")
        action = np.empty((self.num_envs, nu))
        ctrl = np.empty((self.num_envs, nu))
        kernels.controls(
            raw,
            self._ctrl_low,
            self._ctrl_high,
            self._hist,
            self._steps,
            self._latency,
            self._deadzone,
            self._ctrl_scale,
            action,
            ctrl,
        )
        return action, ctrl

    def _physics(
        self,
        ctrl: np.ndarray,
        stepping: np.ndarray,
        all_step: bool,
    ) -> tuple[np.ndarray | None, list[tuple[int, float, int]]]:
        """Advance the stepping sub-envs' states with one batch call per layout and fidelity.

        Returns:
            The states before each row's last substep (only with live ``MjData`` and for
            rows with 2+ substeps, else unused), shape ``(n, nstate)`` or ``None``, and per
            call its fidelity's index, wall time and number of rows.
        """
        if self._groups is None:
            # One call per layout and fidelity: rows of one call share its wall time, so
            # fidelities in separate calls get their own measured physics cost.
            keys: dict[tuple[int, tuple[int, ...]], list[int]] = {}
            for i, key in enumerate(self._keys):
                keys.setdefault((int(self._fid_code[i]), key), []).append(i)
            self._groups = [
                (code, key, np.array(rows, dtype=np.int32)) for (code, key), rows in keys.items()
            ]
        # One call for every sub-env: its states travel as whole arrays (contiguous copies;
        # a row that does not step comes back as it went, but for the new ctrl it ignores).
        single = len(self._groups) == 1
        last_sub = np.empty_like(self._state) if self._live_data else None
        timing = []
        ctrl_cols = self._slices["ctrl"]
        for code, key, rows in self._groups:
            ids: np.ndarray | None = None  # the rows that step: None (all), ids or a mask
            if single and not all_step:  # the batch takes the mask (cheaper than ids)
                ids, count = stepping, int(np.count_nonzero(stepping))
                if not count:
                    continue
            elif not all_step:
                rows = rows[stepping[rows]]
                if not rows.size:
                    continue
            if ids is None:
                ids, count = (None if rows.size == self.num_envs else rows), int(rows.size)
            batch, nsub = self._sims_for(key, rows).batch, key[0]
            sel = slice(None) if single or ids is None else rows
            aliased = batch.state is self._state  # the rows live in this batch: no copies
            if not aliased:
                batch.state[sel] = self._state[sel]
            batch.state[sel, ctrl_cols] = ctrl[sel]
            t0 = time.perf_counter()
            if last_sub is not None and nsub > 1:  # stop before the last substep
                failed = [_step(batch, ids, nsub - 1)]
                last_sub[sel] = batch.state[sel]
                failed.append(_step(batch, ids, 1))
            else:
                failed = [_step(batch, ids, nsub)]
            timing.append((code, time.perf_counter() - t0, count))
            if not aliased:
                self._state[sel] = batch.state[sel]
            # A warning, as `TaskEnv` checks: an automatic reset in an episode's very first
            # substep leaves the time an uninterrupted step would, so time alone misses it.
            # Counts are cleared once read, so the batch's are always this step's.
            warned = _NO_IDS
            if batch.warning.any():
                warned = np.flatnonzero(batch.warning[:, :, 1].any(axis=1))
                batch.warning[warned] = 0
            for bad in (*failed, warned):
                self._state[bad, 0] = -1.0  # time goes back: the guard marks them unstable
        return last_sub, timing

    def _sims_for(self, key: tuple[int, ...], rows: np.ndarray) -> _Sims:
        """The batch of layout ``key[1:]``, its models of ``rows`` those of the sub-envs."""
        layout = key[1:]
        sims = self._sims.get(layout)
        if sims is None:
            template = self._models[int(rows[0])]
            batch = mujoco.batch.Batch(template, self.num_envs, nthread=self._nthread)
            if not any(s.batch.state is self._state for s in self._sims.values()):
                # The stacked state becomes this batch's own rows (it keeps the batch alive):
                # a step of this layout then reads and writes them in place.
                batch.state[:] = self._state
                self._state = batch.state
            sims = self._sims[layout] = _Sims(batch, [template] * self.num_envs)
        new = rows[self._new_model[rows]] if self._new_model.any() else rows[:0]
        if new.size:
            for i in new.tolist():
                sims.models[i] = self._models[i]
            self._new_model[new] = False
            sims.batch.set_models(sims.models)
        return sims

    def _replay(self, i: int, start: np.ndarray, ctrl: np.ndarray) -> None:
        """Redo sub-env ``i``'s last substep on its own ``MjData`` (derived quantities)."""
        model, data = self._models[i], self._datas[i]
        mujoco.mj_setState(model, data, start, _INTEGRATION)
        data.ctrl[:] = ctrl
        with contextlib.suppress(mujoco.FatalError):  # the batched state says what happened
            mujoco.mj_step(model, data)
        mujoco.mj_setState(model, data, self._state[i], _INTEGRATION)

    def _data_call(self, i: int, method: Any) -> Any:
        """``method(model, data)`` of sub-env ``i`` (its live ``MjData``)."""
        return method(self._models[i], self._datas[i])

    def _batch_state(self, rows: slice | np.ndarray, **step: np.ndarray) -> BatchState:
        """The rows' states; ``step`` adds ``ctrl``, ``action`` and ``qpos_before``."""
        if isinstance(rows, slice) and rows == slice(None):  # views of the whole state, kept
            if not self._views or self._views[0] is not self._state:
                state = self._state
                sl = self._slices
                self._views = (
                    state,
                    state[:, 0],
                    state[:, sl["qpos"]],
                    state[:, sl["qvel"]],
                    state[:, sl["act"]],
                )
            _, time_, qpos, qvel, act = self._views
            models: Sequence[Any] = self._models
        else:
            state = self._state[rows]
            time_, qpos = state[:, 0], state[:, self._slices["qpos"]]
            qvel, act = state[:, self._slices["qvel"]], state[:, self._slices["act"]]
            models = self._models if isinstance(rows, slice) else _Rows(self._models, rows)
        return BatchState(
            models=models,
            time=time_,
            qpos=qpos,
            qvel=qvel,
            act=act,
            constants=None if self._const is None else self._const[rows],
            **step,
        )

    def _probe_task(self) -> None:
        """Find which task methods run batched (their ``*_batch`` answers, not ``None``).

        If any does not, every sub-env keeps a live ``MjData`` (the per-env methods read it).
        """
        n, nu, nq = self.num_envs, self._ctrl_low.size, self._slices["qpos"].stop - 1
        state = self._batch_state(
            slice(None),
            ctrl=np.zeros((n, nu)),
            action=np.zeros((n, nu)),
            qpos_before=np.zeros((n, nq)),
        )
        no = np.zeros(n, dtype=bool)
        self._batched = {
            "observation": self.task.observation_batch(state) is not None,
            "terminated": self.task.terminated_batch(state) is not None,
            "diverged": self.task.diverged_batch(state) is not None,
            "step_reward": self.task.step_reward_batch(state, no) is not None,
        }
        self._batched_methods = {
            name: getattr(self.task, f"{name}_batch") for name, ok in self._batched.items() if ok
        }
        # A batched step reward reads qpos_before: no per-env before_step is needed then.
        self._live_data = not all(self._batched.values())
        if not self._live_data:
            self._datas = [None] * self.num_envs

    def _call_batched(self, name: str, *args: Any) -> np.ndarray | None:
        """``task.<name>_batch(*args)``, or ``None`` if the task computes it per env."""
        method = self._batched_methods.get(name)
        return None if method is None else method(*args)

    def _observe(self, rows: slice | np.ndarray, state: BatchState | None = None) -> np.ndarray:
        """Noisy observations of ``rows``, shape ``(len(rows), *obs_shape)``; ``state`` is
        their batch state if already built (with what the task derived from it)."""
        if state is None:
            state = self._batch_state(rows)
        obs = self._call_batched("observation", state)
        if obs is None:
            idx = np.arange(self.num_envs)[rows]
            obs = np.stack([self._data_call(i, self.task.observation) for i in idx])
        obs = np.array(obs, dtype=np.float64)
        obs = obs.reshape(len(obs), *self._obs_shape)
        if not self._any_noise:
            return obs
        noisy = self._noise_std[rows] > 0
        if noisy.any():
            idx = np.arange(self.num_envs)[rows]
            sel = idx[noisy]
            z = self._noise(sel)
            obs[noisy] = obs[noisy] + (self._noise_std[sel, None] * z).reshape(
                sel.size, *self._obs_shape
            )
        return obs

    def _noise(self, rows: np.ndarray) -> np.ndarray:
        """Next standard-normal row ``(len(rows), obs_size)`` of each sub-env's stream."""
        for i in rows[self._noise_pos[rows] >= _NOISE_CHUNK]:
            rng = self._rng(i)
            self._noise_saved[i] = rng.bit_generator.state
            self._noise_buf[i] = rng.standard_normal(self._noise_buf.shape[1:])
            self._noise_pos[i] = 0
        z = self._noise_buf[rows, self._noise_pos[rows]]
        self._noise_pos[rows] += 1
        return z

    def _infos(
        self, rows: slice | np.ndarray, unstable: np.ndarray, mask: np.ndarray | None
    ) -> dict[str, Any]:
        """Vector info dict (gymnasium's format: arrays ``(n,)`` plus ``_key`` masks).

        ``mask=None`` (a step): every sub-env reports; its mask is one shared read-only array,
        and its theta and fidelity arrays are read-only copies, shared by the steps between
        two draws.
        """
        if mask is None:  # the per-draw arrays are copied again only after a draw changed
            if self._step_info is None or self._step_info[0] != self._draws_version:
                theta, fidelity = self._theta.copy(), self._fidelity.copy()
                theta.flags.writeable = fidelity.flags.writeable = False
                mask = self._all_rows
                columns = dict(zip(self._names, theta.T, strict=True))
                theta_info = {**columns, **dict.fromkeys(self._mask_keys, mask)}
                self._step_info = (self._draws_version, theta_info, fidelity)
            _, theta_info, fidelity = self._step_info
            mask = self._all_rows
            return {
                "theta": dict(theta_info),
                "_theta": mask,
                "fidelity": fidelity,
                "_fidelity": mask,
                "unstable": unstable,
                "_unstable": mask,
            }
        else:
            theta = np.zeros_like(self._theta)
            theta[rows] = self._theta[rows]
            flags = np.zeros(self.num_envs, dtype=bool)
            flags[rows] = unstable
            fidelity = np.full(self.num_envs, None, dtype=object)
            fidelity[rows] = self._fidelity[rows]
        columns = dict(zip(self._names, theta.T, strict=True))
        return {
            "theta": {**columns, **dict.fromkeys(self._mask_keys, mask)},
            "_theta": mask,
            "fidelity": fidelity,
            "_fidelity": mask,
            "unstable": flags,
            "_unstable": mask,
        }

    def _record_costs(
        self, elapsed: float, physics: list[tuple[int, float, int]], stepped: int
    ) -> None:
        """Attribute the step's wall time to fidelities: own physics + a share of the rest.

        Args:
            elapsed: Wall time of the step.
            physics: Per batch call: fidelity index, wall time, rows stepped.
            stepped: Rows that advanced.
        """
        if not stepped:
            return
        overhead = max(0.0, elapsed - sum(t for _, t, _ in physics)) / stepped
        totals: dict[int, list[float]] = {}
        for code, seconds, count in physics:
            total = totals.setdefault(code, [0.0, 0])
            total[0] += seconds
            total[1] += count
        for code, (seconds, count) in sorted(totals.items()):
            self._record_cost(FIDELITIES[code], seconds / count + overhead, int(count))


class _Rows(Sequence):
    """``items[rows[k]]`` at position ``k``: a batch state's models without building a list
    (the batched task methods seldom read them)."""

    def __init__(self, items: list[Any], rows: np.ndarray) -> None:
        self._items, self._rows = items, rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self._items[i] for i in self._rows[k].tolist()]
        return self._items[int(self._rows[k])]


@dataclass
class _Sims:
    """A ``mujoco.batch.Batch`` of one per sub-env for the models of one layout.

    ``models[i]`` is what the batch steps sub-env ``i`` on (the batch's template for a
    sub-env of another layout, which the batch never steps). ``Batch.set_models`` is
    called again whenever a sub-env's model was replaced or rewritten in place, as its
    contract asks.
    """

    batch: mujoco.batch.Batch
    models: list[mujoco.MjModel]


def _step(batch: mujoco.batch.Batch, ids: np.ndarray | None, nstep: int) -> np.ndarray:
    """Step simulations ``ids`` (``None``: all) of ``batch`` by ``nstep`` substeps.

    Returns the ids in which MuJoCo raised an error (they keep their state from before the
    call; the others ran to completion).
    """
    try:
        batch.step(ids, nstep=nstep)
    except mujoco.batch.SimulationError as error:
        return error.ids
    return _NO_IDS


@dataclass(frozen=True)
class _Draw:
    """One episode's theta and what a sub-env needs from it (reused for point distributions)."""

    theta: np.ndarray  # physical units, the family's coordinate order
    unit: np.ndarray  # unit-cube coordinates in the env's space
    fidelity: str
    effects: ChannelEffects
    quiet: bool  # the episode draws nothing else from the generator: no theta, no noise
    model: mujoco.MjModel
    key: tuple[int, ...]
    constants: np.ndarray | None  # the task's batch constants for `model`
    reset_state: np.ndarray  # `model`'s integration state after mj_resetData


class SubEnv:
    """A view of one sub-env of a :class:`BatchedVectorEnv` (what ``SyncVectorEnv.envs`` holds).

    Args:
        vector_env: The batched env.
        index: The sub-env's index.
    """

    def __init__(self, vector_env: BatchedVectorEnv, index: int) -> None:
        self.vector_env = vector_env
        self.index = index

    @property
    def unwrapped(self) -> SubEnv:
        """The view itself (mirrors ``gym.Env.unwrapped`` for code written for sync envs)."""
        return self

    @property
    def theta(self) -> dict[str, float]:
        """Theta of the sub-env's current episode."""
        venv = self.vector_env
        return dict(zip(venv._names, venv._theta[self.index].tolist(), strict=True))

    @property
    def fidelity(self) -> str:
        """Fidelity of the sub-env's current episode."""
        return str(self.vector_env._fidelity[self.index])

    @property
    def distribution(self) -> TaskDistribution:
        """The sub-env's task distribution (used from its next reset)."""
        return self.vector_env._dists[self.index]

    @property
    def model(self) -> mujoco.MjModel | None:
        """The current episode's model."""
        return self.vector_env._models[self.index]

    @property
    def elapsed_steps(self) -> int:
        """Environment steps taken in the current episode."""
        return int(self.vector_env._steps[self.index])

    def set_task_distribution(self, distribution: TaskDistribution | Mapping[str, Any]) -> None:
        """Replace this sub-env's task distribution (from its next reset)."""
        self.vector_env.set_task_distribution(distribution, indices=[self.index])
