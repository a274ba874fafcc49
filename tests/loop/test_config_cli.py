"""Bad configs fail fast, before Ray, with one line naming the key and exit code 2."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from loop.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "configs" / "default.yaml"

# Runs the CLI in a fresh interpreter and fails if Ray (or torch) was imported on the way.
PROBE = """
import sys
from loop.cli import main
rc = main(sys.argv[1:])
assert "ray" not in sys.modules, "ray was imported"
sys.exit(rc)
"""

BAD = [
    (["unknown_key=1"], "unknown_key"),
    (["learner.nonexistent=3"], "learner.nonexistent"),
    (["space.pole_mass.low=3.0"], "space.pole_mass.low"),
    (["space.pole_mass.nominal=9"], "space.pole_mass.nominal"),
    (["space.pole_mass.scale=cubic"], "space.pole_mass.scale"),
    (["space.not_a_param.low=1"], "space.not_a_param"),
    (["space.pole_length.levels=1"], "space.pole_length.levels"),
    (["budget.iterations=0"], "budget.iterations"),
    (["budget.fine_env_steps=-5"], "budget.fine_env_steps"),
    (["budget.wall_s=0"], "budget.wall_s"),
    (["learner.env_steps_per_iteration=0"], "learner.env_steps_per_iteration"),
    (["learner.torch_threads=-1"], "learner.torch_threads"),
    (["task=no_such_family"], "task"),
    (["controller.method=no_such_controller"], "controller.method"),
    (["controller.fidelity=ultra"], "controller.fidelity"),
    (["eval.fidelity=surrogate"], "eval.fidelity"),
    (["reality.env=nowhere/Nothing-v0"], "reality.env"),
    (["reality.params.not_a_param=1.0"], "reality.params.not_a_param"),
    (["learner.lr=fast"], "learner.lr"),
    (["wandb.mode=loud"], "wandb.mode"),
    (["budget.coarse_env_steps=0"], "budget.coarse_env_steps"),
    (["budget.fine_sim_s=-1"], "budget.fine_sim_s"),
    (["controller.fidelities=[fine,ultra]"], "controller.fidelities.1"),
    (["controller.fidelities=[fine,coarse]"], "controller.fidelities"),
    (["controller.acquisition=ei"], "controller.acquisition"),
    (["controller.q=0"], "controller.q"),
    (["controller.radius=0.7"], "controller.radius"),
    (["controller.explore_share=1.0"], "controller.explore_share"),
    (["controller.explore_final=0.1"], "controller.explore_final"),  # below explore_share
    (["controller.focus_dims=0"], "controller.focus_dims"),
    (["controller.focus_dims=two"], "controller.focus_dims"),
    (["controller.signal=slope"], "controller.signal"),
    (["controller.episode_points=-1"], "controller.episode_points"),
    (["controller.relevance=ard"], "controller.relevance"),
    (["controller.method=bo", "controller.costs.fine=3e-5"], "controller.costs"),
    (
        ["controller.method=bo", "controller.costs.coarse=0", "controller.costs.fine=3e-5"],
        "controller.costs.coarse",
    ),
    (["controller.identify.episodes=-1"], "controller.identify.episodes"),
    (
        ["controller.identify.episodes=2", "controller.identify.elites=65"],
        "controller.identify.elites",
    ),
    (
        ["controller.identify.episodes=2", "controller.identify.radius=0.6"],
        "controller.identify.radius",
    ),
    (["oracle.checkpoints=0"], "oracle.checkpoints"),
    (["compare.baseline=nominal"], "compare.baseline"),  # not among compare.methods
    (["compare.seeds=[0,1,0]"], "compare.seeds"),
]


@pytest.mark.parametrize(("overrides", "key"), BAD, ids=[k for _, k in BAD])
def test_bad_config_exits_2_with_one_line_naming_the_key(overrides: list[str], key: str) -> None:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "run", str(DEFAULT), *overrides],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"config error: {key}:" in lines[0]
    assert "Traceback" not in proc.stderr
    assert elapsed < 5.0


def test_missing_config_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(ROOT / "configs" / "nope.yaml")
    assert exc.value.key == "config"


def test_default_config_loads_and_overrides_apply() -> None:
    cfg, resolved = load_config(
        DEFAULT, ["seed=7", "space.pole_mass.high=1.8", "space.pole_length.levels=0"]
    )
    assert cfg.seed == 7
    assert cfg.space["pole_mass"].high == 1.8
    assert cfg.param_space()["pole_length"].levels == 0  # continuous: a compile per draw
    assert load_config(DEFAULT)[0].param_space()["pole_length"].levels == 64
    assert resolved.reality.env == "gymnasium/InvertedPendulum-v5"


def test_default_reality_differs_enough_for_randomization_to_matter() -> None:
    cfg, _ = load_config(DEFAULT)
    params = cfg.reality.params
    physical = [k for k, v in params.items() if k not in ("latency_steps", "obs_noise_std")]
    changed = [k for k in physical if abs(params[k] - 1.0) >= 0.3]
    assert len(changed) >= 3
    assert params["latency_steps"] >= 1 and params["obs_noise_std"] > 0


def test_focus_dims_takes_null_for_all_dims_and_any_count_above_zero() -> None:
    cfg, _ = load_config(DEFAULT)
    assert cfg.controller.focus_dims == 2
    cfg, _ = load_config(DEFAULT, ["controller.focus_dims=null"])
    assert cfg.controller.focus_dims is None
    cfg, _ = load_config(DEFAULT, ["controller.focus_dims=50"])  # clamped when used
    assert cfg.controller.focus_dims == 50


def test_every_shipped_config_is_valid() -> None:
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        load_config(path)


def test_acquisition_names_validated_without_botorch_match_the_registry() -> None:
    from loop.config import ACQUISITION_NAMES
    from loop.mfbo import ACQUISITIONS

    assert set(ACQUISITION_NAMES) == set(ACQUISITIONS)


def test_the_oracle_key_ignores_the_thread_count_but_not_the_training() -> None:
    from loop.runner import oracle_spec

    def spec(*overrides: str) -> dict:
        return oracle_spec(load_config(DEFAULT, overrides)[0])

    assert spec("learner.torch_threads=0") == spec()
    assert spec("learner.lr=3e-4") != spec()


def test_identification_needs_a_family_whose_observations_show_the_state() -> None:
    from loop.config import IdentifyConfig, check_identify

    check_identify(IdentifyConfig(episodes=2), "cartpole_swingup")
    check_identify(IdentifyConfig(episodes=0), "hopper")  # off: nothing to check
    check_identify(IdentifyConfig(episodes=2), "hopper", "udr")  # the baselines ignore it
    with pytest.raises(ConfigError) as exc:
        check_identify(IdentifyConfig(episodes=2), "hopper")
    assert exc.value.key == "controller.identify.episodes"
    assert "set it to 0" in str(exc.value)


def test_the_default_controller_is_bo_with_identification() -> None:
    """`bo` became the default once its mean real return beat `udr`'s on both benchmark
    families (BENCHMARKS.md); the schema and the main job's config agree, and `compare`
    tests it against `udr`."""
    for cfg in (load_config(None)[0], load_config(DEFAULT)[0]):
        assert cfg.controller.method == "bo"
        assert cfg.controller.identify.episodes > 0
        assert cfg.compare.methods == ["udr", "bo"] and cfg.compare.baseline_method() == "udr"
