"""Family registry, fidelity names and the package's import surface."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import mujoco
import pytest

import generators
from generators import FAMILIES, FIDELITIES, Family, get_family, register_family


class _Toy(Family):
    """A family reusing the cart-pole model, for registry tests."""

    name = "toy"
    space = generators.get_family("inverted_pendulum").space
    fidelities = ("fine",)
    task = generators.get_family("inverted_pendulum").task
    max_return = 1.0
    max_episode_steps = 1
    absolute_params = generators.get_family("inverted_pendulum").absolute_params

    def build_model(
        self, theta: Mapping[str, float] | None = None, fidelity: str = "fine"
    ) -> mujoco.MjModel:
        return get_family("inverted_pendulum").build_model(theta, fidelity)


@pytest.fixture
def clean_registry() -> Iterator[None]:
    before = dict(FAMILIES)
    yield
    FAMILIES.clear()
    FAMILIES.update(before)


def test_builtin_family_is_registered() -> None:
    assert isinstance(FAMILIES["inverted_pendulum"], Family)
    assert get_family("inverted_pendulum") is FAMILIES["inverted_pendulum"]
    assert FIDELITIES == ("surrogate", "coarse", "fine")


def test_unknown_family_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown task family 'x' \(known: .*inverted_pendulum"):
        get_family("x")


@pytest.mark.usefixtures("clean_registry")
def test_register_class_factory_and_instance() -> None:
    cls = register_family("toy")(_Toy)
    assert cls is _Toy and isinstance(get_family("toy"), _Toy)
    register_family("toy2")(lambda: type("Toy2", (_Toy,), {"name": "toy2"})())
    assert get_family("toy2").name == "toy2"
    instance = type("Toy3", (_Toy,), {"name": "toy3"})()
    assert register_family("toy3")(instance) is instance
    env = get_family("toy3").make_env()
    assert env.reset(seed=0)[1]["theta"] == get_family("inverted_pendulum").space.nominal()


@pytest.mark.usefixtures("clean_registry")
def test_register_errors() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_family("inverted_pendulum")(type("IP", (_Toy,), {"name": "inverted_pendulum"}))
    with pytest.raises(ValueError, match="registered as 'other' is named 'toy'"):
        register_family("other")(_Toy)
    with pytest.raises(TypeError, match="needs a Family"):
        register_family("nothing")(dict)


def test_public_names() -> None:
    expected = {
        "Param",
        "ParamSpace",
        "Region",
        "TaskDistribution",
        "TaskEnv",
        "Family",
        "get_family",
        "register_family",
        "FAMILIES",
        "FIDELITIES",
        "get_reality",
        "REALITIES",
        "RealityProxy",
    }
    assert expected <= set(generators.__all__)
    assert all(hasattr(generators, name) for name in generators.__all__)


def test_import_is_light() -> None:
    code = (
        "import sys, generators; "
        "heavy = [m for m in ('torch', 'ray', 'botorch', 'gpytorch') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    root = str(Path(generators.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    assert result.stdout.strip() == ""
