"""The RLlib learner: the only place the project touches RLlib."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.utils.annotations import override
from ray.tune.registry import register_env
from torch import nn

from generators import TaskDistribution, get_family, get_reality, route_mujoco_warnings
from generators.space import ParamSpace
from generators.vector import BatchedVectorEnv
from learners.config import LearnerConfig
from learners.policy import MLPPolicy

# Importing RLlib imported dm_control, whose handler logs every MuJoCo warning; the stability
# guard counts them, so send them back to the (DEBUG) log in every process running the envs.
route_mujoco_warnings(force=True)

ENV_ID = "autocurriculum-env"
"""The id under which `make_env` is registered with Ray (every EnvRunner resolves it)."""


def make_env(env_config: Mapping[str, Any]) -> gym.Env | gym.vector.VectorEnv:
    """Build an env from a plain-data env spec (what RLlib passes to every EnvRunner).

    `{"kind": "family", "family", "fidelity", "space", "distribution"}` builds a generated
    task env that draws theta at each reset; `{"kind": "reality", "reality", "params",
    "deadzone"}` builds the reality proxy (used to train the oracle).

    With a `num_envs` key (RLlib's `vector_entry_point` mode passes it) the result is a
    vector env of that many sub-envs: a `BatchedVectorEnv` for a family, a
    `SyncVectorEnv` for a reality proxy.
    """
    kind = env_config["kind"]
    num_envs = env_config.get("num_envs")
    if kind == "family":
        family = get_family(env_config["family"])
        space = ParamSpace.from_dict(env_config["space"])
        distribution = TaskDistribution.from_dict(env_config["distribution"])
        if num_envs is not None:
            return BatchedVectorEnv(
                family,
                int(num_envs),
                env_config["fidelity"],
                space=space,
                distribution=distribution,
            )
        return family.make_env(
            fidelity=env_config["fidelity"], space=space, distribution=distribution
        )
    if kind == "reality":
        proxy = get_reality(env_config["reality"])
        params, deadzone = dict(env_config["params"]), env_config["deadzone"]
        if num_envs is not None:
            return gym.vector.SyncVectorEnv(
                [lambda: proxy.make_env(params, deadzone=deadzone) for _ in range(int(num_envs))]
            )
        return proxy.make_env(params, deadzone=deadzone)
    raise ValueError(f"unknown env kind {kind!r}")


def allocate_envs(shares: Sequence[float], n: int) -> list[int]:
    """Split `n` sub-envs by `shares` (largest remainder); every positive share gets one.

    All sub-envs of an EnvRunner step in lockstep, so the counts are also the split of the
    env steps (a fidelity with 2 of 8 sub-envs gets exactly a quarter of the steps).
    """
    shares = np.asarray(shares, dtype=float)
    if shares.size == 0 or np.any(shares < 0) or shares.sum() <= 0:
        raise ValueError(f"shares must be non-negative with a positive sum (got {shares})")
    positive = int(np.count_nonzero(shares))
    if positive > n:
        raise ValueError(f"{positive} parts need at least {positive} sub-envs, have {n}")
    shares = shares / shares.sum()
    counts = (shares > 0).astype(int)
    rest = n - positive
    ideal = np.maximum(shares * n - counts, 0.0)
    extra = np.floor(ideal * rest / max(ideal.sum(), 1e-12)).astype(int) if rest else counts * 0
    counts += extra
    order = np.argsort(-(ideal * rest / max(ideal.sum(), 1e-12) - extra), kind="stable")
    for i in order[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def push_task_distribution(
    env_runner: Any, payload: Mapping[str, Any] | Sequence[Mapping[str, Any]]
) -> int:
    """Set the task distribution of the sub-envs of `env_runner`'s vector env.

    `payload` is one distribution for every sub-env or a list with one per sub-env of every
    EnvRunner (indexed by the runner's `worker_index`: the local runner 0 samples when there
    are no remote ones, remote runner i holds sub-envs from `(i - 1) * num_envs`). Handles
    both a `BatchedVectorEnv` and a `SyncVectorEnv` of `TaskEnv`s (under RLlib's wrappers).
    Returns how many sub-envs took one (0 if the runner holds no env, as the local runner
    does when remote ones sample).
    """
    if env_runner.env is None:
        return 0
    venv = env_runner.env.unwrapped
    n = venv.num_envs
    if isinstance(payload, Mapping):
        own = [payload] * n
    else:
        offset = max(int(env_runner.worker_index) - 1, 0) * n
        own = list(payload[offset : offset + n])
    if isinstance(venv, BatchedVectorEnv):
        for i, dist in enumerate(own):
            venv.set_task_distribution(dist, indices=[i])
    else:
        for env, dist in zip(venv.envs, own, strict=True):
            env.unwrapped.set_task_distribution(dist)
    return len(own)


def _count(value: Any) -> int:
    """An RLlib episode count: missing or NaN (no episode in the window) means 0."""
    return int(value) if value is not None and math.isfinite(float(value)) else 0


class StabilityCallback(RLlibCallback):
    """Counts episodes that ended because the simulation went unstable (`info["unstable"]`)."""

    @override(RLlibCallback)
    def on_episode_end(self, *, episode, metrics_logger=None, **kwargs) -> None:  # type: ignore[override]
        info = episode.get_infos(-1)
        if metrics_logger is not None:
            metrics_logger.log_value(
                "unstable_episodes", int(bool(info.get("unstable"))), reduce="sum"
            )


@dataclass
class TrainStats:
    """What one `train` call did."""

    env_steps: int
    """Env steps sampled in this call."""
    episodes: int
    """Episodes completed in this call."""
    episode_return_mean: float
    """Mean return of the most recent training episodes (RLlib's window)."""
    unstable_episodes: int
    """Episodes ended by the stability guard in this call."""
    train_s: float
    """Wall time of this call."""
    episode_log: list[dict[str, Any]] = field(default_factory=list)
    """Finished episodes of this call from every EnvRunner (see `generators.EpisodeLog`)."""
    env_steps_by_fidelity: dict[str, int] = field(default_factory=dict)
    """`env_steps` split by the fidelity the sub-envs simulated, as the batched envs counted
    them (empty for `vectorize=sync`, whose envs do not count)."""


def ppo_config(cfg: LearnerConfig, env_spec: Mapping[str, Any], seed: int) -> PPOConfig:
    """RLlib's PPO config for `cfg` on `env_spec` (what `RLlibLearner` builds and what
    `benchmarks/generators.py` samples with).

    A family's envs clip actions to the range themselves (`TaskEnv`, `BatchedVectorEnv`, in
    numpy over the batch), so RLlib's per-sub-env clipping connector is off for them.
    """
    family = env_spec.get("kind") == "family"
    batched = cfg.vectorize == "batched" and family
    return (
        PPOConfig()
        .environment(
            env=ENV_ID,
            env_config=env_spec,
            normalize_actions=cfg.normalize_actions,
            clip_actions=not cfg.normalize_actions and not family,
        )
        .env_runners(
            num_env_runners=cfg.num_env_runners,
            num_envs_per_env_runner=cfg.num_envs_per_env_runner,
            rollout_fragment_length="auto",
            # `make_env` returns the batched vector env when RLlib passes `num_envs`.
            gym_env_vectorize_mode="vector_entry_point" if batched else "sync",
        )
        .training(
            train_batch_size_per_learner=cfg.train_batch_size,
            minibatch_size=cfg.minibatch_size,
            num_epochs=cfg.num_epochs,
            lr=cfg.lr,
            gamma=cfg.gamma,
            lambda_=cfg.gae_lambda,
            clip_param=cfg.clip_param,
            entropy_coeff=cfg.entropy_coeff,
            vf_clip_param=float("inf"),
        )
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=list(cfg.hidden),
                fcnet_activation=cfg.activation,
                vf_share_layers=False,
            )
        )
        .callbacks(StabilityCallback)
        .debugging(seed=seed)
        .reporting(metrics_num_episodes_for_smoothing=20)
    )


class RLlibLearner:
    """PPO on RLlib's new API stack, trained on a task distribution pushed to every EnvRunner.

    Args:
        cfg: learner hyperparameters.
        env_spec: plain-data env spec for `make_env` (family or reality proxy).
        seed: seeds RLlib (module init, env seeds per EnvRunner).
    """

    def __init__(self, cfg: LearnerConfig, env_spec: Mapping[str, Any], seed: int) -> None:
        cfg.validate()
        self.cfg = cfg
        self.env_spec = dict(env_spec)
        if cfg.torch_threads > 0:  # process-wide: the driver trains, samples and evaluates
            torch.set_num_threads(cfg.torch_threads)
        register_env(ENV_ID, make_env)
        config = ppo_config(cfg, self.env_spec, seed)
        self.algo = config.build_algo()
        self.env_steps = 0
        self.episodes = 0
        self.unstable_episodes = 0

    @property
    def num_envs(self) -> int:
        """Sub-envs over all EnvRunners that sample."""
        return max(1, self.cfg.num_env_runners) * self.cfg.num_envs_per_env_runner

    def set_task_distribution(self, dist: TaskDistribution) -> int:
        """Push `dist` to every sub-env of every EnvRunner; returns how many envs took it."""
        return self._push(dist.to_dict())

    def set_task_distributions(self, parts: Sequence[tuple[TaskDistribution, float]]) -> list[int]:
        """Give each `(distribution, share)` part its share of the sub-envs (e.g. one part per
        fidelity); returns the sub-env count per part, which is also its share of the steps.

        Each EnvRunner gets the parts in the same proportions (as near as its sub-env count
        allows), so every runner's episodes mix all parts.
        """
        per_runner = self.cfg.num_envs_per_env_runner
        counts = allocate_envs([share for _, share in parts], per_runner)
        own = [dist.to_dict() for (dist, _), c in zip(parts, counts, strict=True) for _ in range(c)]
        self._push(own * max(1, self.cfg.num_env_runners))
        return [c * max(1, self.cfg.num_env_runners) for c in counts]

    def _push(self, payload: Mapping[str, Any] | list[Mapping[str, Any]]) -> int:
        def push(env_runner: Any) -> int:
            return push_task_distribution(env_runner, payload)

        counts = self.algo.env_runner_group.foreach_env_runner(push, local_env_runner=True)
        total = int(sum(counts))
        if total != self.num_envs:
            raise RuntimeError(f"task distribution reached {total} of {self.num_envs} envs")
        return total

    def train(self, env_steps: int, progress: Callable[[int], None] | None = None) -> TrainStats:
        """Run PPO iterations until at least `env_steps` more env steps have been sampled.

        `progress`, if given, is called with the env steps done so far after each PPO update.
        """
        t0 = time.perf_counter()
        counted0 = self._counted_steps()
        start, episodes, unstable = self.env_steps, 0, 0
        ret = float("nan")
        while self.env_steps - start < env_steps:
            result = self.algo.train()["env_runners"]
            self.env_steps += int(result["num_env_steps_sampled"])
            # RLlib reports NaN for these when no episode ended in the iteration (long
            # episodes of a good policy): that is zero episodes, and no new mean return.
            episodes += _count(result.get("num_episodes"))
            unstable += _count(result.get("unstable_episodes"))
            latest = float(result.get("episode_return_mean", float("nan")))
            ret = latest if math.isfinite(latest) else ret
            if progress is not None:
                progress(self.env_steps - start)
        self.episodes += episodes
        self.unstable_episodes += unstable
        counted = {
            f: n - counted0.get(f, 0.0)
            for f, n in self._counted_steps().items()
            if n > counted0.get(f, 0.0)
        }
        total = sum(counted.values())
        by_fidelity = {}
        if total > 0:
            # RLlib's count is the reference; the envs' counts give the split.
            steps = self.env_steps - start
            by_fidelity = {f: round(steps * n / total) for f, n in counted.items()}
        return TrainStats(
            env_steps=self.env_steps - start,
            episodes=episodes,
            episode_return_mean=ret,
            unstable_episodes=unstable,
            train_s=time.perf_counter() - t0,
            episode_log=self.drain_episodes(),
            env_steps_by_fidelity=by_fidelity,
        )

    def drain_episodes(self) -> list[dict[str, Any]]:
        """Collect (and clear) the finished-episode logs of every sub-env on every EnvRunner;
        each record gains `order`, its position in its runner's finish order (0..1)."""

        def drain(env_runner: Any) -> list[dict[str, Any]]:
            if env_runner.env is None:
                return []
            venv = env_runner.env.unwrapped
            if isinstance(venv, BatchedVectorEnv):
                return venv.episode_log.drain()
            logs = [getattr(env.unwrapped, "episode_log", None) for env in venv.envs]
            return [record for log in logs if log is not None for record in log.drain()]

        per_runner = self.algo.env_runner_group.foreach_env_runner(drain, local_env_runner=True)
        out = []
        for records in per_runner:
            # Position in the runner's finish order, 0..1: deterministic (unlike wall time)
            # and comparable across runners, which sample in step.
            for i, record in enumerate(records):
                out.append({**record, "order": i / max(len(records) - 1, 1)})
        return out

    def _env_costs(self) -> list[dict[str, dict[str, float]]]:
        """Each EnvRunner's batched-env cost records (`BatchedVectorEnv.costs`)."""

        def read(env_runner: Any) -> dict[str, dict[str, float]]:
            if env_runner.env is None or not isinstance(env_runner.env.unwrapped, BatchedVectorEnv):
                return {}
            return env_runner.env.unwrapped.costs()

        return self.algo.env_runner_group.foreach_env_runner(read, local_env_runner=True)

    def _counted_steps(self) -> dict[str, float]:
        """Sub-env steps the batched envs counted so far, by fidelity, over all EnvRunners."""
        totals: dict[str, float] = {}
        for costs in self._env_costs():
            for fidelity, c in costs.items():
                totals[fidelity] = totals.get(fidelity, 0.0) + c["env_steps"]
        return totals

    def sim_costs(self) -> dict[str, float]:
        """Measured simulation cost by fidelity (seconds per env step) over all EnvRunners.

        Read from the batched vector envs, which time their own stepping; each runner's
        smoothed value is weighted by the steps it measured. Empty for `vectorize=sync`.
        """
        totals: dict[str, list[float]] = {}
        for costs in self._env_costs():
            for fidelity, c in costs.items():
                if math.isnan(c["s_per_step"]):  # stepped once: not timed yet
                    continue
                acc = totals.setdefault(fidelity, [0.0, 0.0])
                acc[0] += c["s_per_step"] * c["env_steps"]
                acc[1] += c["env_steps"]
        return {f: seconds / steps for f, (seconds, steps) in totals.items() if steps > 0}

    def policy(self) -> MLPPolicy:
        """The current deterministic policy (action mean) as a local torch module.

        Weights come from the learner group (the trained copy: an EnvRunner's copy can lag,
        e.g. right after `restore`); the local module only supplies the layer layout.
        """
        module = self.algo.get_module()
        actor = "actor_encoder" if hasattr(module.encoder, "actor_encoder") else "encoder"
        parts = ((f"encoder.{actor}", getattr(module.encoder, actor)), ("pi", module.pi))
        names = [
            f"{prefix}.{name}"
            for prefix, sub in parts
            for name, m in sub.named_modules()
            if isinstance(m, nn.Linear)
        ]
        weights = self.algo.learner_group.get_weights([DEFAULT_MODULE_ID])[DEFAULT_MODULE_ID]
        layers = [
            (torch.as_tensor(weights[f"{n}.weight"]), torch.as_tensor(weights[f"{n}.bias"]))
            for n in names
        ]
        space = module.action_space
        return MLPPolicy(
            layers,
            self.cfg.activation,
            np.asarray(space.low),
            np.asarray(space.high),
            self.cfg.normalize_actions,
        )

    def save(self, path: str | Path) -> None:
        """Write the RLlib checkpoint and the learner's counters under `path`."""
        path = Path(path).resolve()  # RLlib reads a relative path as a URI without scheme
        self.algo.save_to_path(str(path / "rllib"))
        counters = {
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "unstable_episodes": self.unstable_episodes,
            "cfg": asdict(self.cfg),
        }
        (path / "learner.json").write_text(json.dumps(counters))

    def restore(self, path: str | Path) -> None:
        """Load what `save` wrote (weights, optimizer, connector state, counters)."""
        path = Path(path).resolve()
        self.algo.restore_from_path(str(path / "rllib"))
        counters = json.loads((path / "learner.json").read_text())
        self.env_steps = int(counters["env_steps"])
        self.episodes = int(counters["episodes"])
        self.unstable_episodes = int(counters["unstable_episodes"])

    def stop(self) -> None:
        """Release the Algorithm's actors."""
        self.algo.stop()
