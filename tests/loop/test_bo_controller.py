"""The `bo` controller proposes boxes at fidelities, learns where progress is, and resumes."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from generators import Param, ParamSpace, get_family
from loop.config import ControllerConfig
from loop.controllers import ProposalResult, make_controller, to_task_distributions

SPACE = get_family("inverted_pendulum").space
PEAK = np.array([0.85, 0.15])  # learning progress is high here (first two parameters)
SPACE6 = ParamSpace([Param(f"p{i}", 0.5, 2.0, 1.0) for i in range(6)])
RELEVANT = [1, 4]  # the only dims `signal6` depends on
PEAK6 = np.array([0.7, 0.3])


def signal(point: tuple[float, ...], fidelity: str) -> float:
    """Synthetic learning progress: a bump in the first two dims; coarse is a biased copy."""
    u = np.asarray(point)
    value = float(np.exp(-np.sum((u[:2] - PEAK) ** 2) / 0.05))
    return value if fidelity == "fine" else 0.8 * value + 0.05


def signal6(point: tuple[float, ...], fidelity: str) -> float:
    """Synthetic learning progress over 6 dims that depends only on dims 1 and 4."""
    u = np.asarray(point)
    value = float(np.exp(-np.sum((u[RELEVANT] - PEAK6) ** 2) / 0.08))
    return value if fidelity == "fine" else 0.8 * value + 0.05


def make(seed: int = 0, space: ParamSpace = SPACE, **kw) -> object:
    cfg = ControllerConfig(method="bo", **kw)
    return make_controller("bo", space, "fine", seed, cfg)


def feed(ctrl, rounds: int, fn=signal, coarse_s: float = 1e-4) -> list[list]:
    batches = []
    for _ in range(rounds):
        proposals = ctrl.propose([])
        batches.append(proposals)
        ctrl.observe(
            [
                ProposalResult(
                    p,
                    fn(p.point, p.fidelity) if p.point else 0.0,
                    1.0,
                    s_per_step=coarse_s if p.fidelity == "coarse" else 4e-4,
                )
                for p in proposals
            ]
        )
    return batches


def test_proposals_are_boxes_around_points_plus_uniform_exploration() -> None:
    ctrl = make(q=4, radius=0.1, explore_share=0.2)
    proposals = ctrl.propose([])
    points = [p for p in proposals if not p.explore]
    explore = [p for p in proposals if p.explore]
    assert len(points) == 4 and len(explore) == 1
    # No ranking yet: each initial box is narrow in its own 2 dims (focus_dims), the hands
    # dealt from a permutation, so 4 boxes vary 8 different dims; the rest are uniform.
    assert ctrl.diagnostics["relevance"] is None
    hands = ctrl.diagnostics["box_dims"]
    assert [len(h) for h in hands] == [2] * 4 and len({i for h in hands for i in h}) == 8
    assert ctrl.diagnostics["focus_dims"] == sorted(i for h in hands for i in h)
    for p, hand in zip(points, hands, strict=True):
        u, low, high = np.asarray(p.point), np.asarray(p.low), np.asarray(p.high)
        assert np.allclose(low[hand], np.clip(u[hand] - 0.1, 0, 1))
        assert np.allclose(high[hand], np.clip(u[hand] + 0.1, 0, 1))
        others = [i for i in range(SPACE.dim) if i not in hand]
        assert np.all(low[others] == 0.0) and np.all(high[others] == 1.0)
        assert p.weight == pytest.approx(0.2)
    assert explore[0].fidelity == "fine" and explore[0].weight == pytest.approx(0.2)
    assert {p.fidelity for p in points} == {"coarse", "fine"}  # the initial design spans both
    assert sum(share for _, share in to_task_distributions(proposals)) == pytest.approx(1.0)
    # Drawn from the seed: another seed deals other hands, the same seed the same ones.
    assert make(q=4, radius=0.1, seed=0).propose([]) == proposals
    other = make(q=4, radius=0.1, seed=1)
    other.propose([])
    assert other.diagnostics["box_dims"] != hands


def test_exploration_share_rises_to_explore_final_with_the_budget_spent() -> None:
    ctrl = make(q=4, explore_share=0.2, explore_final=1.0)
    shares = []
    for progress in (0.0, 0.5, 0.75):
        ctrl.progress = progress
        proposals = ctrl.propose([])
        (explore,) = [p for p in proposals if p.explore]
        points = [p for p in proposals if not p.explore]
        assert all(p.weight == pytest.approx((1 - explore.weight) / 4) for p in points)
        assert ctrl.diagnostics["explore_share"] == pytest.approx(explore.weight)
        shares.append(explore.weight)
    assert shares == pytest.approx([0.2, 0.6, 0.8])
    # Without explore_final the share stays put whatever the progress.
    fixed = make(q=4, explore_share=0.2)
    fixed.progress = 0.75
    assert [p.weight for p in fixed.propose([]) if p.explore] == pytest.approx([0.2])


def test_boxes_are_narrow_only_in_the_dims_the_signal_depends_on() -> None:
    ctrl = make(seed=0, space=SPACE6, explore_share=0.0, radius=0.1)  # focus_dims: 2
    # 8 rounds: after 6, an AVX-512 host's GP fit ranked dim 2 above dim 1 (2026-12-02).
    feed(ctrl, 8, signal6)
    proposals = ctrl.propose([])
    relevance = np.asarray(ctrl.diagnostics["relevance"])
    assert relevance.shape == (6,)
    others = [i for i in range(6) if i not in RELEVANT]
    assert relevance[RELEVANT].min() > 3 * relevance[others].max()
    assert ctrl.diagnostics["focus_dims"] == RELEVANT
    assert ctrl.diagnostics["focus_params"] == ["p1", "p4"]
    json.dumps(ctrl.diagnostics)  # journaled as is
    for p in proposals:
        low, high, u = np.asarray(p.low), np.asarray(p.high), np.asarray(p.point)
        assert np.allclose(low[RELEVANT], np.clip(u[RELEVANT] - 0.1, 0, 1))
        assert np.allclose(high[RELEVANT], np.clip(u[RELEVANT] + 0.1, 0, 1))
        # Uniform coverage where the signal is flat.
        assert np.all(low[others] == 0.0) and np.all(high[others] == 1.0)


def test_focus_dims_null_or_too_large_keeps_boxes_narrow_in_every_dim() -> None:
    batches = {}
    for focus in (None, 2, 99):
        ctrl = make(seed=4, space=SPACE6, focus_dims=focus)
        feed(ctrl, 1, signal6)  # the initial design; the next propose fits the GP
        batches[focus] = ctrl.propose([])
        assert ctrl.diagnostics["relevance"] is not None
    for p in batches[None]:
        if not p.explore:
            u = np.asarray(p.point)
            assert np.allclose(p.low, np.clip(u - 0.25, 0, 1))
            assert np.allclose(p.high, np.clip(u + 0.25, 0, 1))
    assert batches[99] == batches[None]  # clamped to the space's dimension: all dims
    # Focusing changes the boxes, not the points the GP chose.
    assert [p.point for p in batches[2]] == [p.point for p in batches[None]]
    assert batches[2] != batches[None]


def test_fixed_costs_make_proposals_independent_of_the_measured_costs() -> None:
    # The same seed and signal; only the measured coarse cost differs (a loaded host).
    def run(coarse_s: float, **kw) -> list[tuple]:
        batches = feed(make(seed=3, **kw), 3, coarse_s=coarse_s)
        return [(p.point, p.fidelity) for batch in batches for p in batch]

    measured = [run(c) for c in (1e-5, 4e-3)]
    assert measured[0] != measured[1]  # the cost model reads the clock
    fixed = {"coarse": 1e-4, "fine": 4e-4}
    assert run(1e-5, costs=fixed) == run(4e-3, costs=fixed)


def test_spent_fidelities_are_not_proposed() -> None:
    ctrl = make()
    ctrl.allowed_fidelities = ["fine"]
    assert {p.fidelity for p in ctrl.propose([])} == {"fine"}


def test_a_lower_fidelity_that_costs_more_than_the_target_is_not_trained_on() -> None:
    # cartpole_swingup's training runs measure coarse as dearer per env step than fine.
    ctrl = make(costs={"coarse": 5e-5, "fine": 3.3e-5})
    batches = feed(ctrl, 3)
    assert {p.fidelity for batch in batches for p in batch} == {"fine"}
    assert ctrl.diagnostics["dominated"] == [0]


def test_controller_moves_toward_the_informative_region() -> None:
    ctrl = make(seed=1, explore_share=0.0)
    batches = feed(ctrl, 9)
    first = np.array([p.point[:2] for p in batches[0]])
    last = np.array([p.point[:2] for b in batches[-3:] for p in b])
    dist_first = np.linalg.norm(first - PEAK, axis=1).mean()
    dist_last = np.linalg.norm(last - PEAK, axis=1).mean()
    assert dist_last < 0.25 < dist_first
    diag = ctrl.diagnostics
    assert diag["acquisition"] == "mes" and diag["n_obs"] > 20
    assert len(diag["acq_values"]) == 4 and diag["fit_s"] > 0


def test_posterior_slice_peaks_where_the_signal_does() -> None:
    ctrl = make(seed=2, explore_share=0.0)
    feed(ctrl, 7)
    mean, std = ctrl.posterior_slice(SPACE.names[:2], n=11)
    assert mean.shape == std.shape == (11, 11) and np.all(std >= 0)
    i, j = np.unravel_index(np.argmax(mean), mean.shape)
    assert np.linalg.norm(np.array([i, j]) / 10 - PEAK) < 0.3


def test_restored_controller_proposes_what_the_uninterrupted_one_would() -> None:
    ctrl = make(seed=3)
    feed(ctrl, 5)
    state = json.loads(json.dumps(ctrl.state_dict()))  # as plain data, like a checkpoint
    restored = make(seed=99)
    restored.load_state_dict(state)
    assert restored.propose([]) == ctrl.propose([])  # points, fidelities and boxes
    assert restored.diagnostics["relevance"] == ctrl.diagnostics["relevance"]
    assert restored.diagnostics["focus_dims"] == ctrl.diagnostics["focus_dims"]
    assert len(ctrl.diagnostics["focus_dims"]) == 2


# ---------------------------------------------------------------------------------------------
# signal: local (episodes, change of return between iterations)


def episodes6(rng: np.random.Generator, t: int, n: int = 240) -> list[dict]:
    """One iteration's training episodes over SPACE6: the return varies a lot across theta
    (dims 0 and 2) but only improves, by `progress6` per iteration, near PEAK6 in dims 1, 4."""
    theta = rng.uniform(size=(n, 6))
    level = 2.0 * theta[:, 0] - 1.5 * theta[:, 2]
    progress = np.exp(-np.sum((theta[:, RELEVANT] - PEAK6) ** 2, axis=1) / 0.08)
    ret = level + t * progress + rng.normal(0.0, 0.05, n)
    return [
        {"theta_u": list(x), "fidelity": "fine", "return": float(r), "unstable": False, "order": i}
        for i, (x, r) in enumerate(zip(theta, ret, strict=True))
    ]


def feed_local(ctrl, rounds: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for t in range(rounds):
        proposals = ctrl.propose([])
        results = [ProposalResult(p, 0.0, 1.0, s_per_step=4e-4) for p in proposals]
        ctrl.observe(results, episodes=episodes6(rng, t))


def test_local_progress_is_the_change_between_windows_not_the_spread_across_theta() -> None:
    from loop.controllers import local_progress

    rng = np.random.default_rng(1)
    before, after = episodes6(rng, 0, 2000), episodes6(rng, 1, 2000)
    points = np.array([[0.5, 0.7, 0.5, 0.5, 0.3, 0.5], [0.5, 0.1, 0.5, 0.5, 0.9, 0.5]])
    alp = local_progress(before, after, points, ["fine", "fine"])
    assert alp[0] > 0.5  # the peak's progress is 1, blurred over the neighbours
    assert alp[1] < 0.1  # the return spans 3.5 across theta, but it did not change here
    assert np.isnan(local_progress(before[:2], after, points, ["fine"] * 2)).all()
    assert np.isnan(local_progress(before, after, points, ["coarse"] * 2)).all()
    unstable = [{**e, "unstable": True} for e in before]
    assert np.isnan(local_progress(unstable, after, points, ["fine"] * 2)).all()


def test_local_signal_observes_where_the_return_improves() -> None:
    """Per iteration, `bo` observes the change of return at its proposals and at training-
    episode thetas: high where the return improves, low where it only varies with theta."""
    ctrl = make(seed=0, space=SPACE6, signal="local", episode_points=12, fidelities=["fine"])
    feed_local(ctrl, 6)
    assert ctrl.bo.num_observations == 6 * (4 + 12)  # the first iteration by its halves
    x, y = np.array(ctrl.bo.obs.x), np.array(ctrl.bo.obs.y)
    near = np.linalg.norm(x[:, RELEVANT] - PEAK6, axis=1) < 0.25
    far = np.linalg.norm(x[:, RELEVANT] - PEAK6, axis=1) > 0.5
    assert near.sum() >= 5 and far.sum() >= 5
    assert y[near].mean() > 1.8 * y[far].mean()  # ~0.2 of noise where nothing improves
    ctrl.propose([])
    assert len(ctrl.diagnostics["focus_dims"]) == 2


def test_local_signal_state_restores_exactly() -> None:
    ctrl = make(seed=2, space=SPACE6, signal="local", fidelities=["fine"])
    feed_local(ctrl, 3)
    state = json.loads(json.dumps(ctrl.state_dict()))
    restored = make(seed=99, space=SPACE6, signal="local", fidelities=["fine"])
    restored.load_state_dict(state)
    rng = np.random.default_rng(7)
    for c in (ctrl, restored):
        proposals = c.propose([])
        c.observe([ProposalResult(p, 0.0, 1.0) for p in proposals], episodes6(rng, 3))
        rng = np.random.default_rng(7)
    assert restored.bo.state_dict() == ctrl.bo.state_dict()
    assert restored.propose([]) == ctrl.propose([])


# ---------------------------------------------------------------------------------------------
# relevance: returns (focus dims from a GP of the training episodes' returns)


def level_episodes(rng: np.random.Generator, t: int, n: int = 120) -> list[dict]:
    """One iteration's episodes over SPACE6 whose return depends on dims 0 and 2 only, on top
    of a large gain per iteration (the learner's progress, not a dependence on theta)."""
    theta = rng.uniform(size=(n, 6))
    ret = 10.0 * t + 2.0 * theta[:, 0] - 1.5 * theta[:, 2] + rng.normal(0.0, 0.1, n)
    return [
        {"theta_u": list(x), "fidelity": "fine", "return": float(r), "unstable": False, "order": i}
        for i, (x, r) in enumerate(zip(theta, ret, strict=True))
    ]


def feed_returns(ctrl, rounds: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for t in range(rounds):
        proposals = ctrl.propose([])
        results = [
            ProposalResult(p, signal6(p.point, p.fidelity) if p.point else 0.0, 1.0)
            for p in proposals
        ]
        ctrl.observe(results, episodes=level_episodes(rng, t))


def test_relevance_returns_focuses_where_the_episodes_return_varies() -> None:
    """`relevance: signal` narrows the boxes where learning progress peaks (dims 1 and 4);
    `relevance: returns` where the learner's return differs across theta (dims 0 and 2),
    undisturbed by the return's growth from one iteration to the next."""
    focus = {}
    for relevance in ("signal", "returns"):
        ctrl = make(seed=0, space=SPACE6, relevance=relevance, explore_share=0.0)
        feed_returns(ctrl, 6)
        ctrl.propose([])
        focus[relevance] = ctrl.diagnostics["focus_dims"]
        assert ctrl.diagnostics["relevance_source"] == relevance
    assert focus == {"signal": RELEVANT, "returns": [0, 2]}


def test_relevance_returns_needs_episodes_and_restores_exactly() -> None:
    ctrl = make(seed=5, space=SPACE6, relevance="returns")
    ctrl.propose([])
    assert ctrl.diagnostics["relevance"] is None  # no episodes yet: narrow in every dim
    assert ctrl.diagnostics["focus_dims"] == list(range(6))
    ctrl.observe([], episodes=level_episodes(np.random.default_rng(0), 0, n=8))
    assert ctrl.return_relevance() is None  # too few episodes to rank 6 dims
    feed_returns(ctrl, 2, seed=1)
    state = json.loads(json.dumps(ctrl.state_dict()))
    restored = make(seed=99, space=SPACE6, relevance="returns")
    restored.load_state_dict(state)
    assert restored.propose([]) == ctrl.propose([])
    assert restored.diagnostics["relevance"] == ctrl.diagnostics["relevance"]
    assert len(ctrl.diagnostics["focus_dims"]) == 2


# ---------------------------------------------------------------------------------------------
# identify: real episodes locate the reality proxy; the curriculum trains around it

CARTPOLE = get_family("cartpole_swingup")
REAL_THETA = {"pole_mass": 1.6, "actuator_gain": 0.8, "latency_steps": 2}
SMALL_SEARCH = {"episodes": 1, "population": 16, "rounds": 2, "windows": 64, "particles": 6}


def real_episodes(seed: int = 0) -> list:
    """Episodes of a noisy pumping policy on a cart-pole with hidden changes."""
    from evaluators import evaluate_policy

    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        return np.clip(np.sign(obs[:, 4:5]) * 0.8 + rng.normal(0.0, 0.3, (len(obs), 1)), -1, 1)

    env = CARTPOLE.make_env(theta=REAL_THETA)
    return list(evaluate_policy(act, [env], 1, seed, record=True).trajectories)


def identified(seed: int = 0, **kw) -> object:
    from loop.config import IdentifyConfig

    ctrl = make(seed, CARTPOLE.space, identify=IdentifyConfig(**SMALL_SEARCH), **kw)
    feed(ctrl, 2)
    ctrl.observe_real(real_episodes(), CARTPOLE)
    return ctrl


def test_identified_curriculum_trains_only_around_thetas_consistent_with_the_real_data() -> None:
    ctrl = identified(q=3, explore_share=0.4)
    particles = ctrl.particles()
    assert particles is not None and 1 <= len(particles) <= 6
    found = ctrl.identification
    assert found.best_error < found.nominal_error  # the data moved the answer off nominal
    proposals = ctrl.propose([])
    learn = [p for p in proposals if not p.explore]
    explore = [p for p in proposals if p.explore]
    assert len(learn) == 3 and len(explore) == len(particles)
    for p in learn:  # BO chose among the particles, distinct ones while they last
        assert any(np.allclose(p.point, x) for x in particles)
    assert len({p.point for p in learn}) == min(3, len(particles))
    centers = [(np.asarray(p.low) + np.asarray(p.high)) / 2 for p in explore]
    for p in proposals:  # a box of half-width `identify.radius` (clipped) in every dim
        low, high = np.asarray(p.low), np.asarray(p.high)
        assert np.all(high - low <= 2 * 0.05 + 1e-9) and np.all(high > low)
    for c, x in zip(centers, particles, strict=True):
        inner = (x > 0.05) & (x < 0.95)
        assert np.allclose(c[inner], x[inner])
    assert sum(p.weight for p in explore) == pytest.approx(0.4)
    assert sum(share for _, share in to_task_distributions(proposals)) == pytest.approx(1.0)
    assert ctrl.diagnostics["relevance_source"] == "identify"


def test_identified_controller_restores_from_a_checkpoint_and_proposes_the_same() -> None:
    import torch

    ctrl = identified(seed=2)
    feed(ctrl, 1)
    buf = io.BytesIO()
    torch.save(ctrl.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # as `loop.checkpoint.load_state` reads it
    from loop.config import IdentifyConfig

    restored = make(99, CARTPOLE.space, identify=IdentifyConfig(**SMALL_SEARCH))
    restored.load_state_dict(state)
    assert np.array_equal(restored.particles(), ctrl.particles())
    assert restored.propose([]) == ctrl.propose([])
    # The kept real episodes came back too: the next identification is the same.
    more = real_episodes(seed=5)
    a = ctrl.observe_real(more, CARTPOLE)
    b = restored.observe_real(more, CARTPOLE)
    assert np.array_equal(a.consistent, b.consistent)


def test_mf_bo_chooses_distinct_rows_of_a_candidate_set() -> None:
    from loop.mfbo import MultiFidelityBO

    rng = np.random.default_rng(0)
    bo = MultiFidelityBO(2, ["coarse", "fine"], seed=0)
    candidates = np.array([[0.1, 0.1], [0.5, 0.5], [0.84, 0.16], [0.9, 0.9], [0.3, 0.7]])
    for _ in range(4):
        batch = bo.propose(3, candidates=candidates)
        rows = [int(np.argmin(((candidates - x) ** 2).sum(-1))) for x, _ in batch]
        assert all(np.allclose(candidates[i], x) for i, (x, _) in zip(rows, batch, strict=True))
        assert len(set(rows)) == 3
        xs = [x for x, _ in batch] + [rng.uniform(size=2) for _ in range(3)]
        ks = [k for _, k in batch] + [1, 1, 1]
        ys = [signal(tuple(x), "fine" if k else "coarse") for x, k in zip(xs, ks, strict=True)]
        bo.observe(xs, ks, ys, [1e-4 if k == 0 else 4e-4 for k in ks])
    assert bo.diagnostics["fallback"] != "initial_design"
    # The GP has seen the bump at PEAK: the candidate on it is among the first choices.
    assert 2 in rows
