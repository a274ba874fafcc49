"""The RLlib learner on a tiny budget: tasks reach every EnvRunner, export and restore are exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from generators import TaskDistribution, get_family
from learners import LearnerConfig, RLlibLearner

pytestmark = pytest.mark.slow

FAMILY = get_family("inverted_pendulum")
TINY = dict(
    env_steps_per_iteration=400,
    num_envs_per_env_runner=2,
    train_batch_size=400,
    minibatch_size=100,
    num_epochs=1,
    hidden=[16, 16],
)


def spec(dist: TaskDistribution) -> dict:
    return {
        "kind": "family",
        "family": FAMILY.name,
        "fidelity": dist.fidelity,
        "space": FAMILY.space.to_dict(),
        "distribution": dist.to_dict(),
    }


@pytest.fixture(scope="module")
def learner(ray_session):
    nominal = TaskDistribution.point(FAMILY.space)
    lrn = RLlibLearner(LearnerConfig(num_env_runners=1, **TINY), spec(nominal), seed=0)
    yield lrn
    lrn.stop()


def remote_thetas(lrn: RLlibLearner) -> list[dict]:
    """Theta of each sub-env's current episode, read on the remote EnvRunners."""

    def read(runner):
        if runner.env is None:
            return []
        return [env.unwrapped.theta for env in runner.env.unwrapped.envs]

    got = lrn.algo.env_runner_group.foreach_env_runner(read, local_env_runner=False)
    return [t for per_runner in got for t in per_runner]


def test_the_driver_runs_torch_on_learner_torch_threads(learner: RLlibLearner) -> None:
    # A second thread only spins on these small networks (benchmarks/learner.py).
    assert learner.cfg.torch_threads == 1 and torch.get_num_threads() == 1


def test_task_distribution_reaches_every_remote_env(learner: RLlibLearner) -> None:
    theta = {"pole_mass": 1.9, "actuator_gain": 0.6, "latency_steps": 2}
    n = learner.set_task_distribution(TaskDistribution.point(FAMILY.space, theta))
    assert n == 2
    learner.train(400)  # every sub-env resets at least once under the new distribution
    thetas = remote_thetas(learner)
    assert len(thetas) == 2
    for t in thetas:
        assert t["pole_mass"] == pytest.approx(1.9, rel=1e-5)
        assert t["actuator_gain"] == pytest.approx(0.6, rel=1e-5)
        assert t["latency_steps"] == 2


def test_train_counts_steps_and_episodes(learner: RLlibLearner) -> None:
    before = learner.env_steps
    stats = learner.train(800)
    assert stats.env_steps >= 800
    assert learner.env_steps - before == stats.env_steps
    assert stats.episodes > 0 and np.isfinite(stats.episode_return_mean)


def test_measured_sim_cost_reaches_the_learner(learner: RLlibLearner) -> None:
    learner.train(400)
    costs = learner.sim_costs()
    assert set(costs) == {"fine"}  # the only fidelity trained here
    assert 0 < costs["fine"] < 0.01  # seconds per env step


def test_exported_policy_is_the_modules_mean_action(learner: RLlibLearner) -> None:
    policy = learner.policy()
    module = learner.algo.get_module()
    obs = np.random.default_rng(0).normal(scale=0.1, size=(32, 4))
    with torch.no_grad():
        out = module.forward_inference({"obs": torch.as_tensor(obs, dtype=torch.float32)})
    mean = out["action_dist_inputs"][:, :1].double().numpy()
    assert np.allclose(policy(obs), np.clip(mean, -3, 3), atol=1e-5)


def test_save_restore_round_trip(learner: RLlibLearner, tmp_path: Path) -> None:
    learner.save(tmp_path / "ckpt")
    obs = np.random.default_rng(1).normal(scale=0.1, size=(8, 4))
    before = learner.policy()(obs)
    steps = learner.env_steps
    learner.train(400)  # moves the weights
    assert not np.allclose(learner.policy()(obs), before)
    learner.restore(tmp_path / "ckpt")
    assert np.allclose(learner.policy()(obs), before, atol=1e-6)
    assert learner.env_steps == steps


def test_mixed_fidelities_split_the_sub_envs_and_their_steps(learner: RLlibLearner) -> None:
    coarse = TaskDistribution.point(FAMILY.space, {"pole_mass": 0.6}, "coarse")
    fine = TaskDistribution.point(FAMILY.space, {"pole_mass": 1.8}, "fine")
    assert learner.set_task_distributions([(coarse, 0.5), (fine, 0.5)]) == [1, 1]
    learner.train(400)  # every sub-env resets under its part
    stats = learner.train(1200)
    read = learner.algo.env_runner_group.foreach_env_runner(
        lambda r: (
            [(e.fidelity, e.theta["pole_mass"]) for e in r.env.unwrapped.envs]
            if r.env is not None
            else []
        ),
        local_env_runner=False,
    )
    subenvs = [x for per_runner in read for x in per_runner]
    assert [f for f, _ in subenvs] == ["coarse", "fine"]
    assert [m for _, m in subenvs] == pytest.approx([0.6, 1.8], rel=1e-5)
    split = stats.env_steps_by_fidelity
    assert set(split) == {"coarse", "fine"}
    assert abs(sum(split.values()) - stats.env_steps) <= 1
    assert split["coarse"] == pytest.approx(split["fine"], rel=0.05)  # lockstep sub-envs
    assert {e["fidelity"] for e in stats.episode_log} == {"coarse", "fine"}
    orders = [e["order"] for e in stats.episode_log]
    assert orders[0] == 0.0 and orders[-1] == 1.0 and orders == sorted(orders)
