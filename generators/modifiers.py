"""Typed ``MjSpec`` edits that apply scale-factor parameters to a model.

Each modifier multiplies one quantity of a spec, found by element name, by a scale factor.
Because they are relative, one table serves any spec that names its elements the same way:
a family's procedural model and its reality proxy's independently authored XML. Modifiers
are small frozen dataclasses, so tables of them pickle (e.g. to Ray workers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import mujoco
import numpy as np

SpecModifier = Callable[[mujoco.MjSpec, float], None]
"""Edits a nominal spec in place to apply a scale factor (> 0, finite).

A modifier whose ``absolute`` attribute is true takes a value in physical units instead
(>= 0, finite), for a quantity the reference model does not have (e.g. dry friction).
"""


def capsule_mass(radius: float, half_length: float, density: float = 1000.0) -> float:
    """Return the mass of a uniform capsule (cylinder plus two hemispherical caps)."""
    return density * math.pi * radius**2 * (2.0 * half_length + 4.0 / 3.0 * radius)


def _element(spec: mujoco.MjSpec, kind: str, name: str) -> Any:
    element = getattr(spec, kind)(name)
    if element is None:
        raise ValueError(f"model has no {kind} named {name!r}")
    return element


@dataclass(frozen=True)
class ScaleGeomMass:
    """Scale a geom's explicit mass (see :func:`pin_geom_masses` for density-defined ones)."""

    geom: str

    def __call__(self, spec: mujoco.MjSpec, scale: float) -> None:
        element = _element(spec, "geom", self.geom)
        if not element.mass >= 0:  # NaN means "from density", which geometry edits would change
            raise ValueError(f"geom {self.geom!r} needs an explicit mass to scale it")
        element.mass = element.mass * scale


@dataclass(frozen=True)
class ScaleGeomLength:
    """Stretch a ``fromto`` geom about its ``from`` end; an explicit mass stays unchanged."""

    geom: str

    def __call__(self, spec: mujoco.MjSpec, scale: float) -> None:
        element = _element(spec, "geom", self.geom)
        fromto = np.asarray(element.fromto, dtype=float)
        if not np.isfinite(fromto).all():
            raise ValueError(f"geom {self.geom!r} must be defined by fromto to scale its length")
        start, end = fromto[:3], fromto[3:]
        element.fromto = np.concatenate([start, start + scale * (end - start)])


@dataclass(frozen=True)
class ScaleJointDamping:
    """Scale a joint's damping coefficients."""

    joint: str

    def __call__(self, spec: mujoco.MjSpec, scale: float) -> None:
        element = _element(spec, "joint", self.joint)
        element.damping = np.asarray(element.damping) * scale


@dataclass(frozen=True)
class ScaleActuatorGear:
    """Scale an actuator's gear (force per unit of control)."""

    actuator: str

    def __call__(self, spec: mujoco.MjSpec, scale: float) -> None:
        element = _element(spec, "actuator", self.actuator)
        element.gear = np.asarray(element.gear) * scale


@dataclass(frozen=True)
class ScaleJointArmature:
    """Scale a joint's armature (reflected rotor inertia)."""

    joint: str

    def __call__(self, spec: mujoco.MjSpec, scale: float) -> None:
        element = _element(spec, "joint", self.joint)
        element.armature = element.armature * scale


@dataclass(frozen=True)
class ScaleJointActuatorGear:
    """Scale the gear of every actuator that drives a joint (works for unnamed actuators)."""

    joint: str

    def __call__(self, spec: mujoco.MjSpec, scale: float) -> None:
        actuators = [a for a in spec.actuators if a.target == self.joint]
        if not actuators:
            raise ValueError(f"model has no actuator on joint {self.joint!r}")
        for element in actuators:
            element.gear = np.asarray(element.gear) * scale


@dataclass(frozen=True)
class ScaleBodyPos:
    """Scale a body's position in its parent frame (moves it along with a stretched link)."""

    body: str

    def __call__(self, spec: mujoco.MjSpec, scale: float) -> None:
        element = _element(spec, "body", self.body)
        element.pos = np.asarray(element.pos) * scale


@dataclass(frozen=True)
class ScaleGravity:
    """Scale the magnitude of gravity, keeping its direction."""

    def __call__(self, spec: mujoco.MjSpec, scale: float) -> None:
        spec.option.gravity = np.asarray(spec.option.gravity) * scale


@dataclass(frozen=True)
class SetJointFrictionLoss:
    """Set the dry friction (``frictionloss``) of joints, in N or N m: an absolute value."""

    joints: tuple[str, ...]
    absolute: ClassVar[bool] = True

    def __call__(self, spec: mujoco.MjSpec, value: float) -> None:
        for joint in self.joints:
            _element(spec, "joint", joint).frictionloss = value


@dataclass(frozen=True)
class Combined:
    """Apply several modifiers with the same value (one parameter, several elements)."""

    parts: tuple[SpecModifier, ...]

    @property
    def absolute(self) -> bool:
        """Whether the parts take absolute values (they must agree)."""
        kinds = {bool(getattr(part, "absolute", False)) for part in self.parts}
        if len(kinds) != 1:
            raise ValueError("Combined mixes scale-factor and absolute modifiers")
        return kinds.pop()

    def __call__(self, spec: mujoco.MjSpec, value: float) -> None:
        for part in self.parts:
            part(spec, value)


def apply_modifiers(
    spec: mujoco.MjSpec, modifiers: Mapping[str, SpecModifier], values: Mapping[str, float]
) -> None:
    """Apply every entry of ``values`` that has a modifier; other entries are skipped.

    Raises:
        ValueError: If a scale factor is not a finite number > 0, or an absolute value
            (modifier with ``absolute = True``) not a finite number >= 0.
    """
    for name, value in values.items():
        modify = modifiers.get(name)
        if modify is None:
            continue
        if getattr(modify, "absolute", False):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: value must be finite and >= 0 (got {value})")
        elif not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name}: scale factor must be finite and > 0 (got {value})")
        modify(spec, float(value))


def pin_geom_masses(spec: mujoco.MjSpec, geoms: Iterable[str]) -> None:
    """Make the named geoms' masses explicit, equal to what the compiler derives.

    Each geom must be the only geom of its body (the body's compiled mass is then the
    geom's). Afterwards, scaling the geom's size no longer changes its mass.
    """
    pending = [name for name in geoms if not _element(spec, "geom", name).mass >= 0]
    if not pending:
        return
    model = spec.compile()
    for name in pending:
        body_id = int(model.geom(name).bodyid[0])
        if int(np.count_nonzero(model.geom_bodyid == body_id)) != 1:
            raise ValueError(f"geom {name!r} shares its body with other geoms")
        _element(spec, "geom", name).mass = float(model.body_mass[body_id])
