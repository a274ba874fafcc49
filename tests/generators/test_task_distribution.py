"""TaskDistribution: constructors, sampling, validation, serialization."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from generators import ParamSpace, TaskDistribution


def test_point_returns_the_point(space: ParamSpace) -> None:
    theta = {"pole_mass": 1.7, "hinge_damping": 0.3, "latency_steps": 2, "obs_noise_std": 0.01}
    dist = TaskDistribution.point(space, theta, fidelity="coarse")
    assert dist.fidelity == "coarse"
    rng = np.random.default_rng(0)
    expected = space.complete(theta)
    for _ in range(5):
        drawn = dist.sample(space, rng)
        assert drawn == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert drawn["latency_steps"] == 2.0


def test_point_defaults_to_nominal(space: ParamSpace) -> None:
    drawn = TaskDistribution.point(space).sample(space, np.random.default_rng(0))
    assert drawn == pytest.approx(space.nominal())


def test_point_outside_space_names_the_parameter(space: ParamSpace) -> None:
    with pytest.raises(ValueError, match=r"pole_mass=5.0 not in \[0.5, 2.0\].*with_overrides"):
        TaskDistribution.point(space, {"pole_mass": 5.0})


def test_uniform_covers_the_space(space: ParamSpace) -> None:
    dist = TaskDistribution.uniform(space)
    rng = np.random.default_rng(1)
    units = np.array([space.to_unit(dist.sample(space, rng)) for _ in range(300)])
    assert units.min() >= -1e-9 and units.max() <= 1 + 1e-9
    continuous = [i for i, p in enumerate(space) if not p.integer]
    assert units[:, continuous].min() < 0.05 and units[:, continuous].max() > 0.95


def test_box_draws_snap_levelled_params_and_points_do_not(space: ParamSpace) -> None:
    j = space.names.index("pole_length")
    levels = space["pole_length"].levels
    rng = np.random.default_rng(3)
    uniform = TaskDistribution.uniform(space)
    drawn = np.array([space.to_unit(uniform.sample(space, rng))[j] for _ in range(2000)])
    cells = np.round(drawn * levels - 0.5, 9)
    np.testing.assert_allclose(cells, np.round(cells), atol=1e-6)  # every draw a cell centre
    counts = np.bincount(np.round(cells).astype(int), minlength=levels)
    assert counts.size == levels and counts.min() > 0  # every cell drawn, about equally
    theta = {"pole_length": 1.2345}
    point = TaskDistribution.point(space, theta).sample(space, rng)
    assert point["pole_length"] == pytest.approx(1.2345, rel=1e-12)


def test_mixture_samples_stay_in_boxes(space: ParamSpace) -> None:
    regions = space.regions(["pole_mass", "pole_length"], bins=3)
    # a box and a point outside regions 0, 4 and 8, so every draw has one source
    box = np.stack([np.full(space.dim, 0.2), np.full(space.dim, 0.3)])
    box[:, space.names.index("pole_mass")] = [0.4, 0.5]
    point = np.full(space.dim, 0.9)
    point[space.names.index("pole_mass")] = 0.1
    dist = TaskDistribution.mixture(
        [regions[0], regions[8], box, point, regions[4]], weights=[1, 2, 1, 1, 0]
    )
    rng = np.random.default_rng(2)
    hits = np.zeros(5)
    for _ in range(1000):
        u = dist.sample_unit(rng)
        inside = [
            regions[0].contains(u),
            regions[8].contains(u),
            bool(np.all((box[0] <= u) & (u <= box[1]))),
            bool(np.all(u == point)),
            regions[4].contains(u),
        ]
        assert sum(inside) == 1
        hits[inside.index(True)] += 1
    assert hits[4] == 0  # zero weight is never drawn
    np.testing.assert_allclose(hits[:4] / 1000, [0.2, 0.4, 0.2, 0.2], atol=0.05)
    theta = dist.sample(space, rng)
    assert list(theta) == space.names


def test_sampling_is_seeded(space: ParamSpace) -> None:
    dist = TaskDistribution.mixture(space.regions(["cart_mass"], bins=4))
    draw = lambda seed: [dist.sample(space, np.random.default_rng(seed)) for _ in range(3)]  # noqa: E731
    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


@pytest.mark.parametrize(
    ("components", "fidelity", "message"),
    [
        ([(-1.0, [0.1], [0.2])], "fine", "weight must be finite and >= 0"),
        ([(0.0, [0.1], [0.2])], "fine", "positive sum"),
        ([(1.0, [0.1], [0.2]), (1.0, [0.1, 0.1], [0.2, 0.2])], "fine", "has 2 dims"),
        ([(1.0, [0.1, 0.2], [0.2])], "fine", "low has 2 dims, high has 1"),
        ([(1.0, [0.3], [0.2])], "fine", "0 <= low <= high <= 1"),
        ([(1.0, [-0.1], [0.2])], "fine", "0 <= low <= high <= 1"),
        ([(1.0, [0.1], [1.2])], "fine", "0 <= low <= high <= 1"),
        ([(1.0, [float("nan")], [0.2])], "fine", "finite"),
        ([(1.0, [0.1])], "fine", "expected \\(weight, low, high\\)"),
        ([], "fine", "at least one"),
        ([(1.0, [0.1], [0.2])], "ultra", "unknown fidelity 'ultra'"),
    ],
)
def test_validation(components: list, fidelity: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskDistribution(components, fidelity)


def test_mixture_validation(space: ParamSpace) -> None:
    with pytest.raises(ValueError, match="2 items but 1 weights"):
        TaskDistribution.mixture([np.zeros(space.dim), np.ones(space.dim)], weights=[1.0])
    with pytest.raises(ValueError, match="items\\[0\\]"):
        TaskDistribution.mixture([np.zeros((3, space.dim))])


def test_sample_checks_dimension(space: ParamSpace) -> None:
    dist = TaskDistribution([(1.0, [0.5, 0.5], [0.5, 0.5])])
    with pytest.raises(ValueError, match=f"2 dims, parameter space has {space.dim} "):
        dist.sample(space, np.random.default_rng(0))


def test_dict_and_pickle_round_trip(space: ParamSpace) -> None:
    dist = TaskDistribution.mixture(
        [space.regions(["pole_mass"], bins=2)[1], np.full(space.dim, 0.25)],
        weights=[3.0, 1.0],
        fidelity="coarse",
    )
    data = json.loads(json.dumps(dist.to_dict()))
    assert data["fidelity"] == "coarse"
    assert TaskDistribution.from_dict(data) == dist
    assert pickle.loads(pickle.dumps(dist)) == dist
    again = TaskDistribution.from_dict(data)
    assert again.sample(space, np.random.default_rng(5)) == dist.sample(
        space, np.random.default_rng(5)
    )
    with pytest.raises(ValueError, match="unknown task distribution keys: extra"):
        TaskDistribution.from_dict({**data, "extra": 1})


def test_with_fidelity(space: ParamSpace) -> None:
    dist = TaskDistribution.uniform(space)
    coarse = dist.with_fidelity("coarse")
    assert coarse.fidelity == "coarse" and coarse.components == dist.components
    assert dist.fidelity == "fine"
