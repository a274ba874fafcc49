"""Throughput of the generators' batched vector env against its references.

Usage: ``python benchmarks/generators.py [--quick] [--out PATH]``

Metrics (``env steps / s`` each):

- ``vector_env_steps_per_s`` (family, fidelity, batch, thetas): ``BatchedVectorEnv`` with
  random actions and a theta drawn per episode from the whole space (``thetas=udr``: the
  lengths snap to their ``levels``, so after a cell's first two episodes its model is
  rewritten in place; hopper's continuous lengths and terrain compile per episode), from
  the numeric parameters only (``thetas=udr_numeric``: masses, damping, gear... vary,
  geometry stays nominal, so each sub-env's model is rewritten in place) or the nominal
  model (``thetas=nominal``). Compiled bases are shared by the process's envs, so later
  measurements find more of them built, as later iterations of a run do.
- ``reference_env_steps_per_s`` (family): the reference Gymnasium env, one env stepped at a
  time (families without one are skipped).
- ``physics_limit_env_steps_per_s`` (family, fidelity, workload): raw ``mujoco.mj_step``
  calls per second on the same compiled model, times the batch's threads, over substeps per
  step. ``workload=random_actions`` steps the vector env's own workload (the nominal model,
  a uniform random action per control step, a reset where the task ends the episode) and
  times the ``mj_step`` calls alone: the limit the vector env's share is read against.
  ``workload=at_rest`` steps the model from its initial state with zero control and no
  resets (the issue's first definition; where the model settles against a joint limit or
  the ground, that engages constraints random-action episodes rarely reach, and the other
  way round).
- ``batch_step_env_steps_per_s`` (family, fidelity, batch, workload): the bare
  ``mujoco.batch.Batch.step`` call the vector env makes per step (nominal model, one control
  step per call, no env work around it) from the random-action workload's states and
  controls, or at rest: the ceiling of the batched C path.
- ``numpy_floor_env_steps_per_s`` (family, fidelity, batch): the least a numpy env around
  the same batch call does per step, timed whole: states and controls in and out (whole
  arrays), the call on the rows that step, the task's batched observation, termination and
  reward, truncation, and a new episode from one fixed initial state where one ended. No
  latency, deadzone, noise, stability guard, per-sub-env randomness, cost, info or episode
  log: a ceiling on what any env written this way reaches against the limit.
- ``rllib_sample_steps_per_s`` (family, mode, policy): one RLlib EnvRunner sampling with the
  batched env (``batched``) or RLlib's ``SyncVectorEnv`` (``default``), same sub-env count,
  random actions or the (untrained) PPO module's.

``--quick`` uses small sizes and only ``inverted_pendulum`` (< 60 s).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import mujoco.batch
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import write_results

import generators
from generators import Family, TaskDistribution
from generators.task import BatchState
from generators.vector import BatchedVectorEnv, default_nthread, state_slices

REFERENCE_ENVS = {
    "inverted_pendulum": "InvertedPendulum-v5",
    "reacher": "Reacher-v5",
    "hopper": "Hopper-v5",
}
"""Gymnasium env each family reproduces, where one exists."""

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "generators.json"
_FULLPHYSICS = mujoco.mjtState.mjSTATE_FULLPHYSICS


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


def random_workload(
    family: Family, fidelity: str, control_steps: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The vector env benchmark's physics, recorded one ``mj_step`` at a time: the nominal
    model, a uniform random action held over each control step's substeps, a new episode
    where the task ends one (as the env resets).

    Returns:
        The full physics state before each control step ``(control_steps, nstate)`` and
        the controls ``(control_steps, nu)``.
    """
    model = family.build_model(None, fidelity)
    data = mujoco.MjData(model)
    task = family.task
    rng = np.random.default_rng(seed)
    low, high = task.action_space.low, task.action_space.high
    controls = rng.uniform(low, high, size=(control_steps, model.nu))
    nsub = task.n_substeps(model)
    states = np.empty((control_steps, mujoco.mj_stateSize(model, _FULLPHYSICS)))
    steps = 0
    mujoco.mj_resetData(model, data)
    task.initialize_episode(model, data, rng)
    for k in range(control_steps):
        mujoco.mj_getState(model, data, states[k], _FULLPHYSICS)
        data.ctrl[:] = controls[k]
        for _ in range(nsub):
            mujoco.mj_step(model, data)
        steps += 1
        if steps >= task.max_episode_steps or task.terminated(model, data):
            mujoco.mj_resetData(model, data)
            task.initialize_episode(model, data, rng)
            steps = 0
    return states, controls


def physics_limit_rate(
    family: Family, fidelity: str, nthread: int, seconds: float, workload: Any = None
) -> float:
    """``mj_step`` calls per second on the nominal model x threads / substeps per env step.

    With ``workload`` (from :func:`random_workload`) the model replays its control steps,
    each from its recorded state, and only the ``mj_step`` calls are timed (timer cost
    subtracted); without, the model steps from rest with zero control.
    """
    model = family.build_model(None, fidelity)
    data = mujoco.MjData(model)
    nsub = family.task.n_substeps(model)
    if workload is None:
        family.task.initialize_episode(model, data, np.random.default_rng(0))
        chunk = 1000

        def step() -> int:
            for _ in range(chunk):
                mujoco.mj_step(model, data)
            if not np.isfinite(data.qpos).all():
                mujoco.mj_resetData(model, data)
            return chunk

        return _rate(step, seconds, warmup=1) * nthread / nsub
    states, controls = workload
    clock = time.perf_counter
    t0 = clock()
    for _ in range(10_000):
        clock() - clock()
    timer = (clock() - t0) / 10_000  # what one timer pair costs
    physics, done, start, k = 0.0, 0, clock(), 0
    while clock() - start < seconds:
        for _ in range(256):
            mujoco.mj_setState(model, data, states[k], _FULLPHYSICS)
            data.ctrl[:] = controls[k]
            t0 = clock()
            for _ in range(nsub):
                mujoco.mj_step(model, data)
            physics += clock() - t0 - timer
            k = (k + 1) % len(states)
        done += 256
    return nthread * done / max(physics, 1e-12)


def batch_step_rate(
    family: Family,
    fidelity: str,
    batch: int,
    nthread: int,
    seconds: float,
    workload: Any = None,
) -> float:
    """Env steps per second of bare ``mujoco.batch.Batch.step`` calls over ``batch`` nominal
    simulations, one control step per call: from the states and controls of ``workload``
    (consecutive rows of :func:`random_workload`), or from rest with zero control."""
    model = family.build_model(None, fidelity)
    nsub = family.task.n_substeps(model)
    if workload is None:
        data = mujoco.MjData(model)
        family.task.initialize_episode(model, data, np.random.default_rng(0))
        state = np.empty((batch, mujoco.mj_stateSize(model, _FULLPHYSICS)))
        mujoco.mj_getState(model, data, state[0], _FULLPHYSICS)
        state[1:] = state[0]
        chunks = [(state, np.zeros((batch, model.nu)))]
    else:
        states, controls = workload
        chunks = [
            (states[i : i + batch], controls[i : i + batch])
            for i in range(0, len(states) - batch + 1, batch)
        ]
    slices = state_slices(model)
    physics = slice(0, slices["act"].stop)  # time, qpos, qvel, act: the recorded state
    if physics.stop != chunks[0][0].shape[1]:
        raise ValueError(f"{family.name}: full physics state is more than time, qpos, qvel, act")
    sims = mujoco.batch.Batch(model, batch, nthread=nthread)
    k = [0]

    def step() -> int:
        state, control = chunks[k[0] % len(chunks)]
        k[0] += 1
        sims.state[:, physics] = state
        sims.state[:, slices["ctrl"]] = control
        sims.step(nstep=nsub)
        return batch

    return _rate(step, seconds)


def numpy_floor_rate(
    family: Family, fidelity: str, batch: int, nthread: int, seconds: float
) -> float:
    """Env steps per second of the least a numpy env around ``Batch.step`` does (see the
    module docstring), ``batch`` nominal simulations, random actions."""
    model = family.build_model(None, fidelity)
    task = family.task
    nsub = task.n_substeps(model)
    integration = mujoco.mjtState.mjSTATE_INTEGRATION.value
    data = mujoco.MjData(model)
    task.initialize_episode(model, data, np.random.default_rng(0))
    start = np.empty(mujoco.mj_stateSize(model, integration))
    mujoco.mj_getState(model, data, start, integration)
    state = np.tile(start, (batch, 1))
    slices = state_slices(model)
    constants = task.batch_constants(model)
    if constants is not None:  # one row per simulation, as the env stacks them
        constants = np.tile(np.asarray(constants, dtype=np.float64), (batch, 1))
    low, high = task.action_space.low, task.action_space.high
    actions = np.random.default_rng(0).uniform(low, high, size=(64, batch, low.size))
    sims = mujoco.batch.Batch(model, batch, nthread=nthread)
    models = [model] * batch
    steps = np.zeros(batch, dtype=np.int64)
    done = np.zeros(batch, dtype=bool)
    k = [0]

    def step() -> int:
        nonlocal done
        action = actions[k[0] % len(actions)]
        k[0] += 1
        stepping = ~done
        rows = None if stepping.all() else np.flatnonzero(stepping).astype(np.int32)
        qpos_before = state[:, slices["qpos"]].copy()
        sims.state[:] = state
        sims.state[:, slices["ctrl"]] = action
        sims.step(rows, nstep=nsub)
        state[:] = sims.state
        now = BatchState(
            models=models,
            time=state[:, 0],
            qpos=state[:, slices["qpos"]],
            qvel=state[:, slices["qvel"]],
            act=state[:, slices["act"]],
            ctrl=action,
            action=action,
            qpos_before=qpos_before,
            constants=constants,
        )
        terminated = task.terminated_batch(now) & stepping
        task.step_reward_batch(now, terminated)
        steps[:] += stepping
        ended = np.flatnonzero(done)
        if ended.size:
            state[ended] = start
            steps[ended] = 0
        task.observation_batch(now)
        done = terminated | (steps >= task.max_episode_steps)
        return batch

    return _rate(step, seconds)


def rllib_sampler(
    family: Family, mode: str, policy: str, num_envs: int
) -> tuple[Callable[[int], float], Callable[[], None]]:
    """One local RLlib EnvRunner, warmed up: ``(sample(steps) -> env steps / s, stop)``.

    The EnvRunner is configured as the learner configures its own (`ppo_config`); run it
    with torch on one thread, as a Ray EnvRunner actor with one CPU (``OMP_NUM_THREADS=1``).
    """
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
    from ray.tune.registry import register_env

    from learners import LearnerConfig
    from learners.rllib_learner import ENV_ID, make_env, ppo_config

    register_env(ENV_ID, make_env)
    dist = TaskDistribution.uniform(family.space, "fine")
    spec = {
        "kind": "family",
        "family": family.name,
        "fidelity": dist.fidelity,
        "space": family.space.to_dict(),
        "distribution": dist.to_dict(),
    }
    vectorize = "batched" if mode == "batched" else "sync"
    cfg = LearnerConfig(num_envs_per_env_runner=num_envs, vectorize=vectorize)
    runner = SingleAgentEnvRunner(config=ppo_config(cfg, spec, seed=0))
    random_actions = policy == "random"
    for _ in range(2):  # warm up (module, connectors, first episodes)
        runner.sample(num_timesteps=num_envs * 10, random_actions=random_actions)

    def sample(steps: int) -> float:
        start = time.perf_counter()
        done = 0
        while done < steps:
            episodes = runner.sample(num_timesteps=num_envs * 50, random_actions=random_actions)
            done += sum(len(e) for e in episodes)
        return done / (time.perf_counter() - start)

    return sample, runner.stop


def interleaved(measures: dict[Any, Callable[[], float]], rounds: int) -> dict[Any, float]:
    """Median of each measure over ``rounds`` rounds in which the measures take turns.

    On a shared machine a slow spell then slows every measure of a round alike, so the
    ratios between them (share of the physics limit, batched over default) are of one
    moment rather than of whichever measure ran during the spell.
    """
    samples: dict[Any, list[float]] = {key: [] for key in measures}
    for _ in range(rounds):
        for key, measure in measures.items():
            samples[key].append(measure())
    return {key: float(np.median(values)) for key, values in samples.items()}


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure every case; return the result records."""
    names = ["inverted_pendulum"] if quick else sorted(generators.FAMILIES)
    batches = (1, 16) if quick else (1, 16, 64, 256)
    seconds = 0.5 if quick else 2.0
    rounds = 3 if quick else 5
    rl_envs, rl_steps = (8, 800) if quick else (32, 20_000)
    workload_steps = 4_096 if quick else 102_400
    results: list[dict[str, Any]] = []
    big = max(batches)
    nthread = default_nthread(big)
    each = seconds / rounds

    def record(case: dict[str, Any], metric: str, value: float) -> None:
        results.append({"case": case, "metric": metric, "value": value, "unit": "env_steps/s"})

    for name in names:
        family = generators.get_family(name)
        # The ratios the acceptance reads, measured in turns: the batched env at the largest
        # batch, the physics limit and the bare batch call on both workloads, the reference env.
        group: dict[tuple[str, tuple], Callable[[], float]] = {}
        for fidelity in family.fidelities:
            for thetas in ("udr", "udr_numeric", "nominal"):
                for batch in batches:
                    case = {"family": name, "fidelity": fidelity, "batch": batch, "thetas": thetas}
                    if thetas == "nominal" and batch == big:
                        group["vector_env_steps_per_s", tuple(case.items())] = partial(
                            vector_env_rate, family, fidelity, batch, each, thetas
                        )
                    else:
                        rate = vector_env_rate(family, fidelity, batch, seconds, thetas)
                        record(case, "vector_env_steps_per_s", rate)
            work = random_workload(family, fidelity, workload_steps)
            for label, workload in (("random_actions", work), ("at_rest", None)):
                case = {"family": name, "fidelity": fidelity, "threads": nthread, "workload": label}
                group["physics_limit_env_steps_per_s", tuple(case.items())] = partial(
                    physics_limit_rate, family, fidelity, nthread, each, workload
                )
                case = {"family": name, "fidelity": fidelity, "batch": big, "workload": label}
                group["batch_step_env_steps_per_s", tuple(case.items())] = partial(
                    batch_step_rate, family, fidelity, big, nthread, each, workload
                )
            case = {"family": name, "fidelity": fidelity, "batch": big}
            group["numpy_floor_env_steps_per_s", tuple(case.items())] = partial(
                numpy_floor_rate, family, fidelity, big, nthread, each
            )
        if name in REFERENCE_ENVS:
            case = {"family": name, "env": REFERENCE_ENVS[name]}
            group["reference_env_steps_per_s", tuple(case.items())] = partial(
                reference_env_rate, REFERENCE_ENVS[name], each
            )
        for (metric, case), rate in interleaved(group, rounds).items():
            record(dict(case), metric, rate)
        # RLlib: four EnvRunners alive at once, sampling in turns.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        samplers, stops = {}, []
        try:
            for mode in ("batched", "default"):
                for policy in ("random", "ppo"):
                    sample, stop = rllib_sampler(family, mode, policy, rl_envs)
                    stops.append(stop)
                    case = {"family": name, "mode": mode, "policy": policy, "num_envs": rl_envs}
                    samplers[tuple(case.items())] = partial(sample, rl_steps // rounds)
            for case, rate in interleaved(samplers, rounds).items():
                record(dict(case), "rllib_sample_steps_per_s", rate)
        finally:
            for stop in stops:
                stop()
            torch.set_num_threads(threads)
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
    write_results("generators", run(args.quick), args.out, start, print_table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
