"""Throughput of the generators' batched vector env against its references.

Usage: ``python benchmarks/generators.py [--quick] [--out PATH]``

Metrics (``env steps / s`` each):

- ``vector_env_steps_per_s`` (family, fidelity, batch, thetas): ``BatchedVectorEnv`` with
  random actions and a theta drawn per episode from the whole space (``thetas=udr``: the
  geometry changes every episode, so a compile per episode), from the numeric parameters
  only (``thetas=udr_numeric``: masses, damping, gear... vary, geometry stays nominal, so
  each sub-env's model is rewritten in place) or the nominal model (``thetas=nominal``).
- ``reference_env_steps_per_s`` (family): the reference Gymnasium env, one env stepped at a
  time (families without one are skipped).
- ``physics_limit_env_steps_per_s`` (family, fidelity): raw ``mujoco.mj_step`` calls per
  second on the same compiled model, times the rollout threads, over substeps per step.
- ``rollout_env_steps_per_s`` (family, fidelity, batch): the bare ``mujoco.rollout`` call the
  vector env makes per step (nominal model, one control step per call, no env work around
  it): the ceiling of the batched C path, to read the vector env's share of the limit by.
- ``rllib_sample_steps_per_s`` (family, mode, policy): one RLlib EnvRunner sampling with the
  batched env (``batched``) or RLlib's ``SyncVectorEnv`` (``default``), same sub-env count,
  random actions or the (untrained) PPO module's.

``--quick`` uses small sizes and only ``inverted_pendulum`` (< 60 s).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import mujoco.rollout
import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import generators
from generators import Family, TaskDistribution
from generators.vector import BatchedVectorEnv, default_nthread

REFERENCE_ENVS = {
    "inverted_pendulum": "InvertedPendulum-v5",
    "reacher": "Reacher-v5",
    "hopper": "Hopper-v5",
}
"""Gymnasium env each family reproduces, where one exists."""

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "generators.json"


def _rate(step: Callable[[], int], seconds: float, warmup: int = 3) -> float:
    """Call ``step`` (returns env steps done) for about ``seconds``; return steps per second."""
    for _ in range(warmup):
        step()
    done, start = 0, time.perf_counter()
    while True:
        done += step()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def vector_env_rate(
    family: Family, fidelity: str, batch: int, seconds: float, thetas: str = "udr"
) -> float:
    """Env steps per second of ``BatchedVectorEnv`` with random actions.

    ``thetas="udr"`` draws each episode's theta uniformly (a model build per episode);
    ``"nominal"`` keeps the nominal model (the stepping alone).
    """
    if thetas == "udr":
        dist = TaskDistribution.uniform(family.space, fidelity)
    elif thetas == "udr_numeric":
        space = family.space
        fixed = [n in family.structural_params for n in space.names]
        nominal = space.to_unit(space.nominal())
        low = [float(u) if f else 0.0 for u, f in zip(nominal, fixed, strict=True)]
        high = [float(u) if f else 1.0 for u, f in zip(nominal, fixed, strict=True)]
        dist = TaskDistribution.mixture([(low, high)], fidelity=fidelity)
    else:
        dist = TaskDistribution.point(family.space, None, fidelity)
    venv = BatchedVectorEnv(family, batch, distribution=dist)
    venv.reset(seed=0)
    venv.action_space.seed(0)
    actions = [venv.action_space.sample() for _ in range(64)]
    k = [0]

    def step() -> int:
        venv.step(actions[k[0] % len(actions)])
        k[0] += 1
        return batch

    rate = _rate(step, seconds)
    venv.close()
    return rate


def reference_env_rate(env_id: str, seconds: float) -> float:
    """Env steps per second of a Gymnasium env stepped one at a time (random actions)."""
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)

    def step() -> int:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
        return 1

    rate = _rate(step, seconds)
    env.close()
    return rate


def physics_limit_rate(family: Family, fidelity: str, nthread: int, seconds: float) -> float:
    """``mj_step`` calls per second on the nominal model x threads / substeps per env step."""
    model = family.build_model(None, fidelity)
    data = mujoco.MjData(model)
    family.task.initialize_episode(model, data, np.random.default_rng(0))
    chunk = 1000

    def step() -> int:
        for _ in range(chunk):
            mujoco.mj_step(model, data)
        if not np.isfinite(data.qpos).all():
            mujoco.mj_resetData(model, data)
        return chunk

    calls_per_s = _rate(step, seconds, warmup=1)
    return calls_per_s * nthread / family.task.n_substeps(model)


def rollout_rate(family: Family, fidelity: str, batch: int, nthread: int, seconds: float) -> float:
    """Env steps per second of bare ``Rollout.rollout`` calls over ``batch`` nominal models."""
    model = family.build_model(None, fidelity)
    data = mujoco.MjData(model)
    family.task.initialize_episode(model, data, np.random.default_rng(0))
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    nsub = family.task.n_substeps(model)
    state = np.empty((batch, mujoco.mj_stateSize(model, spec)))
    mujoco.mj_getState(model, data, state[0], spec)
    state[1:] = state[0]
    control = np.zeros((batch, nsub, model.nu))
    out = np.empty((batch, nsub, state.shape[1]))
    datas = [mujoco.MjData(model) for _ in range(nthread)]
    models = [model] * batch
    with mujoco.rollout.Rollout(nthread=nthread if nthread > 1 else 0) as rollout:

        def step() -> int:
            rollout.rollout(
                models,
                datas,
                state,
                control,
                control_spec=mujoco.mjtState.mjSTATE_CTRL.value,
                skip_checks=True,
                nstep=nsub,
                state=out,
            )
            return batch

        return _rate(step, seconds)


def rllib_sample_rate(family: Family, mode: str, policy: str, num_envs: int, steps: int) -> float:
    """Env steps per second of one local RLlib EnvRunner's ``sample``."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
    from ray.tune.registry import register_env

    from learners.rllib_learner import ENV_ID, make_env

    register_env(ENV_ID, make_env)
    dist = TaskDistribution.uniform(family.space, "fine")
    spec = {
        "kind": "family",
        "family": family.name,
        "fidelity": dist.fidelity,
        "space": family.space.to_dict(),
        "distribution": dist.to_dict(),
    }
    config = (
        PPOConfig()
        .environment(env=ENV_ID, env_config=spec)
        .env_runners(
            num_env_runners=0,
            num_envs_per_env_runner=num_envs,
            gym_env_vectorize_mode="vector_entry_point" if mode == "batched" else "sync",
        )
    )
    runner = SingleAgentEnvRunner(config=config)
    random_actions = policy == "random"
    for _ in range(2):  # warm up (module, connectors, first episodes)
        runner.sample(num_timesteps=num_envs * 10, random_actions=random_actions)
    start = time.perf_counter()
    done = 0
    while done < steps:
        episodes = runner.sample(num_timesteps=num_envs * 50, random_actions=random_actions)
        done += sum(len(e) for e in episodes)
    rate = done / (time.perf_counter() - start)
    runner.stop()
    return rate


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure every case; return the result records."""
    names = ["inverted_pendulum"] if quick else sorted(generators.FAMILIES)
    batches = (1, 16) if quick else (1, 16, 64, 256)
    seconds = 0.5 if quick else 3.0
    rl_envs, rl_steps = (8, 800) if quick else (32, 20_000)
    results: list[dict[str, Any]] = []

    def record(case: dict[str, Any], metric: str, value: float) -> None:
        results.append({"case": case, "metric": metric, "value": value, "unit": "env_steps/s"})

    for name in names:
        family = generators.get_family(name)
        for fidelity in family.fidelities:
            for thetas in ("udr", "udr_numeric", "nominal"):
                for batch in batches:
                    rate = vector_env_rate(family, fidelity, batch, seconds, thetas)
                    case = {"family": name, "fidelity": fidelity, "batch": batch, "thetas": thetas}
                    record(case, "vector_env_steps_per_s", rate)
            nthread = default_nthread(max(batches))
            rate = physics_limit_rate(family, fidelity, nthread, seconds)
            case = {"family": name, "fidelity": fidelity, "threads": nthread}
            record(case, "physics_limit_env_steps_per_s", rate)
            rate = rollout_rate(family, fidelity, max(batches), nthread, seconds)
            case = {"family": name, "fidelity": fidelity, "batch": max(batches)}
            record(case, "rollout_env_steps_per_s", rate)
        if name in REFERENCE_ENVS:
            rate = reference_env_rate(REFERENCE_ENVS[name], seconds)
            record({"family": name, "env": REFERENCE_ENVS[name]}, "reference_env_steps_per_s", rate)
        for mode in ("batched", "default"):
            for policy in ("random", "ppo"):
                rate = rllib_sample_rate(family, mode, policy, rl_envs, rl_steps)
                case = {"family": name, "mode": mode, "policy": policy, "num_envs": rl_envs}
                record(case, "rllib_sample_steps_per_s", rate)
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    """Print the results as a rich table."""
    table = Table(title="benchmark: generators")
    for column in ("metric", "case", "value", "unit"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for r in results:
        case = ", ".join(f"{k}={v}" for k, v in r["case"].items())
        table.add_row(r["metric"], case, f"{r['value']:,.0f}", r["unit"])
    Console(width=120).print(table)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, write the JSON and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, inverted_pendulum")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    logging.getLogger("ray").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    results = run(args.quick)
    payload = {"benchmark": "generators", "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print_table(results)
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
