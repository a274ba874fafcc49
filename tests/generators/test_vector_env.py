"""BatchedVectorEnv: one mujoco.batch call per step reproduces TaskEnv sub-env by sub-env."""

from __future__ import annotations

import math

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import generators
from generators import Family, ParamSpace, TaskDistribution
from generators.inverted_pendulum import InvertedPendulumFamily, InvertedPendulumTask
from generators.task import BatchState
from generators.vector import BatchedVectorEnv, SubEnv

FIDELITIES = ("coarse", "fine")


def run_batched(
    venv: BatchedVectorEnv, actions: np.ndarray, seed: int
) -> list[list[tuple[str, ...]]]:
    """Step ``venv`` through ``actions`` ``(T, n, nu)``; per sub-env the reset/step records."""
    n = venv.num_envs
    obs, info = venv.reset(seed=seed)
    records: list[list[tuple]] = [[("reset", obs[i], info["theta"], i)] for i in range(n)]
    done = np.zeros(n, dtype=bool)
    for a in actions:
        obs, rew, term, trunc, info = venv.step(a)
        for i in range(n):
            if done[i]:  # next-step autoreset: the action was ignored
                assert rew[i] == 0.0 and not term[i] and not trunc[i]
                records[i].append(("reset", obs[i], info["theta"], i))
            else:
                unstable = bool(info["unstable"][i])
                records[i].append(("step", obs[i], rew[i], term[i], trunc[i], a[i], unstable))
        done = term | trunc
    return records


def replay_single(env: gym.Env, records: list[tuple], seed: int, atol: float) -> int:
    """Replay one sub-env's records on a TaskEnv; return the number of episodes.

    Observations must agree within ``atol`` (0: bit for bit), rewards also within a
    relative 1e-12 (a batched reward sums its terms in another order), flags exactly.
    """
    episodes = 0
    for k, rec in enumerate(records):
        if rec[0] == "reset":
            obs, info = env.reset(seed=seed if k == 0 else None)
            i = rec[3]
            expected = {key: v[i] for key, v in rec[2].items() if not key.startswith("_")}
            assert info["theta"] == expected  # bit for bit: the same draw, map and rounding
            episodes += 1
        else:
            obs, rew, term, trunc, info = env.step(rec[5])
            assert rew == pytest.approx(rec[2], rel=1e-12, abs=atol)
            assert (term, trunc, info["unstable"]) == (rec[3], rec[4], rec[6])
        np.testing.assert_allclose(rec[1], obs, rtol=0, atol=atol)
    return episodes


def unit_box(
    space: ParamSpace, default: tuple[float, float], **ranges: tuple[float, float]
) -> tuple[list[float], list[float]]:
    """A box of the unit cube: ``ranges[name]`` in the named dimensions, ``default`` elsewhere."""
    low, high = zip(*(ranges.get(name, default) for name in space.names), strict=True)
    return list(low), list(high)


def assert_equivalent(
    family: Family,
    dist: TaskDistribution,
    *,
    n: int = 4,
    steps: int = 60,
    seed: int = 7,
    nthread: int = 2,
    atol: float = 0.0,
    actions: np.ndarray | None = None,
) -> int:
    venv = BatchedVectorEnv(family, n, distribution=dist, nthread=nthread)
    if actions is None:
        low, high = family.task.action_space.low, family.task.action_space.high
        rng = np.random.default_rng(seed)
        actions = rng.uniform(low, high, size=(steps, n, low.size))
    records = run_batched(venv, actions, seed)
    episodes = 0
    for i in range(n):
        env = family.make_env(distribution=dist)
        episodes += replay_single(env, records[i], seed + i, atol)
    venv.close()
    return episodes


# ---------------------------------------------------------------------------------------------
# Equivalence with TaskEnv


@pytest.mark.parametrize("fidelity", FIDELITIES)
def test_udr_sub_envs_equal_task_env(family: Family, space: ParamSpace, fidelity: str) -> None:
    """Different physics per sub-env (uniform DR), several episodes each, random actions."""
    dist = TaskDistribution.mixture([unit_box(space, (0.0, 1.0))], fidelity=fidelity)
    episodes = assert_equivalent(family, dist, steps=80)
    assert episodes > 8  # random actions drop the pole: autoresets were exercised


@pytest.mark.parametrize("fidelity", FIDELITIES)
def test_latency_and_noise_equal_task_env(family: Family, space: ParamSpace, fidelity: str) -> None:
    """Per-sub-env latency FIFOs and observation noise streams, including over resets."""
    varied = {"latency_steps": (0.0, 1.0), "obs_noise_std": (0.2, 1.0)}  # 0..3, up to 0.05
    extreme = {"latency_steps": (1.0, 1.0), "obs_noise_std": (1.0, 1.0)}  # 3, 0.05
    boxes = [
        unit_box(space, (0.2, 0.8), **varied),
        unit_box(space, (0.5, 0.5), **extreme),
    ]
    dist = TaskDistribution.mixture(boxes, fidelity=fidelity)
    assert_equivalent(family, dist, n=5, steps=70, nthread=1)


def test_fixed_theta_point_equals_task_env(family: Family, space: ParamSpace, balance) -> None:
    """A point distribution (cached theta) over a long balanced episode."""
    dist = TaskDistribution.point(space, {"latency_steps": 1, "obs_noise_std": 0.01}, "fine")
    venv = BatchedVectorEnv(family, 2, distribution=dist, nthread=1)
    env = family.make_env(distribution=dist)
    obs, _ = venv.reset(seed=3)
    single, _ = env.reset(seed=3)
    for t in range(150):
        action = balance(t, obs[0])
        obs, rew, term, _, _ = venv.step(np.stack([action, action]))
        single, r, te, _, _ = env.step(action)
        np.testing.assert_array_equal(obs[0], single)
        assert (rew[0], term[0]) == (pytest.approx(r, rel=1e-12), te)
    assert venv.envs[0].elapsed_steps == 150


def test_initial_states_drawn_ahead_keep_each_sub_envs_stream(
    family: Family, space: ParamSpace
) -> None:
    """A quiet point distribution's resets come from chunks drawn ahead; distributions that
    draw thetas or noise in between rewind each stream to the draws used, so every sub-env
    stays a TaskEnv over many episodes (more than a chunk in every phase)."""
    resets = _assert_streams_kept(family, steps_per_phase=400)
    assert (resets > 32).all()  # past a chunk of drawn-ahead resets


def test_resets_that_read_a_varying_count_keep_each_sub_envs_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """reacher's goal is rejection-sampled: each reset reads its own number of a chunk's
    doubles, and one whose window holds no accepted goal draws from the rewound generator.
    With 2 goal attempts per window (~5% of resets need a third) and chunks of 2 windows,
    refills and fallbacks happen every few episodes; every sub-env stays a TaskEnv."""
    monkeypatch.setattr(generators.reacher, "GOAL_ATTEMPTS", 2)
    monkeypatch.setattr(generators.vector, "_RESET_CHUNK", 2)
    family = generators.get_family("reacher")
    reads = []
    original = family.task.initial_state_reads

    def recorded(models, randoms):
        reads.append(original(models, randoms))
        return reads[-1]

    monkeypatch.setattr(family.task, "initial_state_reads", recorded)
    resets = _assert_streams_kept(family, steps_per_phase=300)
    assert (resets >= 5).all()
    reads = np.concatenate(reads)
    assert (reads == -1).any() and (reads > 0).any()  # both paths were taken


def _assert_streams_kept(family: Family, steps_per_phase: int) -> np.ndarray:
    """Step 3 sub-envs against 3 TaskEnvs through phases of quiet, noisy and UDR
    distributions (random actions), asserting equal observations, rewards and flags;
    returns each sub-env's resets per phase, the fewest over the phases."""
    space = family.space
    quiet = TaskDistribution.point(space, None, "coarse")
    noisy = TaskDistribution.point(space, {"obs_noise_std": 0.01}, "coarse")
    udr = TaskDistribution.uniform(space, "coarse")
    n = 3
    venv = BatchedVectorEnv(family, n, distribution=quiet, nthread=1)
    envs = [family.make_env(distribution=quiet) for _ in range(n)]
    obs, _ = venv.reset(seed=5)
    for i, env in enumerate(envs):
        np.testing.assert_array_equal(obs[i], env.reset(seed=5 + i)[0])
    rng = np.random.default_rng(0)
    low, high = family.task.action_space.low, family.task.action_space.high
    done = np.zeros(n, dtype=bool)
    resets = np.zeros(n, dtype=int)
    fewest = np.full(n, np.iinfo(np.int64).max)
    for phase in (quiet, noisy, quiet, udr, quiet):
        venv.set_task_distribution(phase)
        start = resets.copy()
        for env in envs:
            env.set_task_distribution(phase)
        for _ in range(steps_per_phase):
            a = rng.uniform(low, high, size=(n, low.size))
            obs, rew, term, trunc, _ = venv.step(a)
            for i, env in enumerate(envs):
                if done[i]:
                    single, _ = env.reset()
                    resets[i] += 1
                else:
                    single, r, te, tr, _ = env.step(a[i])
                    assert (rew[i], term[i], trunc[i]) == (r, te, tr)
                np.testing.assert_array_equal(obs[i], single)
            done = term | trunc
        fewest = np.minimum(fewest, resets - start)
    venv.close()
    return fewest


@pytest.mark.parametrize("name", sorted(generators.FAMILIES))
def test_every_family_matches_its_task_env(name: str) -> None:
    """Families added later (per-env task methods, live MjData) are covered too, bit for bit:
    with always-active constraints (dry friction, contacts) and a bounded solver budget the
    states depend on the solver's warm start, which the batch carries like an ``MjData``."""
    family = generators.get_family(name)
    for fidelity in family.fidelities:
        dist = TaskDistribution.uniform(family.space, fidelity)
        assert_equivalent(family, dist, n=3, steps=20, atol=0.0)


@pytest.mark.parametrize("name", ["inverted_pendulum", "hopper"])
def test_batched_initial_states_are_the_per_model_draws(name: str) -> None:
    """``initial_state_batch`` gives each row what ``initial_state`` gives its model and
    generator, bit for bit, and leaves each generator where ``initial_state`` leaves it."""
    family = generators.get_family(name)
    space, task = family.space, family.task
    pick = np.random.default_rng(3)
    models = [family.build_model(space.from_unit(pick.random(space.dim)), "fine") for _ in range(4)]
    seeds = [11, 12, 13, 14]
    batched_rngs = [np.random.default_rng(s) for s in seeds]
    batched = task.initial_state_batch(models, batched_rngs)
    assert batched is not None
    for row, (model, seed, rng) in enumerate(zip(models, seeds, batched_rngs, strict=True)):
        single_rng = np.random.default_rng(seed)
        qpos, qvel = task.initial_state(model, single_rng)
        np.testing.assert_array_equal(batched[0][row], qpos)
        np.testing.assert_array_equal(batched[1][row], qvel)
        assert rng.random() == single_rng.random()


class _PerEnvTask(InvertedPendulumTask):
    """Only the per-MjData methods, reading derived quantities, ``before`` and the action."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(7,), dtype=np.float64)

    def observation(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        tip = data.geom("cpole").xpos  # as mj_step leaves it (from the last substep)
        return np.concatenate([data.qpos, data.qvel, tip, [data.ctrl[0]]])[:7]

    def observation_batch(self, state: BatchState) -> None:
        return None

    def terminated_batch(self, state: BatchState) -> None:
        return None

    def before_step(self, model: mujoco.MjModel, data: mujoco.MjData) -> float:
        return float(data.qpos[0])

    def step_reward(self, model, data, terminated, action, before) -> float:  # type: ignore[override]
        return float(data.qpos[0] - before) - 0.01 * float(action[0]) ** 2


def test_per_env_task_methods_see_the_same_data(space: ParamSpace) -> None:
    family = InvertedPendulumFamily()
    family.task = _PerEnvTask()
    for fidelity in FIDELITIES:
        dist = TaskDistribution.mixture([unit_box(space, (0.0, 1.0))], fidelity=fidelity)
        assert_equivalent(family, dist, steps=40)


# ---------------------------------------------------------------------------------------------
# Autoreset, truncation and the stability guard


def test_next_step_autoreset_through_episode_ends(family: Family, space: ParamSpace) -> None:
    """RLlib's SingleAgentEnvRunner expects gymnasium's next-step autoreset."""
    no_noise = unit_box(space, (0.0, 1.0), obs_noise_std=(0.0, 0.0))  # all vary but the noise
    dist = TaskDistribution.mixture([no_noise], fidelity="coarse")
    venv = BatchedVectorEnv(family, 2, distribution=dist)
    assert venv.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    venv.reset(seed=0)
    push = np.array([[3.0], [0.0]])
    for _ in range(100):
        obs, rew, term, trunc, info = venv.step(push)
        if term[0]:
            break
    assert term[0] and not trunc[0] and rew[0] == 0.0
    old_theta = venv.envs[0].theta
    obs, rew, term, trunc, info = venv.step(np.array([[-3.0], [0.0]]))
    assert rew[0] == 0.0 and not term[0] and not trunc[0]
    assert venv.envs[0].elapsed_steps == 0  # reset, the action was ignored
    assert np.abs(obs[0]).max() <= 0.01  # a reset state: U(-0.01, 0.01) around the origin
    assert venv.envs[0].theta != old_theta
    assert info["theta"]["pole_mass"][0] == venv.envs[0].theta["pole_mass"]
    obs, rew, term, *_ = venv.step(np.zeros((2, 1)))
    assert rew[0] == 1.0 and venv.envs[0].elapsed_steps == 1


def test_truncation_after_max_episode_steps(family: Family, balance) -> None:
    venv = family.make_vector_env(2)
    obs, _ = venv.reset(seed=1)
    for t in range(family.max_episode_steps):
        obs, rew, term, trunc, _ = venv.step(np.stack([balance(t, o) for o in obs]))
        assert not term.any()
    assert trunc.all() and (rew == 1.0).all()
    _, rew, _, trunc, _ = venv.step(np.zeros((2, 1)))
    assert not trunc.any() and (rew == 0.0).all()
    assert [env.elapsed_steps for env in venv.envs] == [0, 0]


def test_stability_guard_ends_only_the_exploding_sub_env(family: Family) -> None:
    venv = family.make_vector_env(3)
    venv.reset(seed=0)
    venv.reset(options={"theta": {"actuator_gain": 1e5}, "reset_mask": np.array([0, 1, 0], bool)})
    _, rew, term, _, info = venv.step(np.full((3, 1), 3.0))
    np.testing.assert_array_equal(info["unstable"], [False, True, False])
    np.testing.assert_array_equal(term, [False, True, False])
    assert rew[1] == 0.0 and venv.unstable_episodes == 1
    obs, rew, term, *_ = venv.step(np.array([[np.nan], [np.inf], [-np.inf]]))  # never raises
    assert np.isfinite(obs).all() and venv.envs[1].elapsed_steps == 0
    assert venv.envs[1].theta["actuator_gain"] == 1.0  # autoreset drew from the distribution


def test_unstable_count_matches_task_env(family: Family, space: ParamSpace) -> None:
    theta = {"actuator_gain": 1e4}
    venv = family.make_vector_env(2)
    env = family.make_env()
    venv.reset(seed=0, options={"theta": theta})
    env.reset(seed=0, options={"theta": theta})
    _, _, term, _, info = venv.step(np.full((2, 1), 3.0))
    _, _, te, _, inf = env.step(np.array([3.0]))
    assert term[0] == te and info["unstable"][0] == inf["unstable"]
    assert venv.unstable_episodes == 2 * env.unstable_episodes == 2


def test_automatic_reset_in_an_episode_first_substep_is_flagged_as_task_env_flags_it(
    family: Family,
) -> None:
    # Near-zero masses with a large gain: the first substep's acceleration is bad, and MuJoCo
    # resets the state and steps on. At coarse (one substep per step) that leaves the time
    # an uninterrupted step would; only the warning tells.
    space = family.space.with_overrides(
        {"pole_mass": {"low": 1e-6}, "cart_mass": {"low": 1e-6}, "actuator_gain": {"high": 1e4}}
    )
    theta = {"pole_mass": 1e-6, "cart_mass": 1e-6, "actuator_gain": 1e4}
    dist = TaskDistribution.point(space, theta, "coarse")
    n = 3
    venv = family.make_vector_env(n, "coarse", space=space, distribution=dist)
    envs = [family.make_env(fidelity="coarse", space=space, distribution=dist) for _ in range(n)]
    venv.reset(seed=0)
    for i, env in enumerate(envs):
        env.reset(seed=i)
    rng = np.random.default_rng(0)
    done = np.zeros(n, dtype=bool)
    for _ in range(12):
        action = rng.uniform(-3, 3, (n, 1))
        _, _, term, trunc, info = venv.step(action)
        for i, env in enumerate(envs):
            if done[i]:  # next-step autoreset
                env.reset()
                assert not info["unstable"][i] and not term[i]
            else:
                _, _, te, _, inf = env.step(action[i])
                assert inf["unstable"] and te  # every step of this world resets itself
                assert info["unstable"][i] and term[i]
        done = term | trunc
    assert venv.unstable_episodes == sum(env.unstable_episodes for env in envs) == 6 * n


# ---------------------------------------------------------------------------------------------
# Distribution handling, views, API


def test_set_task_distribution_reaches_sub_envs(family: Family, space: ParamSpace) -> None:
    venv = family.make_vector_env(3, distribution=TaskDistribution.uniform(space))
    obs, infos = venv.reset(seed=0)
    assert obs.shape == (3, 4) and len(set(infos["theta"]["pole_mass"])) == 3
    venv.set_task_distribution(TaskDistribution.point(space, {"cart_mass": 0.7}, "coarse"))
    assert venv.fidelity == "coarse" and venv.envs[0].fidelity == "fine"  # from next reset
    _, infos = venv.reset(seed=1)
    np.testing.assert_allclose(infos["theta"]["cart_mass"], 0.7)
    assert list(infos["fidelity"]) == ["coarse"] * 3
    venv.call("set_task_distribution", TaskDistribution.point(space, {"pole_mass": 1.5}))
    venv.envs[2].set_task_distribution(TaskDistribution.point(space, {"pole_mass": 0.5}))
    venv.reset()
    assert [e.theta["pole_mass"] for e in venv.envs] == [1.5, 1.5, 0.5]
    assert all(isinstance(e, SubEnv) and e.unwrapped is e for e in venv.envs)
    assert venv.get_attr("fidelity") == ("fine",) * 3
    with pytest.raises(ValueError, match="dims"):
        venv.set_task_distribution(TaskDistribution([(1.0, [0.5], [0.5])]))
    with pytest.raises(ValueError, match="cannot simulate fidelity 'surrogate'"):
        venv.set_task_distribution(TaskDistribution.uniform(space, "surrogate"))


def test_mixed_fidelities_step_in_one_batch(family: Family, space: ParamSpace) -> None:
    venv = family.make_vector_env(4, distribution=TaskDistribution.uniform(space, "fine"))
    venv.set_task_distribution(TaskDistribution.uniform(space, "coarse"), indices=[1, 3])
    venv.reset(seed=0)
    for _ in range(5):
        venv.step(np.zeros((4, 1)))
    assert [e.fidelity for e in venv.envs] == ["fine", "coarse", "fine", "coarse"]
    costs = venv.costs()
    assert set(costs) == {"coarse", "fine"} and costs["fine"]["env_steps"] > 0


def test_construction_and_config(family: Family, space: ParamSpace) -> None:
    config = {
        "family": "inverted_pendulum",
        "num_envs": 2,
        "space": space.to_dict(),
        "distribution": TaskDistribution.point(space, {"pole_mass": 1.2}, "coarse").to_dict(),
        "worker_index": 1,
    }
    venv = BatchedVectorEnv.from_config(config)
    _, infos = venv.reset(seed=0)
    assert venv.num_envs == 2 and venv.fidelity == "coarse"
    assert infos["theta"]["pole_mass"][1] == 1.2
    assert venv.single_action_space == family.task.action_space
    assert venv.action_space.shape == (2, 1) and venv.observation_space.shape == (2, 4)
    with pytest.raises(ValueError, match="n must be >= 1"):
        family.make_vector_env(0)
    with pytest.raises(ValueError, match="'num_envs'"):
        BatchedVectorEnv.from_config({"family": "inverted_pendulum"})
    with pytest.raises(ValueError, match="disagrees"):
        BatchedVectorEnv(family, 2, "fine", distribution=TaskDistribution.uniform(space, "coarse"))
    with pytest.raises(gym.error.ResetNeeded):
        BatchedVectorEnv(family, 1).step(np.zeros((1, 1)))
    with pytest.raises(ValueError, match="entries"):
        venv.step(np.zeros((3, 1)))
    venv.close()
    assert venv.closed


def test_seeding_and_partial_reset(family: Family, space: ParamSpace) -> None:
    dist = TaskDistribution.uniform(space)
    a = family.make_vector_env(3, distribution=dist)
    b = family.make_vector_env(3, distribution=dist)
    obs_a, _ = a.reset(seed=5)
    obs_b, _ = b.reset(seed=[5, 6, 7])
    np.testing.assert_array_equal(obs_a, obs_b)
    before = obs_a.copy()
    obs, infos = a.reset(seed=[None, 11, None], options={"reset_mask": np.array([0, 1, 0], bool)})
    np.testing.assert_array_equal(obs[[0, 2]], before[[0, 2]])
    np.testing.assert_array_equal(infos["_theta"], [False, True, False])
    single, _ = family.make_env(distribution=dist).reset(seed=11)
    np.testing.assert_array_equal(obs[1], single)


# ---------------------------------------------------------------------------------------------
# Measured cost


def test_measured_cost_fine_exceeds_coarse(family: Family, space: ParamSpace, balance) -> None:
    costs = {}
    for fidelity in FIDELITIES:
        venv = family.make_vector_env(48, fidelity)
        assert math.isnan(venv.cost_s_per_step)
        obs, _ = venv.reset(seed=0)
        for t in range(120):
            obs, *_ = venv.step(np.stack([balance(t, o) for o in obs]))
            if t == 0:  # the first step is counted, not timed (one-off work lands in it)
                assert math.isnan(venv.cost_s_per_step)
                assert venv.costs()[fidelity]["env_steps"] == 48
        costs[fidelity] = venv.cost_s_per_step
        data = venv.costs()
        assert set(data) == {fidelity} and data[fidelity]["env_steps"] == 48 * 120
        assert data[fidelity]["s_per_step"] == venv.cost(fidelity) > 0
        venv.close()
    assert costs["fine"] > costs["coarse"]


@pytest.mark.parametrize("name", ["inverted_pendulum", "reacher"])
def test_stepping_compiles_nothing(name: str) -> None:
    """The kernels are compiled at import for every layout and dtype a run passes, so no
    timed step stalls on a compile: float32 actions (RLlib's), single-row and full resets,
    mixed fidelities and the per-env path add no specialization."""
    from generators import inverted_pendulum, kernels, reacher

    kernel_fns = [
        *(getattr(kernels, k) for k in ("controls", "unsound_rows", "finish_step")),
        *(getattr(kernels, k) for k in ("start_episodes", "take_windows")),
        inverted_pendulum._ended,
        reacher._arm_outputs,
    ]
    before = [list(fn.signatures) for fn in kernel_fns]
    family = generators.get_family(name)
    venv = family.make_vector_env(4, distribution=TaskDistribution.uniform(family.space, "fine"))
    venv.set_task_distribution(TaskDistribution.uniform(family.space, "coarse"), indices=[1])
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    low, high = venv.single_action_space.low, venv.single_action_space.high
    for t in range(300):
        dtype = np.float32 if t % 2 else np.float64
        venv.step(rng.uniform(2 * low, 2 * high, size=(4, low.size)).astype(dtype))
        if t % 50 == 7:
            venv.reset(options={"reset_mask": np.arange(4) == t % 4})
    env = family.make_env(distribution=TaskDistribution.uniform(family.space, "fine"))
    env.reset(seed=1)
    for _ in range(20):
        env.step(env.action_space.sample())
    assert [list(fn.signatures) for fn in kernel_fns] == before


# ---------------------------------------------------------------------------------------------
# RLlib


@pytest.mark.slow
def test_rllib_ppo_trains_on_batched_env(ray_session) -> None:
    from learners import LearnerConfig, RLlibLearner

    family = generators.get_family("inverted_pendulum")
    space = family.space
    dist = TaskDistribution.point(space, None, "coarse")
    spec = {
        "kind": "family",
        "family": family.name,
        "fidelity": dist.fidelity,
        "space": space.to_dict(),
        "distribution": dist.to_dict(),
    }
    cfg = LearnerConfig(
        num_env_runners=1,
        num_envs_per_env_runner=4,
        train_batch_size=200,
        minibatch_size=100,
        num_epochs=1,
        hidden=[16, 16],
        vectorize="batched",
    )
    learner = RLlibLearner(cfg, spec, seed=0)
    try:
        theta = {"pole_mass": 1.8, "latency_steps": 1}
        assert learner.set_task_distribution(TaskDistribution.point(space, theta, "coarse")) == 4
        stats = learner.train(400)
        assert stats.env_steps >= 400 and stats.episodes > 0

        def read(runner) -> list:
            venv = runner.env.unwrapped
            assert isinstance(venv, BatchedVectorEnv)
            return [(e.theta, e.fidelity, venv.cost_s_per_step) for e in venv.envs]

        remote = learner.algo.env_runner_group.foreach_env_runner(read, local_env_runner=False)
        subs = [s for per_runner in remote for s in per_runner]
        assert len(subs) == 4
        for theta_i, fidelity, cost in subs:
            assert theta_i["pole_mass"] == pytest.approx(1.8, rel=1e-5)
            assert theta_i["latency_steps"] == 1 and fidelity == "coarse"
            assert cost > 0
    finally:
        learner.stop()


def test_learner_config_validates_vectorize() -> None:
    from learners import LearnerConfig

    LearnerConfig(vectorize="sync").validate()
    with pytest.raises(ValueError, match="vectorize: unknown 'threads'"):
        LearnerConfig(vectorize="threads").validate()


@pytest.mark.parametrize("name", ["inverted_pendulum", "reacher"])
def test_out_of_range_actions_act_as_clipped(name: str) -> None:
    """A family's envs clip actions themselves, which lets the learner turn RLlib's per-item
    clipping off: far out-of-range actions give the clipped actions' trajectories."""
    from learners import LearnerConfig
    from learners.rllib_learner import ppo_config

    family = generators.get_family(name)
    dist = TaskDistribution.uniform(family.space, "coarse")
    low, high = family.task.action_space.low, family.task.action_space.high
    raw = np.random.default_rng(0).normal(0.0, 4.0 * high, size=(30, 3, low.size))
    clipped = np.clip(raw, low, high)
    assert (raw != clipped).any()

    def trajectories(actions: np.ndarray) -> list[list[tuple]]:
        venv = BatchedVectorEnv(family, 3, distribution=dist)
        records = run_batched(venv, actions, seed=5)
        venv.close()
        return [[(r[1], r[2]) if r[0] == "step" else (r[1],) for r in env] for env in records]

    for got, want in zip(trajectories(raw), trajectories(clipped), strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a[0], b[0])
            assert a[1:] == b[1:]
    env_raw, env_clipped = family.make_env(distribution=dist), family.make_env(distribution=dist)
    env_raw.reset(seed=5), env_clipped.reset(seed=5)
    for a_raw, a_clipped in zip(raw[:, 0], clipped[:, 0], strict=True):
        got, want = env_raw.step(a_raw), env_clipped.step(a_clipped)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1:4] == want[1:4]
        if got[2] or got[3]:
            break
    spec = {"kind": "family", "family": name, "fidelity": "coarse", "space": {}, "distribution": {}}
    assert not ppo_config(LearnerConfig(), spec, 0).clip_actions
    assert ppo_config(LearnerConfig(), {**spec, "kind": "reality"}, 0).clip_actions


def test_make_env_returns_batched_env_for_num_envs(space: ParamSpace) -> None:
    from learners.rllib_learner import make_env, push_task_distribution

    spec = {
        "kind": "family",
        "family": "inverted_pendulum",
        "fidelity": "fine",
        "space": space.to_dict(),
        "distribution": TaskDistribution.point(space).to_dict(),
    }
    assert isinstance(make_env(spec), generators.TaskEnv)
    venv = make_env({**spec, "num_envs": 3})
    assert isinstance(venv, BatchedVectorEnv) and venv.num_envs == 3

    class Runner:
        env: object = gym.wrappers.vector.DictInfoToList(venv)

    payload = TaskDistribution.point(space, {"pole_mass": 0.6}).to_dict()
    assert push_task_distribution(Runner(), payload) == 3
    venv.reset(seed=0)
    assert {e.theta["pole_mass"] for e in venv.envs} == {0.6}


# ---------------------------------------------------------------------------------------------
# Batched task methods equal the per-env ones


@pytest.mark.parametrize("name", ["cartpole_swingup", "hopper", "reacher"])
def test_batched_task_methods_equal_per_env(name: str) -> None:
    """Observation, termination and step reward on states a TaskEnv visits, row by row."""
    family = generators.get_family(name)
    task = family.task
    rng = np.random.default_rng(0)
    models, datas, before, actions = [], [], [], []
    for fidelity in family.fidelities:
        env = family.make_env(distribution=TaskDistribution.uniform(family.space, fidelity))
        for seed in range(6):
            env.reset(seed=seed)
            for _ in range(int(rng.integers(1, 40))):
                action = env.action_space.sample()
                prev = env.data.qpos.copy()
                _, _, term, trunc, _ = env.step(action)
                if term or trunc:
                    break
            models.append(env.model)
            datas.append(mujoco.MjData(env.model))
            mujoco.mj_copyData(datas[-1], env.model, env.data)
            before.append(prev)
            actions.append(np.clip(action, env.action_space.low, env.action_space.high))
    constants = [task.batch_constants(m) for m in models]
    state = BatchState(
        models=models,
        time=np.array([d.time for d in datas]),
        qpos=np.stack([d.qpos for d in datas]),
        qvel=np.stack([d.qvel for d in datas]),
        act=np.stack([d.act for d in datas]),
        ctrl=np.stack([d.ctrl for d in datas]),
        action=np.stack(actions).astype(np.float64),
        qpos_before=np.stack(before),
        constants=None if constants[0] is None else np.stack(constants),
    )
    terminated = np.array([task.terminated(m, d) for m, d in zip(models, datas, strict=True)])
    np.testing.assert_array_equal(task.terminated_batch(state), terminated)
    expected_div = [task.diverged(m, d) for m, d in zip(models, datas, strict=True)]
    np.testing.assert_array_equal(task.diverged_batch(state), expected_div)
    obs = [task.observation(m, d) for m, d in zip(models, datas, strict=True)]
    np.testing.assert_allclose(task.observation_batch(state), obs, rtol=0, atol=1e-12)
    rewards = [
        task.step_reward(m, d, bool(t), a, task.before_step(m, _at(m, q)))
        for m, d, t, a, q in zip(models, datas, terminated, actions, before, strict=True)
    ]
    batched = task.step_reward_batch(state, terminated)
    np.testing.assert_allclose(batched, rewards, rtol=0, atol=1e-12)
    bare = BatchState(models, state.time, state.qpos, state.qvel, state.act)  # outside a step
    assert task.step_reward_batch(bare, terminated) is None
    venv = BatchedVectorEnv(family, 3)
    venv.reset(seed=0)
    assert all(venv._batched.values()) and not venv._live_data  # no MjData per sub-env


def _at(model: mujoco.MjModel, qpos: np.ndarray) -> mujoco.MjData:
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    return data


def test_a_batch_states_models_are_those_of_its_rows(space: ParamSpace) -> None:
    """Batched task methods see each row's own model when only some sub-envs step."""
    family = generators.get_family("inverted_pendulum")
    venv = BatchedVectorEnv(family, 4, distribution=TaskDistribution.uniform(space, "coarse"))
    venv.reset(seed=0)
    state = venv._batch_state(np.array([3, 1]))
    assert len(state.models) == 2
    assert list(state.models) == [venv._models[3], venv._models[1]]
    assert state.models[-1] is venv._models[1] and state.models[:1] == [venv._models[3]]
    assert venv._models[3] is not venv._models[1]
    venv.close()


def test_step_infos_kept_by_a_consumer_stay_as_they_were(family: Family, space: ParamSpace) -> None:
    """A step's info arrays are shared between steps until a draw changes them: read-only,
    so a consumer that keeps one (RLlib keeps infos per episode) sees the thetas of its own
    step after later episodes drew new ones."""
    venv = BatchedVectorEnv(family, 4, distribution=TaskDistribution.uniform(space, "coarse"))
    venv.reset(seed=0)
    zeros = np.zeros((4, family.task.action_space.shape[0]))
    *_, first = venv.step(zeros)
    kept = {name: first["theta"][name].copy() for name in space.names}
    assert not first["theta"][space.names[0]].flags.writeable
    assert not first["fidelity"].flags.writeable
    ended = np.zeros(4, dtype=bool)
    for _ in range(300):  # the pole falls with zero force: every sub-env starts new episodes
        *_, term, trunc, infos = venv.step(zeros)
        ended |= term | trunc
    assert ended.all()
    for name in space.names:
        np.testing.assert_array_equal(first["theta"][name], kept[name])
    now = np.stack([infos["theta"][name] for name in space.names])
    assert not np.array_equal(now, np.stack(list(kept.values())))
    np.testing.assert_array_equal(now.T, np.stack([list(e.theta.values()) for e in venv.envs]))
    venv.close()
