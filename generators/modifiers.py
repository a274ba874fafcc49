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
from typing import Any, ClassVar, Protocol, runtime_checkable

import mujoco
import numpy as np

SpecModifier = Callable[[mujoco.MjSpec, float], None]
"""Edits a nominal spec in place to apply a scale factor (> 0, finite).

A modifier whose ``absolute`` attribute is true takes a value in physical units instead
(>= 0, finite), for a quantity the reference model does not have (e.g. dry friction).

A modifier that only changes numeric fields of the compiled model (masses, damping, gear,
gravity...) may also implement :class:`NumericModifier`: the same edit written into a
compiled ``MjModel``, so a family can change those parameters without recompiling.
"""

ModelEdit = Callable[[mujoco.MjModel, float], None]
"""Writes a parameter value into a compiled model (bound to one model layout's element ids)."""


@runtime_checkable
class NumericModifier(Protocol):
    """A spec modifier whose edit can also be written into a compiled model.

    ``model_edit(model)`` resolves element ids on ``model`` once and returns the edit for
    every model of that layout. Applied to a model compiled without the modifier, followed
    by ``mujoco.mj_setConst``, it must give the model that compiling the modified spec gives
    (up to rounding). ``model_fields`` names the model fields the edit writes (``opt.x``
    for option fields), so callers can restore them before editing again.
    """

    model_fields: tuple[str, ...]

    def __call__(self, spec: mujoco.MjSpec, value: float) -> None: ...

    def model_edit(self, model: mujoco.MjModel) -> ModelEdit: ...


def _model_id(model: mujoco.MjModel, kind: str, name: str) -> int:
    index = mujoco.mj_name2id(model, getattr(mujoco.mjtObj, f"mjOBJ_{kind.upper()}"), name)
    if index < 0:
        raise ValueError(f"model has no {kind} named {name!r}")
    return int(index)


def _joint_dofs(model: mujoco.MjModel, joint: str) -> slice:
    """The dof rows of ``joint`` in ``model``."""
    jid = _model_id(model, "joint", joint)
    ndof = {0: 6, 1: 3}.get(int(model.jnt_type[jid]), 1)  # free, ball, else slide/hinge
    start = int(model.jnt_dofadr[jid])
    return slice(start, start + ndof)


def _scale_rows(field: str, rows: Any) -> ModelEdit:
    def edit(model: mujoco.MjModel, scale: float) -> None:
        getattr(model, field)[rows] *= scale

    return edit


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

    model_fields: ClassVar[tuple[str, ...]] = ("body_mass", "body_inertia")

    def model_edit(self, model: mujoco.MjModel) -> ModelEdit:
        """Scale the mass and principal inertia of the geom's body (its only geom)."""
        gid = _model_id(model, "geom", self.geom)
        body = int(model.geom_bodyid[gid])
        if int(np.count_nonzero(model.geom_bodyid == body)) != 1:
            raise ValueError(f"geom {self.geom!r} shares its body: its mass is not numeric")

        def edit(m: mujoco.MjModel, scale: float) -> None:
            m.body_mass[body] *= scale
            m.body_inertia[body] *= scale

        return edit


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

    model_fields: ClassVar[tuple[str, ...]] = ("dof_damping", "dof_dampingpoly")

    def model_edit(self, model: mujoco.MjModel) -> ModelEdit:
        """Scale the joint's dof damping and its polynomial terms (the spec's array)."""
        dofs = _joint_dofs(model, self.joint)

        def edit(m: mujoco.MjModel, scale: float) -> None:
            m.dof_damping[dofs] *= scale
            m.dof_dampingpoly[dofs] *= scale

        return edit


@dataclass(frozen=True)
class ScaleActuatorGear:
    """Scale an actuator's gear (force per unit of control)."""

    actuator: str

    def __call__(self, spec: mujoco.MjSpec, scale: float) -> None:
        element = _element(spec, "actuator", self.actuator)
        element.gear = np.asarray(element.gear) * scale

    model_fields: ClassVar[tuple[str, ...]] = ("actuator_gear",)

    def model_edit(self, model: mujoco.MjModel) -> ModelEdit:
        """Scale the actuator's gear row."""
        return _scale_rows("actuator_gear", _model_id(model, "actuator", self.actuator))


@dataclass(frozen=True)
class ScaleJointArmature:
    """Scale a joint's armature (reflected rotor inertia)."""

    joint: str

    def __call__(self, spec: mujoco.MjSpec, scale: float) -> None:
        element = _element(spec, "joint", self.joint)
        element.armature = element.armature * scale

    model_fields: ClassVar[tuple[str, ...]] = ("dof_armature",)

    def model_edit(self, model: mujoco.MjModel) -> ModelEdit:
        """Scale the joint's dof armature."""
        return _scale_rows("dof_armature", _joint_dofs(model, self.joint))


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

    model_fields: ClassVar[tuple[str, ...]] = ("actuator_gear",)

    def model_edit(self, model: mujoco.MjModel) -> ModelEdit:
        """Scale the gear rows of the actuators that transmit to the joint."""
        jid = _model_id(model, "joint", self.joint)
        joint_trn = (mujoco.mjtTrn.mjTRN_JOINT, mujoco.mjtTrn.mjTRN_JOINTINPARENT)
        rows = np.flatnonzero(
            np.isin(model.actuator_trntype, [int(t) for t in joint_trn])
            & (model.actuator_trnid[:, 0] == jid)
        )
        if not rows.size:
            raise ValueError(f"model has no actuator on joint {self.joint!r}")
        return _scale_rows("actuator_gear", rows)


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

    model_fields: ClassVar[tuple[str, ...]] = ("opt.gravity",)

    def model_edit(self, model: mujoco.MjModel) -> ModelEdit:
        """Scale ``opt.gravity``."""
        del model

        def edit(m: mujoco.MjModel, scale: float) -> None:
            m.opt.gravity = m.opt.gravity * scale

        return edit


@dataclass(frozen=True)
class SetJointFrictionLoss:
    """Set the dry friction (``frictionloss``) of joints, in N or N m: an absolute value."""

    joints: tuple[str, ...]
    absolute: ClassVar[bool] = True

    def __call__(self, spec: mujoco.MjSpec, value: float) -> None:
        for joint in self.joints:
            _element(spec, "joint", joint).frictionloss = value

    model_fields: ClassVar[tuple[str, ...]] = ("dof_frictionloss",)

    def model_edit(self, model: mujoco.MjModel) -> ModelEdit:
        """Set the joints' dof friction loss."""
        rows = [_joint_dofs(model, joint) for joint in self.joints]

        def edit(m: mujoco.MjModel, value: float) -> None:
            for dofs in rows:
                m.dof_frictionloss[dofs] = value

        return edit


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

    @property
    def model_fields(self) -> tuple[str, ...]:
        """Fields the parts write (only meaningful if every part is numeric)."""
        names = (f for part in self.parts for f in getattr(part, "model_fields", ()))
        return tuple(dict.fromkeys(names))

    def model_edit(self, model: mujoco.MjModel) -> ModelEdit:
        """Every part's model edit in turn.

        Raises:
            TypeError: If a part is not a :class:`NumericModifier`.
        """
        for part in self.parts:
            if not isinstance(part, NumericModifier):
                raise TypeError(f"{part!r} has no compiled-model edit")
        edits = [part.model_edit(model) for part in self.parts]  # type: ignore[union-attr]

        def edit(m: mujoco.MjModel, value: float) -> None:
            for part_edit in edits:
                part_edit(m, value)

        return edit


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
        check_value(name, modify, value)
        modify(spec, float(value))


def check_value(name: str, modifier: SpecModifier, value: float) -> None:
    """Raise ``ValueError`` unless ``value`` suits ``modifier`` (see :func:`apply_modifiers`)."""
    if getattr(modifier, "absolute", False):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}: value must be finite and >= 0 (got {value})")
    elif not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: scale factor must be finite and > 0 (got {value})")


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
