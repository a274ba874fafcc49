"""The closed loop: propose, generate, train, evaluate, update, record; resumable."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from evaluators import (
    EpisodeStats,
    OracleCache,
    OracleRecord,
    RegionResult,
    Trajectory,
    evaluate_points,
    evaluate_policy,
    evaluate_regions,
    normalized_transfer_ratio,
    transfer_ratio,
    zero_policy,
)
from generators import FIDELITIES, ParamSpace, Region, TaskDistribution, get_family, get_reality
from learners.policy import MLPPolicy
from loop.checkpoint import Checkpoints, load_state, save_state
from loop.config import Config, ConfigError
from loop.controllers import (
    Proposal,
    ProposalResult,
    learning_progress,
    make_controller,
    to_task_distributions,
)
from loop.journal import Journal, jsonable
from loop.scheduler import FidelityBudget, Scheduler, training_costs
from loop.tracking import Tracker

# Evaluation seeds are common random numbers: every evaluation of a run (and the oracle's)
# sees the same episodes, so differences between iterations and methods are paired.
REAL_EVAL_SEED = 1_000_000
REGION_EVAL_SEED = 2_000_000
IDENTIFY_SEED = 3_000_000  # system identification's real episodes: apart from the evaluation's
WORLDS_EVAL_SEED = 4_000_000  # sim episodes on the identified worlds (deployment choice)
ORACLE_TRAIN_SEED = 0  # oracles are shared by every run with the same reality config

COMPLETED, BUDGET_EXHAUSTED, FAILED = "completed", "budget_exhausted", "failed"


@dataclass
class LoopState:
    """The loop's own counters, checkpointed with the learner and controller."""

    iteration: int = 0
    """Completed iterations."""
    env_steps: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIDELITIES, 0))
    """Training env steps by fidelity."""
    eval_env_steps: int = 0
    real_episodes: int = 0
    wall_s: float = 0.0
    controller_s: float = 0.0
    rejected_batches: int = 0
    unstable_episodes: int = 0
    region_train_episodes: list[int] = field(default_factory=list)
    """Training episodes per region (index as in `regions`), over the whole run."""
    region_unstable: list[int] = field(default_factory=list)
    """Training episodes ended by the stability guard per region, over the whole run."""
    deployed: dict[str, float] | None = None
    """The deployment policy's iteration and its score (`eval/deploy_score`: the mean region
    return, or the mean return on the identified worlds; see `eval.deploy`)."""
    real: dict[str, float | None] | None = None
    """Latest real-proxy evaluation: iteration, real_return, stderr, transfer_ratio."""


def _numpy_rng_state() -> list[Any]:
    """numpy's global RNG state as plain data (loadable with `weights_only=True`)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def per_region(episodes: list[dict[str, Any]], regions: list[Region]) -> list[dict[str, Any]]:
    """Training episodes, unstable ones and mean return in each region (unit-cube theta)."""
    out = []
    for region in regions:
        inside = [e for e in episodes if region.contains(np.asarray(e["theta_u"]))]
        returns = [e["return"] for e in inside]
        out.append(
            {
                "index": region.index,
                "episodes": len(inside),
                "unstable": sum(e["unstable"] for e in inside),
                "return_mean": float(np.mean(returns)) if returns else None,
            }
        )
    return out


def count_in(episodes: list[dict[str, Any]], proposal: Proposal) -> tuple[int, int]:
    """Training episodes that ran in `proposal`'s box at its fidelity, and how many of them
    the stability guard ended (the proposal's infeasibility)."""
    inside = [
        e
        for e in episodes
        if e["fidelity"] == proposal.fidelity and proposal.contains(np.asarray(e["theta_u"]))
    ]
    return len(inside), sum(bool(e["unstable"]) for e in inside)


def make_scheduler(cfg: Config) -> Scheduler:
    """Budgets per fidelity from `budget`; the target is the fidelity the run is judged at."""
    b = cfg.budget
    budgets = {
        "coarse": FidelityBudget(b.coarse_env_steps, b.coarse_sim_s),
        "fine": FidelityBudget(b.fine_env_steps, b.fine_sim_s),
    }
    family = get_family(cfg.task)
    budgets = {f: v for f, v in budgets.items() if f in family.fidelities}
    if cfg.controller.method == "bo":
        target = cfg.controller.fidelities[-1]
    else:
        target = cfg.controller.fidelity
    return Scheduler(budgets, target)


def _diagnostic_scalars(
    diagnostics: dict[str, Any], names: Sequence[str]
) -> dict[str, float | None]:
    """Journal scalars of a model-based controller's last propose (empty for baselines).

    ``names`` are the space's parameters: the GP's relevance of each one (once there is a
    GP) becomes ``controller/relevance/<name>``, so W&B plots what the boxes focus on.
    """
    if not diagnostics:
        return {}
    relevance = diagnostics.get("relevance") or []
    per_param = (
        {f"controller/relevance/{n}": float(v) for n, v in zip(names, relevance, strict=True)}
        if len(relevance) == len(names)
        else {}
    )

    def mean(key: str) -> float | None:
        values = [v for v in diagnostics.get(key) or [] if v is not None]
        return float(np.mean(values)) if values else None

    return {
        "controller/fit_s": diagnostics.get("fit_s"),
        "controller/acq_value_mean": mean("acq_values"),
        "controller/info_gain_per_cost_mean": mean("info_gain_per_cost"),
        "controller/fallback_slots": len(diagnostics.get("fallback_slots") or []),
        "controller/n_obs": diagnostics.get("n_obs"),
        **per_param,
    }


def family_env_spec(cfg: Config, space: ParamSpace, dist: TaskDistribution) -> dict[str, Any]:
    """Env spec (plain data) for generated envs of the run's family."""
    return {
        "kind": "family",
        "family": cfg.task,
        "fidelity": dist.fidelity,
        "space": space.to_dict(),
        "distribution": dist.to_dict(),
    }


def reality_env_spec(cfg: Config) -> dict[str, Any]:
    """Env spec (plain data) for the reality proxy."""
    return {
        "kind": "reality",
        "reality": cfg.reality.env,
        "params": dict(cfg.reality.params),
        "deadzone": float(cfg.reality.deadzone),
    }


def evaluate_real(
    policy: Any, cfg: Config, episodes: int, seed: int = REAL_EVAL_SEED, record: bool = False
) -> EpisodeStats:
    """Return of `policy` on the reality proxy over `episodes` episodes (fixed seeds from
    `seed`; with `record`, their trajectories too)."""
    proxy = get_reality(cfg.reality.env)
    envs = [
        proxy.make_env(dict(cfg.reality.params), deadzone=cfg.reality.deadzone)
        for _ in range(min(episodes, 8))
    ]
    try:
        return evaluate_policy(policy, envs, episodes, seed, record=record)
    finally:
        for env in envs:
            env.close()


def replaces_deployed(rule: str, deployed: dict[str, float] | None, region_return: float) -> bool:
    """Whether a new iterate with mean region return `region_return` becomes the deployed
    policy: always under `last`; under `best` when it is at least the deployed one's."""
    return rule == "last" or deployed is None or region_return >= deployed["return"]


def floor_return(cfg: Config) -> float:
    """Real-proxy return of the do-nothing policy: the 0 of the normalized transfer ratio.

    A calibration of the proxy, like the oracle's return; not charged to `real_episodes`.
    """
    proxy = get_reality(cfg.reality.env)
    env = proxy.make_env(dict(cfg.reality.params), deadzone=cfg.reality.deadzone)
    act_dim = int(np.prod(env.action_space.shape))
    env.close()
    return evaluate_real(zero_policy(act_dim), cfg, cfg.oracle.eval_episodes).mean


def oracle_spec(cfg: Config) -> dict[str, Any]:
    """What identifies an oracle: the reality config and how the oracle is trained."""
    learner = asdict(cfg.learner)
    learner.pop("env_steps_per_iteration")
    learner.pop("torch_threads")  # how fast, not what: older caches stay valid
    spec = {
        "reality": {k: v for k, v in reality_env_spec(cfg).items() if k != "kind"},
        "learner": learner,
        "env_steps": cfg.oracle.env_steps,
        "eval_episodes": cfg.oracle.eval_episodes,
        "seed": ORACLE_TRAIN_SEED,
    }
    if cfg.oracle.checkpoints > 1:  # one checkpoint (the last policy) keeps older caches valid
        spec["checkpoints"] = cfg.oracle.checkpoints
    return spec


def get_oracle(cfg: Config, console: Console) -> OracleRecord:
    """The cached oracle for the run's reality config, trained now if missing (needs Ray)."""
    from learners import RLlibLearner

    cache = OracleCache(cfg.oracle.cache_dir)

    def train() -> Iterator[tuple[Any, int, float]]:
        total, parts = cfg.oracle.env_steps, cfg.oracle.checkpoints
        console.print(
            f"[bold]oracle[/]: training on {cfg.reality.env} for {total:,} env steps, "
            f"keeping the best of {parts} checkpoints (cached for later runs)"
        )
        learner = RLlibLearner(cfg.learner, reality_env_spec(cfg), ORACLE_TRAIN_SEED)
        seconds = 0.0
        try:
            with console.status("oracle: training") as status:
                for k in range(parts):
                    # Equal parts of the budget; the last one takes the remainder.
                    part = total * (k + 1) // parts - total * k // parts
                    stats = learner.train(
                        part,
                        lambda _: status.update(
                            f"oracle: {learner.env_steps:,}/{total:,} env steps"
                        ),
                    )
                    seconds += stats.train_s
                    yield learner.policy(), learner.env_steps, seconds
        finally:
            learner.stop()

    def evaluate(policy: Any) -> tuple[float, float, int]:
        stats = evaluate_real(policy, cfg, cfg.oracle.eval_episodes)
        return stats.mean, stats.stderr, stats.episodes

    return cache.get_or_train(oracle_spec(cfg), train, evaluate)


def start_ray(cfg: Config) -> None:
    """Join `ray.address`, or start a local Ray with `ray.num_cpus`; dashboard off by default."""
    import ray

    # RLlib's API-migration notices are not actionable for users of this tool; errors still show.
    for name in ("ray", "ray.rllib", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*already in registry.*")
    if ray.is_initialized():
        return
    if cfg.ray.address:
        ray.init(address=cfg.ray.address, log_to_driver=False)
    else:
        ray.init(
            num_cpus=cfg.ray.num_cpus,
            include_dashboard=cfg.ray.include_dashboard,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )


class Loop:
    """One run: its directory, learner, controller, journal, checkpoints and tracker.

    Args:
        cfg: the validated config.
        resolved: the same config as OmegaConf (written to `config.yaml`, sent to W&B).
        console: where progress and results are printed.
    """

    def __init__(self, cfg: Config, resolved: DictConfig, console: Console | None = None) -> None:
        self.cfg = cfg
        self.resolved = resolved
        self.console = console or Console()
        self.run_dir = cfg.run_dir()
        self.family = get_family(cfg.task)
        self.space = cfg.param_space()
        dims = cfg.eval.region_dims or self.space.names[:2]
        self.region_dims = list(dims)
        self.regions = self.space.regions(self.region_dims, cfg.eval.region_bins)
        self.journal = Journal(self.run_dir / "journal.jsonl")
        self.checkpoints = Checkpoints(self.run_dir / "checkpoints", cfg.run.keep_checkpoints)
        self.state = LoopState(
            region_train_episodes=[0] * len(self.regions), region_unstable=[0] * len(self.regions)
        )
        self.controller = make_controller(
            cfg.controller.method, self.space, cfg.controller.fidelity, cfg.seed, cfg.controller
        )
        self.scheduler = make_scheduler(cfg)
        self.history: list[dict[str, Any]] = []
        self.learner: Any = None
        self.oracle: OracleRecord | None = None
        self.last_regions: list[RegionResult] = []
        self.deploy_policy: Any = None
        self.current_policy: Any = None
        self.floor_return: float | None = None
        self._warned_oracle = False
        self.tracker: Tracker | None = None
        self._show: Any = lambda text: None

    # -- set-up -------------------------------------------------------------------------------

    def _prepare_dir(self, resume: bool) -> str:
        meta = self.run_dir / "run.json"
        if resume:
            if not meta.is_file():
                raise ConfigError("run.dir", f"{self.run_dir} holds no run to resume")
            return json.loads(meta.read_text())["run_id"]
        if meta.exists():
            raise ConfigError(
                "run.dir", f"{self.run_dir} already holds a run (resume it, or pick run.dir=...)"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(self.resolved, resolve=True))
        run_id = f"{self.cfg.name}-{uuid.uuid4().hex[:8]}"
        meta.write_text(json.dumps({"run_id": run_id, "created": time.time()}))
        return run_id

    def _seed(self) -> None:
        np.random.seed(self.cfg.seed)
        torch.manual_seed(self.cfg.seed)

    def _restore(self) -> None:
        ckpt = self.checkpoints.latest()
        record = None
        if ckpt is not None:
            saved = load_state(ckpt / "state.pt")
            self.state = LoopState(**saved["loop"])
            self.controller.load_state_dict(saved["controller"])
            if "scheduler" in saved:
                self.scheduler.load_state_dict(saved["scheduler"])
            else:  # a checkpoint from before the scheduler: steps were all it counted
                self.scheduler.env_steps.update(self.state.env_steps)
            torch.set_rng_state(saved["torch_rng"])
            name, keys, pos, has_gauss, cached = saved["numpy_rng"]
            np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
            self.learner.restore(ckpt / "learner")
            record = saved["record"]
            self.last_regions = [RegionResult(**r) for r in record["regions"]]
            self.deploy_policy = MLPPolicy.load(ckpt / "deploy_policy.pt")
        self.history = self.journal.recover(record)

    # -- one iteration ------------------------------------------------------------------------

    def _iteration(self, k: int, steps: int, last: bool) -> dict[str, Any]:
        cfg, state = self.cfg, self.state
        t_iter = time.perf_counter()
        scheduler = self.scheduler
        # 1. Propose: the controller picks the training contexts (and fidelities).
        self.controller.allowed_fidelities = scheduler.available()
        self.controller.progress = max(k / cfg.budget.iterations, scheduler.target_spent())
        t0 = time.perf_counter()
        proposals = self.controller.propose(self.history)
        propose_s = time.perf_counter() - t0
        diagnostics = dict(self.controller.diagnostics)
        parts = to_task_distributions(proposals)
        # 2. Generate: each fidelity gets its share of the sub-envs; every sub-env draws its
        #    theta from its part at reset and builds that MuJoCo model (the stability guard
        #    ends and counts unstable episodes).
        counts = self.learner.set_task_distributions(parts)
        env_share = {d.fidelity: c / sum(counts) for (d, _), c in zip(parts, counts, strict=True)}
        steps = max(1, scheduler.plan(env_share, steps))
        # 3. Train.
        stats = self.learner.train(
            steps, lambda done: self._show(f"training {done:,}/{steps:,} env steps")
        )
        self._show("evaluating")
        costs = self.learner.sim_costs()  # measured, for the scheduler and the journal
        by_fidelity = stats.env_steps_by_fidelity or {
            f: round(stats.env_steps * share) for f, share in env_share.items()
        }
        scheduler.record(by_fidelity, costs)
        # What the controller weighs information against: the whole training step.
        step_costs, learner_s = training_costs(costs, by_fidelity, stats.train_s)
        for f in state.env_steps:
            state.env_steps[f] = scheduler.env_steps.get(f, 0)
        state.unstable_episodes += stats.unstable_episodes
        train_regions = per_region(stats.episode_log, self.regions)
        for r in train_regions:
            state.region_train_episodes[r["index"]] += r["episodes"]
            state.region_unstable[r["index"]] += r["unstable"]
        policy = self.current_policy = self.learner.policy()
        # 4. Evaluate: per region on high-fidelity sim; on the reality proxy on a cadence.
        t_eval = time.perf_counter()
        regions = evaluate_regions(
            policy,
            self.family,
            self.space,
            self.regions,
            fidelity=cfg.eval.fidelity,
            episodes_per_region=cfg.eval.episodes_per_region,
            seed=REGION_EVAL_SEED,
        )
        state.eval_env_steps += sum(r.env_steps for r in regions)
        self.last_regions = regions
        region_means = np.array([r.mean_return for r in regions])
        # 4a. Real episodes of this iterate for identification (and its deployment check).
        ident = cfg.controller.identify
        real = None
        if ident.episodes > 0 and ((k + 1) % ident.every == 0 or last):
            real = self._record_real(k, policy)
        score, worlds = self._deployment_score(
            policy, float(region_means.mean()), real.mean if real is not None else None
        )
        self._select_deployment(k, policy, score, real.mean if real is not None else None)
        record: dict[str, Any] = {
            "iteration": k,
            "train/env_steps": stats.env_steps,
            "train/episodes": stats.episodes,
            "train/return_mean": stats.episode_return_mean,
            "train/unstable_episodes": stats.unstable_episodes,
            "train/unstable_regions": sum(r["unstable"] > 0 for r in train_regions),
            "train/regions": train_regions,
            "train/s": stats.train_s,
            **{f"cost/{fid}_s_per_step": c for fid, c in costs.items()},
            **{f"cost/{fid}_train_s_per_step": c for fid, c in step_costs.items()},
            "cost/learner_s_per_step": learner_s,
            "eval/region_return_mean": float(region_means.mean()),
            "eval/region_return_min": float(region_means.min()),
            "eval/region_error_mean": float(np.mean([r.error for r in regions])),
            "eval/region_unstable": sum(r.unstable for r in regions),
            "eval/deployed_iteration": state.deployed["iteration"],
            "eval/deploy_score": score,
            "eval/deploy_worlds": worlds,
        }
        if (k + 1) % cfg.eval.real_every == 0 or last:
            record.update(self._real_eval(k))
        record["eval/s"] = time.perf_counter() - t_eval
        # 4b. Identify: the real episodes locate the real system in Theta for what comes next.
        if real is not None:
            record.update({"identify/real_return": real.mean, "identify/episodes": real.episodes})
            if not last:
                record.update(self._identify(real.trajectories))
        # 5. Update: the controller observes the learning signal and the measured cost.
        t0 = time.perf_counter()
        weights = np.array([p.weight for p in proposals], dtype=float)
        share = weights / weights.sum()
        scale = self._return_scale()
        results = []
        for p, s in zip(proposals, share, strict=True):
            episodes, unstable = count_in(stats.episode_log, p)
            results.append(
                ProposalResult(
                    p,
                    learning_progress(stats.episode_log, p) / scale,
                    float(stats.train_s * s),
                    unstable=unstable,
                    s_per_step=step_costs.get(p.fidelity, float("nan")),
                    episodes=episodes,
                )
            )
        normalized = [{**e, "return": e["return"] / scale} for e in stats.episode_log]
        self.controller.observe(results, episodes=normalized)
        observe_s = time.perf_counter() - t0
        state.controller_s += propose_s + observe_s
        state.iteration = k + 1
        signal = [r.value for r in results if not r.proposal.explore]
        finite = [v for v in signal if np.isfinite(v)]
        spent = scheduler.spent_shares()
        record.update(
            {
                "controller/propose_s": propose_s,
                "controller/propose_share": propose_s / (time.perf_counter() - t_iter),
                "controller/observe_s": observe_s,
                "controller/proposals": len(proposals),
                "controller/signal_mean": float(np.mean(finite)) if finite else None,
                "controller/target_share": float(
                    np.mean([p.fidelity == scheduler.target for p in proposals if not p.explore])
                ),
                **_diagnostic_scalars(diagnostics, self.space.names),
                **{f"train/{f}_env_steps": n for f, n in by_fidelity.items()},
                "budget/fine_env_steps": state.env_steps["fine"],
                "budget/coarse_env_steps": state.env_steps["coarse"],
                "budget/surrogate_env_steps": state.env_steps["surrogate"],
                **{f"budget/{f}_sim_s": v for f, v in scheduler.sim_s.items()},
                **{f"budget/{f}_share": v for f, v in spent.items()},
                "budget/real_episodes": state.real_episodes,
                "regions": [r.to_dict() for r in regions],
                "proposals": [p.to_dict() for p in proposals],
                "controller/signal": [r.value for r in results],
                "controller/diagnostics": diagnostics,
            }
        )
        return record

    def _record_real(self, k: int, policy: Any) -> EpisodeStats | None:
        """`controller.identify.episodes` real episodes of `policy` (charged to
        `real_episodes`, seeds of their own) for a controller that identifies
        (`observe_real`); None for the others (the baselines)."""
        if getattr(self.controller, "observe_real", None) is None:
            return None
        n = self.cfg.controller.identify.episodes
        real = evaluate_real(policy, self.cfg, n, IDENTIFY_SEED + k * n, record=True)
        self.state.real_episodes += real.episodes
        return real

    def _identify(self, trajectories: list[Trajectory]) -> dict[str, Any]:
        """Identify the real system from the recorded episodes; journal what was found."""
        try:
            found = self.controller.observe_real(trajectories, self.family)
        except ValueError as exc:  # e.g. no episode long enough yet: keep the last answer
            self.console.print(f"[yellow]identification skipped[/]: {exc}")
            return {}
        self.state.controller_s += found.seconds
        names = self.space.names
        best = self.space.from_unit(found.best)
        low, high = self.space.from_unit(found.low), self.space.from_unit(found.high)
        return {
            "identify/best_error": found.best_error,
            "identify/nominal_error": found.nominal_error,
            "identify/consistent": len(found.consistent),
            "identify/box_width_mean": float(np.mean(found.high - found.low)),
            "identify/windows": found.windows,
            "identify/s": found.seconds,
            **{f"identify/best/{n}": best[n] for n in names},
            **{f"identify/low/{n}": low[n] for n in names},
            **{f"identify/high/{n}": high[n] for n in names},
            "identification": found.to_dict(),
        }

    def _return_scale(self) -> float:
        """Per-family scale of the learning signal: the gap between the oracle and doing
        nothing on the reality proxy (returns differ by orders of magnitude by family)."""
        if self.floor_return is None:
            return 1.0
        gap = abs(self._oracle_return() - self.floor_return)
        return gap if gap > 1e-9 else 1.0

    def _deployment_score(
        self, policy: Any, region_return: float, real_return: float | None
    ) -> tuple[float, str]:
        """What `eval.deploy=best` ranks iterates by, and on which worlds: the mean region
        return, or, once the controller has identified the real system (`particles`), the
        mean sim return on the identified thetas, the worlds the curriculum trains for,
        capped by the iterate's own identification episodes' real return (`real_return`)
        where it has some: the identified worlds miss what the search cannot see, so an
        iterate that balances them but not the real system is not deployed over one shown
        to do both. As the worlds change with each identification, the deployed policy is
        scored again on the same episodes, so the two are compared on equal terms."""
        particles = getattr(self.controller, "particles", None)
        worlds = particles() if particles is not None else None
        if worlds is None or self.cfg.eval.deploy == "last":
            return region_return, "regions"
        cfg = self.cfg.eval

        def score(p: Any, real: float | None) -> float:
            stats = evaluate_points(
                p,
                self.family,
                self.space,
                worlds,
                fidelity=cfg.fidelity,
                episodes=len(self.regions) * cfg.episodes_per_region,
                seed=WORLDS_EVAL_SEED,
            )
            self.state.eval_env_steps += stats.env_steps
            return stats.mean if real is None else min(stats.mean, real)

        deployed = self.state.deployed
        if cfg.deploy == "best" and deployed is not None:
            deployed["return"] = score(self.deploy_policy, deployed.get("real_return"))
        return score(policy, real_return), "identified"

    def _select_deployment(
        self, k: int, policy: Any, score: float, real_return: float | None = None
    ) -> None:
        """Keep the policy to deploy (`eval.deploy`), with its real return if it has one."""
        if replaces_deployed(self.cfg.eval.deploy, self.state.deployed, score):
            self.state.deployed = {"iteration": k, "return": score}
            if real_return is not None:
                self.state.deployed["real_return"] = real_return
            self.deploy_policy = policy

    def _real_eval(self, k: int) -> dict[str, float]:
        """Evaluate the deployment policy on the reality proxy (charged to `real_episodes`)."""
        stats = evaluate_real(self.deploy_policy, self.cfg, self.cfg.reality.episodes)
        self.state.real_episodes += stats.episodes
        oracle, floor = self._oracle_return(), self.floor_return
        # The plain ratio needs a positive oracle return, the normalized one an oracle that
        # beats doing nothing; otherwise they are undefined (None), not an error.
        ratio = transfer_ratio(stats.mean, oracle) if oracle > 0 else None
        normalized = None
        if oracle > floor:
            normalized = normalized_transfer_ratio(stats.mean, oracle, floor)
        elif not self._warned_oracle:
            self._warned_oracle = True
            self.console.print(
                f"[yellow]warning[/]: the oracle's real return {oracle:.1f} does not beat doing "
                f"nothing ({floor:.1f}); raise oracle.env_steps for a meaningful ratio"
            )
        self.state.real = {
            "iteration": k,
            "real_return": stats.mean,
            "real_return_stderr": stats.stderr,
            "transfer_ratio": ratio,
            "transfer_ratio_normalized": normalized,
        }
        return {
            "real/return": stats.mean,
            "real/return_stderr": stats.stderr,
            "real/transfer_ratio": ratio,
            "real/transfer_ratio_normalized": normalized,
            "real/unstable": stats.unstable,
            "real/deployed_iteration": self.state.deployed["iteration"],
        }

    def _oracle_return(self) -> float:
        if self.cfg.oracle.reference_return is not None:
            return float(self.cfg.oracle.reference_return)
        assert self.oracle is not None
        return self.oracle.real_return

    def _record(self, record: dict[str, Any]) -> None:
        """Checkpoint first (it carries the record), then the journal line, then W&B."""
        policy = self.current_policy

        def write(tmp: Path) -> None:
            self.learner.save(tmp / "learner")
            policy.save(tmp / "policy.pt")
            self.deploy_policy.save(tmp / "deploy_policy.pt")
            save_state(
                tmp / "state.pt",
                {
                    "loop": asdict(self.state),
                    "controller": self.controller.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "numpy_rng": _numpy_rng_state(),
                    "record": record,
                },
            )

        self.checkpoints.save(record["iteration"], write)
        self.journal.append(record)
        self.history.append(record)
        self.tracker.log(record, step=record["iteration"])
        self.tracker.log_regions(
            self.last_regions, self.region_dims, self.cfg.eval.region_bins, record["iteration"]
        )
        self.tracker.log_proposals(
            self._proposal_rows(record), self.space.names, record["iteration"]
        )
        slice_ = getattr(self.controller, "posterior_slice", None)
        if slice_ is not None and self.tracker.run is not None:
            grids = slice_(self.region_dims)
            if grids is not None:
                self.tracker.log_posterior(*grids, self.region_dims, record["iteration"])

    def _proposal_rows(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """Proposals of a journal record with their signal and theta in physical units."""
        rows = []
        for p, signal in zip(record["proposals"], record["controller/signal"], strict=True):
            point = p["point"]
            theta = self.space.from_unit(np.asarray(point)) if point is not None else None
            rows.append(
                {
                    "fidelity": p["fidelity"],
                    "weight": p["weight"],
                    "explore": p["explore"],
                    "signal": signal,
                    "theta": [theta[n] if theta else None for n in self.space.names],
                }
            )
        return rows

    # -- the run ------------------------------------------------------------------------------

    def _budget_left(self, wall_s: float) -> tuple[bool, int]:
        """Whether another iteration may start, and how many env steps it may train."""
        budget, state = self.cfg.budget, self.state
        if state.iteration >= budget.iterations or wall_s >= budget.wall_s:
            return False, 0
        if self.scheduler.exhausted():
            return False, 0
        return True, self.cfg.learner.env_steps_per_iteration

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Run (or resume) until a budget is spent; write and return `summary.json`."""
        cfg = self.cfg
        run_id = self._prepare_dir(resume)
        self._seed()
        session_t0 = time.perf_counter()
        status = FAILED
        error: str | None = None
        try:
            start_ray(cfg)
            if cfg.oracle.reference_return is None:
                self.oracle = get_oracle(cfg, self.console)
                self.console.print(
                    f"[bold]oracle[/]: real return {self.oracle.real_return:.1f} "
                    f"(cache key {self.oracle.key})"
                )
            self.floor_return = floor_return(cfg)
            from learners import RLlibLearner

            initial = TaskDistribution.point(self.space, None, cfg.controller.fidelity)
            self.learner = RLlibLearner(
                cfg.learner, family_env_spec(cfg, self.space, initial), cfg.seed
            )
            if resume:
                self._restore()
            wall_base = self.state.wall_s
            self.tracker = Tracker(
                cfg.wandb.mode,
                cfg.wandb.project,
                cfg.wandb.entity,
                cfg.wandb.group,
                cfg.name,
                self.run_dir,
                run_id,
                OmegaConf.to_container(self.resolved, resolve=True),
            )
            status = self._iterate(wall_base, session_t0)
            last = self.state.iteration - 1
            if last >= 0 and (self.state.real is None or self.state.real["iteration"] != last):
                # A budget stopped the run after an iteration without a real evaluation.
                self._real_eval(last)
        except KeyboardInterrupt:
            error = "interrupted"
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            summary = self._summary(status, error)
            self._write_summary(summary)
            if self.tracker is not None:
                latest = self.checkpoints.latest()
                if latest is not None and status != FAILED:
                    self.tracker.log_artifact(latest / "policy.pt", f"{run_id}-policy", "model")
                self.tracker.finish(summary)
            if self.learner is not None:
                self.learner.stop()
        return summary

    def _iterate(self, wall_base: float, session_t0: float) -> str:
        cfg, state = self.cfg, self.state
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            bar = progress.add_task(
                cfg.controller.method,
                total=cfg.budget.iterations,
                completed=state.iteration,
                info=f"{sum(state.env_steps.values()):,} steps",
            )
            self._show = lambda text: progress.update(bar, info=text)
            while True:
                wall = wall_base + time.perf_counter() - session_t0
                go, steps = self._budget_left(wall)
                if not go:
                    break
                k = state.iteration
                # Last when the next iteration could not start (real eval always runs then;
                # should a mixed-fidelity iteration end the budget unforeseen, `run` does).
                last = (
                    k + 1 >= cfg.budget.iterations
                    or self.scheduler.remaining_steps(self.scheduler.target) <= steps
                )
                record = self._iteration(k, steps, last)
                state.wall_s = wall_base + time.perf_counter() - session_t0
                record["wall_s"] = state.wall_s
                record["controller_s"] = state.controller_s
                self._record(record)
                progress.update(
                    bar,
                    completed=state.iteration,
                    info=(
                        f"{sum(state.env_steps.values()):,} steps | "
                        f"train {record['train/return_mean']:.0f} | "
                        f"regions {record['eval/region_return_mean']:.0f}"
                        + (
                            f" | real {record['real/return']:.0f}"
                            if "real/return" in record
                            else ""
                        )
                    ),
                )
        return COMPLETED if state.iteration >= cfg.budget.iterations else BUDGET_EXHAUSTED

    def _summary(self, status: str, error: str | None) -> dict[str, Any]:
        state, real = self.state, self.state.real or {}
        oracle_return = (
            self.cfg.oracle.reference_return
            if self.cfg.oracle.reference_return is not None
            else (self.oracle.real_return if self.oracle else None)
        )
        summary: dict[str, Any] = {
            "name": self.cfg.name,
            "status": status,
            "transfer_ratio": real.get("transfer_ratio"),
            "transfer_ratio_normalized": real.get("transfer_ratio_normalized"),
            "floor_return": self.floor_return,
            "deployed_iteration": (state.deployed or {}).get("iteration"),
            "real_return": real.get("real_return"),
            "real_return_stderr": real.get("real_return_stderr"),
            "oracle_return": oracle_return,
            "iterations": state.iteration,
            "env_steps": dict(state.env_steps),
            "eval_env_steps": state.eval_env_steps,
            "real_episodes": state.real_episodes,
            "wall_s": state.wall_s,
            "controller_s": state.controller_s,
            "rejected_batches": state.rejected_batches,
            "unstable_episodes": state.unstable_episodes,
            "budget": self.scheduler.to_dict(),
            "regions": [
                {
                    **r.to_dict(),
                    "train_episodes": state.region_train_episodes[r.index],
                    "train_unstable": state.region_unstable[r.index],
                }
                for r in self.last_regions
            ],
            "controller": self.cfg.controller.method,
            "seed": self.cfg.seed,
        }
        if error:
            summary["error"] = error
        return summary

    def _write_summary(self, summary: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.run_dir / "summary.json.tmp"
        tmp.write_text(json.dumps(jsonable(summary), indent=2, allow_nan=False))
        os.replace(tmp, self.run_dir / "summary.json")
