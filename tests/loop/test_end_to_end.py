"""Real runs on tiny budgets through the CLI: run, kill -9, resume, eval, oracle cache."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import generators
from learners import MLPPolicy
from loop.checkpoint import Checkpoints, load_state
from loop.config import load_config
from loop.runner import evaluate_real

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    # The run contract, resume and compare on the fastest controller; the `bo` tests below
    # switch it on (and identification only where it is their subject).
    "controller.method=udr",
    "controller.identify.episodes=0",
    "learner.env_steps_per_iteration=1000",
    "learner.train_batch_size=500",
    "learner.minibatch_size=250",
    "learner.num_epochs=1",
    "learner.num_envs_per_env_runner=2",
    "learner.hidden=[16,16]",
    "eval.episodes_per_region=1",
    "eval.real_every=2",
    "reality.episodes=2",
    "oracle.env_steps=1000",
    "oracle.eval_episodes=2",
]


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run(
        [sys.executable, "-m", "loop.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


def iterations(run_dir: Path) -> list[int]:
    path = run_dir / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["iteration"] for line in path.read_text().splitlines() if line]


def test_run_writes_the_run_directory_contract(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cache = tmp_path / "oracles"
    args = ["configs/default.yaml", *TINY, f"run.dir={run_dir}", f"oracle.cache_dir={cache}"]
    proc = cli("run", *args, "budget.iterations=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "transfer ratio" in proc.stdout
    assert "oracle: training" in proc.stdout

    summary = json.loads((run_dir / "summary.json").read_text())
    for key in (
        "transfer_ratio",
        "transfer_ratio_normalized",
        "floor_return",
        "real_return",
        "oracle_return",
        "iterations",
        "env_steps",
        "real_episodes",
        "wall_s",
        "controller_s",
        "rejected_batches",
        "status",
        "regions",
    ):
        assert key in summary, key
    assert summary["status"] == "completed"
    assert summary["iterations"] == 3
    assert summary["env_steps"]["fine"] >= 3000
    assert set(summary["env_steps"]) == {"surrogate", "coarse", "fine"}
    assert summary["real_episodes"] == 4  # iteration 1 (cadence 2) and the last one
    assert len(summary["regions"]) == 4 and "error" in summary["regions"][0]
    assert iterations(run_dir) == [0, 1, 2]
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "LATEST").is_file()
    # The deployed policy is the best iteration on the sim regions, and is checkpointed.
    records = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    best = max(records, key=lambda r: (r["eval/region_return_mean"], r["iteration"]))
    assert summary["deployed_iteration"] == best["iteration"]
    latest = Checkpoints(run_dir / "checkpoints").latest()
    assert (latest / "deploy_policy.pt").is_file()

    # Every journal scalar reached the offline W&B run (history keys are stored verbatim).
    wandb_files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(wandb_files) == 1, "no offline W&B run file"
    logged = wandb_files[0].read_bytes()
    records = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    keys = {k for r in records for k, v in r.items() if isinstance(v, int | float)}
    assert "real/transfer_ratio" in keys
    assert "cost/fine_s_per_step" in keys  # measured simulation cost, for the scheduler
    # The training step's cost, what the controller sees: the simulation plus the learner.
    for r in records:
        assert r["cost/fine_train_s_per_step"] == pytest.approx(
            r["cost/fine_s_per_step"] + r["cost/learner_s_per_step"]
        )
        assert r["cost/learner_s_per_step"] > 0
    missing = [k for k in sorted(keys) if k.encode() not in logged]
    assert not missing, missing
    assert list((run_dir / "wandb").glob("offline-run-*/files/media/images/regions/map_*.png"))

    # eval: the deployed policy on the reality proxy, oracle from the cache, no retraining.
    ev = cli("eval", str(run_dir), "reality.episodes=3")
    assert ev.returncode == 0, ev.stderr[-3000:]
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["real_episodes"] == 3
    assert result["oracle_return"] == summary["oracle_return"]
    assert result["iteration"] == summary["deployed_iteration"]
    # eval.deploy=last evaluates the latest iterate instead, which `best` need not have
    # deployed: in a copy whose deployed policy is the previous iterate, each mode scores its own.
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    kept = sorted((copy / "checkpoints").glob("iter-*"))
    shutil.copy(kept[-2] / "policy.pt", kept[-1] / "deploy_policy.pt")
    assert (kept[-2] / "policy.pt").read_bytes() != (kept[-1] / "policy.pt").read_bytes()
    cfg, _ = load_config(copy / "config.yaml", [f"run.dir={copy}", "reality.episodes=3"])
    for deploy, policy in [("best", kept[-2] / "policy.pt"), ("last", kept[-1] / "policy.pt")]:
        proc = cli("eval", str(copy), "reality.episodes=3", f"eval.deploy={deploy}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads((copy / "eval.json").read_text())
        assert result["deploy"] == deploy
        expected = evaluate_real(MLPPolicy.load(policy), cfg, 3).mean
        assert result["real_return"] == pytest.approx(expected)
    assert result["iteration"] == summary["iterations"] - 1

    # A second run with the same reality config reuses the cached oracle.
    again = cli("run", *args, f"run.dir={tmp_path / 'run2'}", "budget.iterations=1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "oracle: training" not in again.stdout
    assert len(list(cache.iterdir())) == 1

    # Starting over an existing run is refused (exit 2) and changes nothing.
    before = (run_dir / "summary.json").read_text()
    clash = cli("run", *args)
    assert clash.returncode == 2 and "already holds a run" in clash.stderr
    assert (run_dir / "summary.json").read_text() == before


def test_kill_9_then_resume_continues_the_same_journal(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [
        "configs/default.yaml",
        *TINY,
        f"run.dir={run_dir}",
        "oracle.reference_return=1000",
        "budget.iterations=6",
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "loop.cli", "run", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while len(iterations(run_dir)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)  # into iteration k = 2 or later
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = iterations(run_dir)
    assert 2 <= len(done) < 6, done

    res = cli("resume", str(run_dir))
    assert res.returncode == 0, res.stderr[-3000:]
    assert iterations(run_dir) == list(range(6))  # no duplicate, no gap
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["iterations"] == 6
    assert summary["transfer_ratio"] is not None
    # One controller observation per iteration: none lost or repeated across the kill.
    latest = Checkpoints(run_dir / "checkpoints").latest()
    assert latest is not None and latest.name == "iter-000005"
    assert len(load_state(latest / "state.pt")["controller"]["observations"]) == 6


def test_compare_runs_every_method_and_seed_then_reuses_them(tmp_path: Path) -> None:
    base = tmp_path / "cmp"
    args = [
        "configs/default.yaml",
        *TINY,
        f"run.dir={base}",
        "oracle.reference_return=1000",
        "budget.iterations=1",
        "compare.methods=[nominal,udr]",
        "compare.seeds=[0,1]",
    ]
    proc = cli("compare", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((base / "compare.json").read_text())
    assert [(r["method"], r["seed"]) for r in result["runs"]] == [
        ("nominal", 0),
        ("nominal", 1),
        ("udr", 0),
        ("udr", 1),
    ]
    assert all(r["status"] == "completed" for r in result["runs"])
    assert set(result["methods"]) == {"nominal", "udr"}
    assert result["methods"]["udr"]["transfer_ratio"]["mean"] is not None
    # nominal is tested against udr (the default baseline), paired by seed.
    real = {(r["method"], r["seed"]): r["real_return"] for r in result["runs"]}
    assert result["baseline"] == "udr" and set(result["tests"]) == {"nominal"}
    test = result["tests"]["nominal"]["real_return"]
    assert test["seeds"] == [0, 1] and test["wins"] + test["losses"] + test["ties"] == 2
    diff = [real["nominal", s] - real["udr", s] for s in (0, 1)]
    assert test["mean_difference"] == pytest.approx(sum(diff) / 2)
    assert "real return against udr, paired by seed" in proc.stdout
    cfg_text = (base / "udr-s1" / "config.yaml").read_text()
    assert "method: udr" in cfg_text and "seed: 1" in cfg_text
    # A second call finds every run finished and trains nothing.
    again = cli("compare", *args)
    assert again.returncode == 0
    assert json.loads((base / "compare.json").read_text())["runs"] == result["runs"]
    assert "nominal, seed 0" not in again.stdout


def test_unstable_worlds_are_survived_counted_per_region_and_reported(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = cli(
        "run",
        "configs/default.yaml",
        *TINY,
        f"run.dir={run_dir}",
        "oracle.reference_return=1000",
        "budget.iterations=2",
        # Tiny pole masses with huge gains blow up: half of each axis is unstable physics.
        "space.pole_mass.low=1e-6",
        "space.actuator_gain.high=10000",
        "eval.region_dims=[pole_mass,actuator_gain]",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    per_region = [r["train_unstable"] for r in summary["regions"]]
    assert sum(per_region) == summary["unstable_episodes"] > 0
    assert all(r["train_episodes"] > 0 for r in summary["regions"])
    latest = Checkpoints(run_dir / "checkpoints").latest()
    observations = load_state(latest / "state.pt")["controller"]["observations"]
    assert sum(o["unstable"] for o in observations) == summary["unstable_episodes"]


def test_bo_mixes_fidelities_shows_its_model_and_stops_on_the_fine_budget(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = cli(
        "run",
        "configs/default.yaml",
        *TINY,
        f"run.dir={run_dir}",
        "oracle.reference_return=1000",
        "controller.method=bo",
        "budget.iterations=50",
        "budget.fine_env_steps=4000",
        "controller.explore_final=1.0",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "budget_exhausted"
    fine, coarse = summary["env_steps"]["fine"], summary["env_steps"]["coarse"]
    assert 4000 <= fine < 4000 + 500  # at most one PPO batch over the budget
    assert coarse > 0  # the initial design trains at both fidelities
    assert summary["budget"]["shares"]["coarse"] > 0
    records = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert len(records) == summary["iterations"] >= 4
    modeled = [r for r in records if r["controller/diagnostics"]["acquisition"] == "mes"]
    assert modeled, "the GP never took over from the initial design"
    for r in modeled:
        assert r["controller/n_obs"] > 0 and r["controller/fit_s"] > 0
        assert r["controller/acq_value_mean"] is not None
        # What the boxes focus on: the GP's relevance of every parameter, as scalars.
        names = [k.removeprefix("controller/relevance/") for k in r if "/relevance/" in k]
        assert names == generators.get_family("inverted_pendulum").space.names
        assert all(r[f"controller/relevance/{n}"] >= 0 for n in names)
        focus = set(r["controller/diagnostics"]["focus_params"])
        assert len(focus) == 2 and focus <= set(names)
        points = [p for p in r["proposals"] if not p["explore"]]
        assert len(points) == 4 and all(p["point"] is not None for p in points)
    assert sum(r["train/coarse_env_steps"] + r["train/fine_env_steps"] for r in records[:1]) > 0
    # The exploration share follows the fine budget spent before each iteration (it binds
    # before the 50 iterations do): 0.2 at the start, rising linearly to 1.0 at 4000 steps.
    spent = np.cumsum([0] + [r["train/fine_env_steps"] for r in records[:-1]])
    shares = [r["controller/diagnostics"]["explore_share"] for r in records]
    assert shares == pytest.approx(0.2 + 0.8 * np.minimum(spent / 4000, 1.0))
    assert shares[-1] > 0.6
    assert any(v is not None for r in records for v in r["controller/signal"])
    media = run_dir / "wandb"
    assert list(media.glob("offline-run-*/files/media/images/controller/posterior_*.png"))
    assert list(media.glob("offline-run-*/files/media/table/controller/proposals_*.table.json"))


def test_resumed_bo_run_proposes_what_its_checkpointed_controller_proposes(
    tmp_path: Path,
) -> None:
    # Two separate runs differ (the cost model is fed measured seconds per step), so the
    # check is that resuming restores the whole controller: its next batch is the one the
    # controller saved in the checkpoint proposes. `signal=local` carries the most state
    # (the previous iteration's episodes); the box signal's restore is a unit test.
    from loop.config import load_config
    from loop.controllers import Proposal, make_controller

    run_dir = tmp_path / "run"
    common = [
        *TINY,
        "oracle.reference_return=1000",
        "controller.method=bo",
        "controller.signal=local",
        "wandb.mode=disabled",
    ]
    first = cli("run", "configs/default.yaml", *common, f"run.dir={run_dir}", "budget.iterations=3")
    assert first.returncode == 0, first.stderr[-3000:]
    res = cli("resume", str(run_dir), "budget.iterations=4")
    assert res.returncode == 0, res.stderr[-3000:]
    records = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [0, 1, 2, 3]
    assert records[3]["controller/diagnostics"]["acquisition"] == "mes"  # a model-based batch

    saved = load_state(run_dir / "checkpoints" / "iter-000002" / "state.pt")["controller"]
    cfg, _ = load_config(run_dir / "config.yaml")
    ctrl = make_controller("bo", cfg.param_space(), "fine", seed=12345, config=cfg.controller)
    ctrl.load_state_dict(saved)
    assert saved["previous_episodes"] and ctrl.bo.num_observations > 3 * 4
    expected = ctrl.propose([])
    assert [Proposal.from_dict(p) for p in records[3]["proposals"]] == expected


def test_bo_identifies_the_real_system_then_trains_and_deploys_for_it(tmp_path: Path) -> None:
    from loop.config import load_config
    from loop.controllers import Proposal, make_controller

    run_dir = tmp_path / "run"
    common = [
        *TINY,
        "oracle.reference_return=1000",
        "controller.method=bo",
        "controller.identify.episodes=2",
        "controller.identify.population=16",
        "controller.identify.rounds=2",
        "controller.identify.windows=64",
        "controller.identify.particles=8",
        "controller.costs.coarse=1.35e-3",
        "controller.costs.fine=1.37e-3",
        "wandb.mode=disabled",
    ]
    first = cli("run", "configs/default.yaml", *common, f"run.dir={run_dir}", "budget.iterations=3")
    assert first.returncode == 0, first.stderr[-3000:]
    records = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    # Every iterate is checked on real episodes of its own; they identify the real system
    # after every iteration but the last.
    assert [r["identify/episodes"] for r in records] == [2, 2, 2]
    assert ["identify/best_error" in r for r in records] == [True, True, False]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["real_episodes"] == 2 * 2 + 3 * 2  # two evaluations, three checks
    space = generators.get_family("inverted_pendulum").space.names
    for r in records[:2]:
        assert r["identify/episodes"] == 2 and r["identify/s"] > 0
        assert 0 < r["identify/best_error"] < float("inf") and r["identify/nominal_error"] > 0
        assert all(f"identify/best/{n}" in r for n in space)
        assert 1 <= r["identify/consistent"] == len(r["identification"]["consistent"])
    # Before any identification the curriculum covers the space and deployment ranks
    # iterates on the regions; after it, every box surrounds a consistent theta and the
    # deployed policy is the best on those worlds.
    assert records[0]["eval/deploy_worlds"] == "regions"
    for prev, r in itertools.pairwise(records):
        assert r["eval/deploy_worlds"] == "identified"
        # No higher than what the deployed iterate scored on its own real episodes.
        own = records[r["eval/deployed_iteration"]]["identify/real_return"]
        assert r["eval/deploy_score"] <= own + 1e-9
        consistent = np.array(prev["identification"]["consistent"])
        for p in r["proposals"]:
            center = (np.array(p["low"]) + np.array(p["high"])) / 2
            width = np.array(p["high"]) - np.array(p["low"])
            assert np.all(width <= 0.1 + 1e-9)
            assert np.min(np.abs(consistent - center).max(axis=1)) <= 0.05 + 1e-9
    # Resuming restores the kept real episodes and the identification with the controller.
    res = cli("resume", str(run_dir), "budget.iterations=4")
    assert res.returncode == 0, res.stderr[-3000:]
    records = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [0, 1, 2, 3]
    saved = load_state(run_dir / "checkpoints" / "iter-000002" / "state.pt")["controller"]
    assert len(saved["real_episodes"]) == 4 and saved["identification"] is not None
    cfg, _ = load_config(run_dir / "config.yaml")
    ctrl = make_controller("bo", cfg.param_space(), "fine", seed=12345, config=cfg.controller)
    ctrl.load_state_dict(saved)
    assert [Proposal.from_dict(p) for p in records[3]["proposals"]] == ctrl.propose([])
