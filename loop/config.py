"""The run config: package schemas composed, merged from YAML and dotlist, validated early.

Everything here runs before Ray starts, so a bad config costs seconds and names its key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from evaluators.config import EvalConfig, OracleConfig
from generators import ParamSpace, get_family, get_reality
from generators.config import ParamOverride, RealityConfig
from learners.config import LearnerConfig

WANDB_MODES = ("offline", "online", "disabled")


class ConfigError(ValueError):
    """A config value that cannot work; `key` is its dotted path."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


SIGNALS = ("box", "local")
"""Values of `controller.signal`."""

RELEVANCES = ("signal", "returns")
"""Values of `controller.relevance`."""


@dataclass
class IdentifyConfig:
    """`bo`'s system identification: real episodes that locate the reality proxy in Theta
    (`evaluators.identify`), so that the curriculum trains where the real system can be."""

    episodes: int = 4
    """Real-proxy episodes recorded with the current policy after an iteration (charged to
    `real_episodes`, at seeds of their own); 0: no identification, the whole space (needed
    for `bo` on families that do not recover their state from an observation). The baselines
    ignore it, so one `compare` can run `bo` with it beside them."""
    every: int = 1
    """Record real episodes after every `every`-th iteration and the last, and identify from
    them (not after the last, where they only check the iterate for deployment)."""
    keep: int = 8
    """Latest recorded real episodes the search fits."""
    horizon: int = 5
    """Control steps each real window is predicted open loop."""
    windows: int = 384
    """Prediction windows drawn from the kept episodes."""
    rounds: int = 4
    """Cross-entropy rounds of the search."""
    population: int = 64
    """Thetas scored per round."""
    elites: int = 8
    """Best thetas each round's sampling distribution is fitted to."""
    tolerance: float = 0.1
    """Thetas whose prediction error is within `1 + tolerance` times the best are consistent
    with the data (the posterior's support)."""
    particles: int = 32
    """Consistent thetas the curriculum trains around, spaced evenly over their error
    ranking: `bo` chooses its `q` points among them, and its exploration share is spread
    over all of them."""
    radius: float = 0.05
    """Half-width (unit cube, every dimension) of the box trained around a particle."""


@dataclass
class ControllerConfig:
    """Which curriculum controller proposes the task distribution."""

    method: str = "bo"
    """Controller name: `nominal`, `udr`, `bo` (see `loop.CONTROLLERS`)."""
    fidelity: str = "fine"
    """Fidelity the baselines train at."""
    fidelities: list[str] = field(default_factory=lambda: ["coarse", "fine"])
    """Fidelities `bo` chooses from, cheapest first; the last is its target."""
    acquisition: str = "mes"
    """`bo`'s acquisition: `mes` (cost-aware multi-fidelity max-value entropy search),
    `mfkg` (multi-fidelity knowledge gradient) or `ucb` (cost-weighted UCB)."""
    q: int = 4
    """Points `bo` proposes per iteration."""
    radius: float = 0.25
    """Half-width (unit cube) of the box of thetas trained around each proposed point, in
    the `focus_dims` dimensions its box is narrow in."""
    focus_dims: int | None = 2
    """Dimensions in which `bo`'s boxes are narrow: the ones its GP finds most relevant
    (inverse ARD length scales); the boxes span the whole range in the others, keeping
    uniform coverage where the learning signal does not depend on the parameter. Null: all
    dimensions (boxes narrow everywhere). A value >= the space's dimension means all of
    them (clamped, so one config fits every task)."""
    explore_share: float = 0.2
    """Share of the task distribution spent on uniform exploration at the target fidelity."""
    explore_final: float | None = None
    """Exploration share `bo` reaches when the budget is spent: the share rises linearly from
    `explore_share` with the share of the budget spent before each iteration (iterations or
    the target fidelity's budget, whichever is further), so that the curriculum ends on the
    target distribution, uniform over the space, as self-paced curricula do. Null: constant."""
    drift: bool = True
    """Model the learning signal as drifting over time (a time input with its own kernel)."""
    feasibility: bool = True
    """Steer proposals away from unstable regions (GP classifier of the stability flags)."""
    signal: str = "box"
    """What `bo` observes. `box`: per proposal, the change of return over the iteration
    fitted to the episodes in its box (`loop.learning_progress`). `local`: the change of
    return between this iteration's and the previous one's episodes nearest a point
    (`loop.local_progress`), at each proposed point and at `episode_points` thetas of this
    iteration's training episodes (more observations per iteration, exploration included)."""
    episode_points: int = 12
    """With `signal: local`, training-episode thetas per iteration `bo` also observes."""
    costs: dict[str, float] | None = None
    """Training seconds per env step per fidelity (every one in `fidelities`; simulation
    plus the learner's share, as journaled in `cost/<fidelity>_train_s_per_step`) for `bo`'s
    cost model instead of the measured ones. The measured costs vary with the host's load and with
    them the proposals, so a run repeats only with fixed costs; null: measured. Budgets in
    seconds still use the measured costs."""
    identify: IdentifyConfig = field(default_factory=IdentifyConfig)
    """`bo`'s system identification from real episodes (off with `identify.episodes: 0`)."""
    relevance: str = "signal"
    """What ranks the dimensions for `focus_dims`. `signal`: the learning-signal GP's ARD
    relevance (fitted to a few observations per iteration). `returns`: the main effects of a
    GP of the latest training episodes' returns on theta (up to 256 episodes, each
    iteration's mean removed): the dimensions the learner's competence depends on, estimated
    from hundreds of episodes instead of a handful of observations."""


@dataclass
class BudgetConfig:
    """When the run stops: whichever budget is spent first."""

    iterations: int = 6
    """Loop iterations; reaching it ends the run `completed`."""
    fine_env_steps: int = 2_000_000
    """Fine-fidelity training env steps; spending it ends the run `budget_exhausted`."""
    coarse_env_steps: int = 10_000_000
    """Coarse-fidelity training env steps; when spent, proposals move to the fine fidelity."""
    fine_sim_s: float | None = None
    """Simulation seconds at the fine fidelity (measured cost x steps); unset: no limit."""
    coarse_sim_s: float | None = None
    """Simulation seconds at the coarse fidelity; unset: no limit."""
    wall_s: float = 3600.0
    """Wall-clock seconds over all sessions of the run; spending it ends it `budget_exhausted`."""


@dataclass
class RunConfig:
    """Where the run lives."""

    dir: str | None = None
    """Run directory; unset: a new `runs/<name>-<YYYYmmdd-HHMMSS>` for each `run`/`compare`."""
    keep_checkpoints: int = 2
    """Complete checkpoints kept on disk (the newest ones)."""


@dataclass
class WandbConfig:
    """Weights & Biases logging (offline by default: no account, no network)."""

    mode: str = "offline"
    project: str = "autocurriculum"
    entity: str | None = None
    group: str | None = None
    """W&B run group (`compare` groups its runs under the config's name)."""


@dataclass
class RayConfig:
    """How Ray is started or joined."""

    address: str | None = None
    """Address of a running cluster; unset: a local Ray with `num_cpus`."""
    num_cpus: int = 2
    include_dashboard: bool = False


@dataclass
class CompareConfig:
    """What `autocurriculum compare` runs: every method with every seed."""

    methods: list[str] = field(default_factory=lambda: ["udr", "bo"])
    """Controller methods to compare (each replaces `controller.method`): by default the
    curriculum against uniform domain randomization."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds per method (each replaces `seed`)."""
    baseline: str | None = None
    """Method every other one is tested against, paired by seed (`loop.stats`); unset:
    `udr` when it is compared, else the first method."""

    def baseline_method(self) -> str:
        """The method the others are tested against."""
        if self.baseline is not None:
            return self.baseline
        return "udr" if "udr" in self.methods else self.methods[0]


@dataclass
class Config:
    """A whole experiment: one file in `configs/` plus dotlist overrides."""

    name: str = "default"
    """Run name (W&B run name, default run directory)."""
    seed: int = 0
    """Seeds numpy, torch, RLlib, MuJoCo noise and the controller."""
    task: str = "inverted_pendulum"
    """Task family name (see `generators.FAMILIES`)."""
    space: dict[str, ParamOverride] = field(default_factory=dict)
    """Overrides of the family's parameter ranges, by parameter name."""
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    reality: RealityConfig = field(default_factory=RealityConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    run: RunConfig = field(default_factory=RunConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)

    def run_dir(self) -> Path:
        return Path(self.run.dir) if self.run.dir else Path("runs") / self.name

    def param_space(self) -> ParamSpace:
        """The task family's parameter space with `space` overrides applied."""
        overrides = {
            name: {k: v for k, v in vars(o).items() if v is not None}
            for name, o in self.space.items()
        }
        return get_family(self.task).space.with_overrides(overrides)


def _omegaconf_error(exc: OmegaConfBaseException) -> ConfigError:
    key = getattr(exc, "full_key", None) or "config"
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ConfigError(str(key), reason)


def compose(path: str | Path | None, overrides: Sequence[str] = ()) -> DictConfig:
    """Merge the schema, the YAML file at `path` and `key=value` overrides (in that order)."""
    merged = OmegaConf.structured(Config)
    try:
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError("config", f"no such file: {path}")
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
        for item in overrides:
            if "=" not in item:
                raise ConfigError(item, "override must be key=value")
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as exc:
        raise _omegaconf_error(exc) from None
    except ConfigError:
        raise
    except Exception as exc:  # YAML syntax errors and the like
        raise ConfigError("config", f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return merged


def validate(cfg: Config) -> None:
    """Check the names and ranges the schema's types cannot; raise `ConfigError` on the first."""
    from loop.controllers import CONTROLLERS

    def check(key: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ValueError as exc:
            raise _field_error(key, exc) from None

    try:
        family = get_family(cfg.task)
    except ValueError as exc:
        raise ConfigError("task", str(exc)) from None
    for name in cfg.space:
        if name not in family.space:
            known = ", ".join(family.space.names)
            raise ConfigError(f"space.{name}", f"unknown parameter (known: {known})")
    space = check("space", cfg.param_space)
    if cfg.controller.method not in CONTROLLERS:
        known = ", ".join(sorted(CONTROLLERS))
        raise ConfigError(
            "controller.method", f"unknown controller {cfg.controller.method!r} (known: {known})"
        )
    for key, fid in (
        ("controller.fidelity", cfg.controller.fidelity),
        ("eval.fidelity", cfg.eval.fidelity),
    ):
        if fid not in family.fidelities:
            raise ConfigError(
                key,
                f"unknown fidelity {fid!r} for {cfg.task} (known: {', '.join(family.fidelities)})",
            )
    for key in ("iterations", "fine_env_steps", "coarse_env_steps", "wall_s"):
        if not getattr(cfg.budget, key) > 0:
            raise ConfigError(f"budget.{key}", f"must be > 0 (got {getattr(cfg.budget, key)})")
    for key in ("fine_sim_s", "coarse_sim_s"):
        value = getattr(cfg.budget, key)
        if value is not None and not value > 0:
            raise ConfigError(f"budget.{key}", f"must be > 0 or unset (got {value})")
    check_controller(cfg.controller, family.fidelities)
    check_identify(cfg.controller.identify, cfg.task, cfg.controller.method)
    check("learner", cfg.learner.validate)
    check("eval", cfg.eval.validate)
    check("oracle", cfg.oracle.validate)
    for i, dim in enumerate(cfg.eval.region_dims):
        if dim not in space:
            raise ConfigError(
                f"eval.region_dims.{i}",
                f"unknown parameter {dim!r} (known: {', '.join(space.names)})",
            )
    try:
        proxy = get_reality(cfg.reality.env)
    except ValueError as exc:
        raise ConfigError("reality.env", str(exc)) from None
    if proxy.family != cfg.task:
        raise ConfigError(
            "reality.env", f"{proxy.name} stands in for {proxy.family}, not {cfg.task}"
        )
    for name in cfg.reality.params:
        if name not in space:
            raise ConfigError(
                f"reality.params.{name}", f"unknown parameter (known: {', '.join(space.names)})"
            )
    if cfg.reality.episodes <= 0:
        raise ConfigError("reality.episodes", f"must be > 0 (got {cfg.reality.episodes})")
    if not 0 <= cfg.reality.deadzone < 1:
        raise ConfigError("reality.deadzone", f"must be in [0, 1) (got {cfg.reality.deadzone})")
    for i, method in enumerate(cfg.compare.methods):
        if method not in CONTROLLERS:
            known = ", ".join(sorted(CONTROLLERS))
            raise ConfigError(
                f"compare.methods.{i}", f"unknown controller {method!r} (known: {known})"
            )
    if not cfg.compare.methods or not cfg.compare.seeds:
        raise ConfigError("compare", "needs at least one method and one seed")
    if cfg.compare.baseline is not None and cfg.compare.baseline not in cfg.compare.methods:
        raise ConfigError(
            "compare.baseline",
            f"{cfg.compare.baseline!r} is not one of compare.methods "
            f"({', '.join(cfg.compare.methods)})",
        )
    if len(set(cfg.compare.seeds)) != len(cfg.compare.seeds):
        raise ConfigError("compare.seeds", f"repeats a seed ({cfg.compare.seeds})")
    if cfg.wandb.mode not in WANDB_MODES:
        raise ConfigError(
            "wandb.mode", f"must be one of {', '.join(WANDB_MODES)} (got {cfg.wandb.mode!r})"
        )
    if cfg.run.keep_checkpoints < 1:
        raise ConfigError("run.keep_checkpoints", "must be >= 1")
    if cfg.ray.num_cpus < 1:
        raise ConfigError("ray.num_cpus", "must be >= 1")


ACQUISITION_NAMES = ("mes", "mfkg", "ucb")
"""`controller.acquisition` values (`loop.mfbo.ACQUISITIONS`, named here to validate
configs without importing BoTorch)."""


def check_controller(c: ControllerConfig, family_fidelities: Sequence[str]) -> None:
    """Validate the model-based controller's knobs (the baselines ignore them)."""
    if not c.fidelities:
        raise ConfigError("controller.fidelities", "needs at least one fidelity")
    for i, fid in enumerate(c.fidelities):
        if fid not in family_fidelities:
            known = ", ".join(family_fidelities)
            raise ConfigError(f"controller.fidelities.{i}", f"unknown fidelity {fid!r} ({known})")
    order = [family_fidelities.index(f) for f in c.fidelities]
    if order != sorted(set(order)):
        raise ConfigError("controller.fidelities", "list each fidelity once, cheapest first")
    if c.acquisition not in ACQUISITION_NAMES:
        known = ", ".join(ACQUISITION_NAMES)
        raise ConfigError("controller.acquisition", f"unknown {c.acquisition!r} (known: {known})")
    if c.q < 1:
        raise ConfigError("controller.q", f"must be >= 1 (got {c.q})")
    if not 0 <= c.radius <= 0.5:
        raise ConfigError("controller.radius", f"must be in [0, 0.5] (got {c.radius})")
    if c.focus_dims is not None and (isinstance(c.focus_dims, bool) or c.focus_dims < 1):
        raise ConfigError(
            "controller.focus_dims", f"must be >= 1 or null for all (got {c.focus_dims})"
        )
    if not 0 <= c.explore_share < 1:
        raise ConfigError("controller.explore_share", f"must be in [0, 1) (got {c.explore_share})")
    if c.explore_final is not None and not c.explore_share <= c.explore_final <= 1:
        raise ConfigError(
            "controller.explore_final",
            f"must be in [{c.explore_share} (explore_share), 1] (got {c.explore_final})",
        )
    if c.signal not in SIGNALS:
        known = ", ".join(SIGNALS)
        raise ConfigError("controller.signal", f"unknown {c.signal!r} (known: {known})")
    if c.episode_points < 0:
        raise ConfigError("controller.episode_points", f"must be >= 0 (got {c.episode_points})")
    if c.relevance not in RELEVANCES:
        known = ", ".join(RELEVANCES)
        raise ConfigError("controller.relevance", f"unknown {c.relevance!r} (known: {known})")
    if c.costs is not None:
        if set(c.costs) != set(c.fidelities):
            raise ConfigError(
                "controller.costs",
                f"needs exactly the fidelities {', '.join(c.fidelities)} (got "
                f"{', '.join(c.costs) or 'none'})",
            )
        for fid, cost in c.costs.items():
            if not (math.isfinite(cost) and cost > 0):
                raise ConfigError(f"controller.costs.{fid}", f"must be > 0 (got {cost})")


def check_identify(i: IdentifyConfig, task: str, method: str = "bo") -> None:
    """Validate `controller.identify` when it is on; the family must support it only for `bo`,
    the controller that identifies (the baselines ignore it)."""
    if i.episodes < 0:
        raise ConfigError("controller.identify.episodes", f"must be >= 0 (got {i.episodes})")
    if i.episodes == 0:
        return
    family = get_family(task)
    probe = family.task.state_from_observation(np.zeros((1, *family.task.observation_space.shape)))
    if probe is None and method == "bo":
        raise ConfigError(
            "controller.identify.episodes",
            f"family {task!r} cannot identify: it does not recover its state from an "
            "observation (set it to 0 to run `bo` without identification)",
        )
    for key in ("every", "keep", "horizon", "windows", "rounds", "population", "particles"):
        if getattr(i, key) < 1:
            raise ConfigError(f"controller.identify.{key}", f"must be >= 1 (got {getattr(i, key)})")
    if not 1 <= i.elites <= i.population:
        raise ConfigError(
            "controller.identify.elites", f"must be in [1, population] (got {i.elites})"
        )
    if not (math.isfinite(i.tolerance) and i.tolerance >= 0):
        raise ConfigError("controller.identify.tolerance", f"must be >= 0 (got {i.tolerance})")
    if not 0 <= i.radius <= 0.5:
        raise ConfigError("controller.identify.radius", f"must be in [0, 0.5] (got {i.radius})")


def _field_error(key: str, exc: ValueError) -> ConfigError:
    """Schema validators say `"<field>: reason"`; fold the field into the dotted key."""
    reason = str(exc.args[0]) if exc.args else str(exc)
    sub, sep, rest = reason.partition(": ")
    if sep and " " not in sub:
        return ConfigError(f"{key}.{sub}", rest)
    return ConfigError(key, reason)


def derive(resolved: DictConfig, overrides: Sequence[str]) -> tuple[Config, DictConfig]:
    """A validated variant of an already composed config (e.g. one run of a comparison)."""
    try:
        merged = OmegaConf.merge(resolved, OmegaConf.from_dotlist(list(overrides)))
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise _omegaconf_error(exc) from None
    assert isinstance(cfg, Config)
    validate(cfg)
    return cfg, merged


def load_config(
    path: str | Path | None, overrides: Sequence[str] = ()
) -> tuple[Config, DictConfig]:
    """The validated config object and its resolved OmegaConf form (for `config.yaml`)."""
    merged = compose(path, overrides)
    try:
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise _omegaconf_error(exc) from None
    assert isinstance(cfg, Config)
    validate(cfg)
    return cfg, merged
