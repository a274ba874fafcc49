"""ParamSpace, Param and Region: unit-cube maps, validation, overrides, regions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from generators import Param, ParamSpace, Region
from generators.env import _round_significant, round_significant


def small_space() -> ParamSpace:
    return ParamSpace(
        [
            Param("mass", 0.5, 2.0, 1.0, scale="log"),
            Param("gain", 0.0, 10.0, 5.0),
            Param("delay", 0, 3, 0, integer=True),
        ]
    )


# --- Param ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "param",
    [
        Param("lin", -2.0, 3.0, 0.0),
        Param("log", 0.25, 4.0, 1.0, scale="log"),
        Param("wide_log", 1e-4, 10.0, 1.0, scale="log"),
    ],
    ids=lambda p: p.name,
)
def test_continuous_round_trip(param: Param) -> None:
    for u in np.linspace(0.0, 1.0, 11):
        assert param.to_unit(param.from_unit(u)) == pytest.approx(u, abs=1e-12)
    for x in np.linspace(param.low, param.high, 7):
        assert param.from_unit(param.to_unit(x)) == pytest.approx(x, rel=1e-12)
    assert param.from_unit(0.0) == pytest.approx(param.low)
    assert param.from_unit(1.0) == pytest.approx(param.high)


def test_log_scale_maps_in_log_space() -> None:
    p = Param("m", 0.5, 2.0, 1.0, scale="log")
    assert p.to_unit(1.0) == pytest.approx(0.5)
    assert p.from_unit(0.25) == pytest.approx(math.sqrt(0.5))


def test_from_unit_clips() -> None:
    p = Param("x", 1.0, 2.0, 1.5)
    assert p.from_unit(-3.0) == 1.0
    assert p.from_unit(7.0) == 2.0
    assert p.to_unit(3.0) == pytest.approx(2.0)  # to_unit reports points outside the space


def test_integer_round_trip_and_equal_bins() -> None:
    p = Param("k", 0, 3, 0, integer=True)
    for k in range(4):
        assert p.from_unit(p.to_unit(k)) == k
    values = [p.from_unit(u) for u in np.random.default_rng(0).random(20000)]
    assert set(values) == {0.0, 1.0, 2.0, 3.0}
    counts = np.bincount(np.array(values, dtype=int)) / len(values)
    np.testing.assert_allclose(counts, 0.25, atol=0.02)
    assert p.from_unit(0.0) == 0 and p.from_unit(1.0) == 3


def test_integer_log_scale() -> None:
    p = Param("n", 1, 64, 8, scale="log", integer=True)
    for k in (1, 2, 8, 63, 64):
        assert p.from_unit(p.to_unit(k)) == k
    assert all(float(p.from_unit(u)).is_integer() for u in np.linspace(0, 1, 50))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"low": 2.0, "high": 1.0, "nominal": 1.5}, "low: must be < high (2.0 >= 1.0)"),
        ({"low": 1.0, "high": 1.0, "nominal": 1.0}, "low: must be < high (1.0 >= 1.0)"),
        ({"low": 0.0, "high": 1.0, "nominal": 2.0}, "nominal: must be within [low, high]"),
        ({"low": 0.0, "high": 1.0, "nominal": 0.5, "scale": "cubic"}, "scale: must be"),
        ({"low": 0.0, "high": 1.0, "nominal": 0.5, "scale": "log"}, "low: must be > 0 for log"),
        ({"low": -1.0, "high": 1.0, "nominal": 0.5, "scale": "log"}, "low: must be > 0 for log"),
        ({"low": 0.0, "high": 2.5, "nominal": 1.0, "integer": True}, "high: must be a whole"),
        ({"low": 0.0, "high": 2.0, "nominal": 0.5, "integer": True}, "nominal: must be a whole"),
        ({"low": float("nan"), "high": 1.0, "nominal": 0.5}, "low: must be finite"),
        ({"low": 0.0, "high": float("inf"), "nominal": 0.5}, "high: must be finite"),
        ({"low": "0", "high": 1.0, "nominal": 0.5}, "low: must be a number"),
        ({"low": 0.0, "high": 1.0, "nominal": 0.5, "levels": 1}, "levels: must be 0"),
        ({"low": 0.0, "high": 1.0, "nominal": 0.5, "levels": -4}, "levels: must be 0"),
        ({"low": 0.0, "high": 1.0, "nominal": 0.5, "levels": 2.5}, "levels: must be a whole"),
        ({"low": 0.0, "high": 1.0, "nominal": 0.5, "levels": True}, "levels: must be a whole"),
        ({"low": 0, "high": 3, "nominal": 0, "integer": True, "levels": 4}, "levels: an integer"),
    ],
)
def test_param_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        Param("p", **kwargs)
    assert str(err.value).startswith(message)


def test_param_name_must_be_nonempty() -> None:
    with pytest.raises(ValueError, match=r"^name: "):
        Param("", 0.0, 1.0, 0.5)


# --- ParamSpace -------------------------------------------------------------------------------


def test_container_protocol() -> None:
    space = small_space()
    assert space.names == ["mass", "gain", "delay"]
    assert len(space) == space.dim == 3
    assert "gain" in space and "nope" not in space
    assert space["gain"].high == 10.0
    assert [p.name for p in space] == space.names
    with pytest.raises(KeyError, match="unknown parameter 'nope'"):
        space["nope"]


def test_space_rejects_duplicates_and_empty() -> None:
    with pytest.raises(ValueError, match="duplicate parameter names: a"):
        ParamSpace([Param("a", 0, 1, 0.5), Param("a", 0, 2, 1)])
    with pytest.raises(ValueError, match="at least one"):
        ParamSpace([])


def test_unit_maps_fill_missing_with_nominal() -> None:
    space = small_space()
    u = space.to_unit({"gain": 10.0})
    assert u.shape == (3,)
    np.testing.assert_allclose(u[:2], [0.5, 1.0])
    assert space.from_unit(u) == {"mass": pytest.approx(1.0), "gain": 10.0, "delay": 0.0}
    with pytest.raises(ValueError, match="shape"):
        space.from_unit(np.zeros(2))


def test_to_unit_array_is_row_wise_to_unit() -> None:
    space = small_space()
    thetas = [*space.sample(np.random.default_rng(0), 20), {"mass": 4.0, "gain": -1, "delay": 3}]
    rows = np.array([[t[n] for n in space.names] for t in thetas])
    expected = np.stack([space.to_unit(t) for t in thetas])
    np.testing.assert_allclose(space.to_unit_array(rows), expected, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="shape"):
        space.to_unit_array(rows[:, :2])
    with pytest.raises(ValueError, match="> 0"):
        space.to_unit_array(np.array([[0.0, 1.0, 0.0]]))


def test_nominal_and_complete() -> None:
    space = small_space()
    assert space.nominal() == {"mass": 1.0, "gain": 5.0, "delay": 0.0}
    assert space.complete({"delay": 2}) == {"mass": 1.0, "gain": 5.0, "delay": 2.0}
    assert space.complete(None) == space.nominal()
    with pytest.raises(ValueError) as err:
        space.complete({"x": 1.0})
    assert str(err.value).startswith("unknown parameter 'x'")


def test_sample_is_seeded_and_in_bounds() -> None:
    space = small_space()
    a = space.sample(np.random.default_rng(7), 50)
    b = space.sample(np.random.default_rng(7), 50)
    c = space.sample(np.random.default_rng(8), 50)
    assert a == b
    assert a != c
    assert len(a) == 50
    for theta in a:
        assert list(theta) == space.names
        for p in space:
            assert p.low <= theta[p.name] <= p.high
        assert theta["delay"].is_integer()
    # log-uniform: the median of a log-scale factor in [0.5, 2] is near 1
    masses = [t["mass"] for t in space.sample(np.random.default_rng(0), 4000)]
    assert np.median(masses) == pytest.approx(1.0, abs=0.05)


def test_overrides_replace_fields(space: ParamSpace) -> None:
    wide = space.with_overrides(
        {
            "pole_mass": {"low": 0.1, "high": 10.0, "nominal": None},
            "actuator_gain": {"scale": "log", "nominal": 1.2},
            "cart_mass": None,
        }
    )
    assert wide["pole_mass"].low == 0.1 and wide["pole_mass"].high == 10.0
    assert wide["pole_mass"].nominal == 1.0  # None leaves the field alone
    assert wide["actuator_gain"].scale == "log" and wide["actuator_gain"].nominal == 1.2
    assert wide["cart_mass"] == space["cart_mass"]
    assert wide.names == space.names
    assert space["pole_mass"].low == 0.5  # the original is untouched


def test_override_unknown_parameter(space: ParamSpace) -> None:
    with pytest.raises(ValueError) as err:
        space.with_overrides({"foo": {"low": 1.0}})
    assert str(err.value) == f"unknown parameter 'foo' (known: {', '.join(space.names)})"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"pole_mass": {"low": 3.0}}, "pole_mass.low: must be < high (3.0 >= 2.0)"),
        ({"pole_mass": {"high": 0.8}}, "pole_mass.nominal: must be within [low, high]"),
        ({"obs_noise_std": {"scale": "log"}}, "obs_noise_std.low: must be > 0 for log scale"),
        ({"pole_length": {"scale": "quadratic"}}, "pole_length.scale: must be 'linear' or"),
        ({"latency_steps": {"high": 2.5}}, "latency_steps.high: must be a whole number"),
        ({"pole_mass": {"low": "small"}}, "pole_mass.low: must be a number"),
        ({"pole_mass": {"lower": 0.1}}, "pole_mass.lower: unknown field"),
        ({"pole_mass": 3.0}, "pole_mass: override must be a mapping"),
    ],
)
def test_override_errors(space: ParamSpace, override: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        space.with_overrides(override)
    assert str(err.value).startswith(message)


def test_dict_round_trip_through_json() -> None:
    space = small_space()
    data = json.loads(json.dumps(space.to_dict()))
    assert list(data) == space.names
    assert data["mass"] == {
        "low": 0.5,
        "high": 2.0,
        "nominal": 1.0,
        "scale": "log",
        "integer": False,
        "levels": 0,
    }
    assert ParamSpace.from_dict(data) == space
    with pytest.raises(ValueError, match=r"^mass\.low: must be < high"):
        ParamSpace.from_dict({"mass": {"low": 3.0, "high": 2.0, "nominal": 2.0}})


# --- regions ----------------------------------------------------------------------------------


def test_regions_grid(space: ParamSpace) -> None:
    regions = space.regions(["pole_mass", "pole_length"], bins=2)
    assert len(regions) == 4
    assert [r.index for r in regions] == [0, 1, 2, 3]
    assert regions[1].label == "pole_mass[0/2],pole_length[1/2]"
    i_mass, i_len = space.names.index("pole_mass"), space.names.index("pole_length")
    r = regions[1]
    assert (r.low[i_mass], r.high[i_mass]) == (0.0, 0.5)
    assert (r.low[i_len], r.high[i_len]) == (0.5, 1.0)
    others = [i for i in range(space.dim) if i not in (i_mass, i_len)]
    assert np.all(r.low[others] == 0.0) and np.all(r.high[others] == 1.0)
    np.testing.assert_allclose(r.center()[[i_mass, i_len]], [0.25, 0.75])
    assert len(space.regions(["pole_mass", "pole_length", "cart_mass"], bins=3)) == 27


def test_regions_partition_the_cube(space: ParamSpace) -> None:
    regions = space.regions(["pole_mass", "hinge_damping"], bins=3)
    points = np.random.default_rng(0).random((500, space.dim))
    corners = np.array([np.zeros(space.dim), np.ones(space.dim)])
    for u in np.concatenate([points, corners]):
        assert sum(r.contains(u) for r in regions) == 1
    for r in regions:
        assert r.contains(r.center())


def test_regions_validation(space: ParamSpace) -> None:
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        space.regions(["nope"], bins=2)
    with pytest.raises(ValueError, match="bins must be >= 1"):
        space.regions(["pole_mass"], bins=0)
    with pytest.raises(ValueError, match="repeat"):
        space.regions(["pole_mass", "pole_mass"], bins=2)


def test_region_dict_round_trip(space: ParamSpace) -> None:
    region = space.regions(["cart_mass"], bins=4)[2]
    again = Region.from_dict(json.loads(json.dumps(region.to_dict())))
    assert again.label == region.label == "cart_mass[2/4]"
    np.testing.assert_array_equal(again.low, region.low)
    np.testing.assert_array_equal(again.high, region.high)


def test_array_maps_equal_the_point_maps_bit_for_bit() -> None:
    """A batched env maps many draws at once; its thetas must be a TaskEnv's exactly."""
    space = ParamSpace(
        [
            Param("length", 0.5, 2.0, 1.0, scale="log", levels=5),
            Param("gain", -1.0, 10.0, 5.0),
            Param("delay", 0, 3, 0, integer=True),
            Param("mass", 0.1, 30.0, 1.0, scale="log"),
        ]
    )
    u = np.random.default_rng(0).uniform(-0.2, 1.2, size=(400, 4))  # some outside the cube
    u[:4] = [[0.0] * 4, [1.0] * 4, [0.5] * 4, [0.625] * 4]  # edges and a half-way delay
    snapped = space.snap(u)
    assert snapped.tobytes() == np.array([space.snap(row) for row in u]).tobytes()
    thetas = space.from_unit_array(snapped)
    expected = [[space.from_unit(row)[n] for n in space.names] for row in snapped]
    assert thetas.tolist() == expected
    values = np.concatenate([thetas.ravel(), [1 / 3, 123456.5, 9.81, 1e-7 / 3, -2 / 3]])
    rounded = round_significant(values)
    assert rounded.tolist() == [_round_significant(v) for v in values.tolist()]
    assert rounded[-5:].tolist() == [0.333333, 123456.0, 9.81, 3.33333e-08, -0.666667]
    with pytest.raises(ValueError, match="shape"):
        space.from_unit_array(u[:, :2])


def test_snap_moves_levelled_params_to_cell_centres() -> None:
    space = ParamSpace(
        [
            Param("length", 0.5, 2.0, 1.0, scale="log", levels=4),
            Param("gain", 0.0, 10.0, 5.0),
        ]
    )
    snapped = space.snap([0.0, 0.3])
    np.testing.assert_allclose(snapped, [0.125, 0.3])
    np.testing.assert_allclose(space.snap([0.74, 1.0])[0], 0.625)
    np.testing.assert_allclose(space.snap([1.0, 0.0])[0], 0.875)  # the top edge is in the last
    u = np.random.default_rng(0).uniform(size=(500, 2))
    cells = np.unique([space.snap(row)[0] for row in u])
    np.testing.assert_allclose(cells, [0.125, 0.375, 0.625, 0.875])
    assert ParamSpace([Param("gain", 0.0, 10.0, 5.0)]).snap([0.3]) == [0.3]


def test_levels_override_and_round_trip(space: ParamSpace) -> None:
    assert space["pole_length"].levels > 0  # the family's default for a length
    continuous = space.with_overrides({"pole_length": {"levels": 0}, "pole_mass": {"levels": 8}})
    assert continuous["pole_length"].levels == 0 and continuous["pole_mass"].levels == 8
    assert ParamSpace.from_dict(json.loads(json.dumps(continuous.to_dict()))) == continuous
    old = {
        name: {k: v for k, v in d.items() if k != "levels"} for name, d in space.to_dict().items()
    }
    assert all(p.levels == 0 for p in ParamSpace.from_dict(old))  # older run data: continuous
