"""Per-episode MuJoCo models without a compile per theta.

A family's numeric parameters (masses, damping, gear, gravity...) only change numeric fields
of the compiled model, so :class:`ModelSource` compiles once per fidelity and value of the
structural parameters (lengths, terrain), a *base*, and writes the numeric parameters into
model objects of that base in place (:meth:`~generators.families.Family.apply_numeric`).

Envs hold models in *slots* (one per sub-env). A slot drawing a new theta gets a model it
owns alone: the one it already holds when the base is the same (rewritten in place, no
allocation), an idle model of the base, a copy of the base, or, for a geometry seen before
but not yet a base, the freshly compiled base itself. A geometry seen for the first time is
compiled whole (numeric parameters included) and becomes a base only if it comes back.
Thetas that repeat (point distributions, fixed thetas) use :meth:`ModelSource.shared`
instead: one immutable model per theta, in an LRU cache.
"""

from __future__ import annotations

import copy
import operator
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mujoco
import numpy as np

if TYPE_CHECKING:
    from generators.families import Family
    from generators.modifiers import ModelEdit

_SIZE_FIELDS: tuple[str, ...] | None = None  # MjModel size attributes, found on first use
_IDLE_PER_BASE = 8  # idle models kept per base for other slots


def size_signature(model: mujoco.MjModel) -> tuple[int, ...]:
    """All size fields of ``model``: models with equal signatures can share an ``MjData``."""
    global _SIZE_FIELDS
    if _SIZE_FIELDS is None:
        _SIZE_FIELDS = tuple(
            name
            for name in dir(model)
            if name.startswith("n") and isinstance(getattr(model, name), int)
        )
    return tuple(getattr(model, name) for name in _SIZE_FIELDS)


def _field_getter(path: str) -> Any:
    return operator.attrgetter(path)


@dataclass
class _Base:
    """A compiled base: the pristine numeric fields, bound edits, idle models."""

    group: tuple[int, ...]
    template: mujoco.MjModel  # some model of this base (numeric fields may be edited)
    values: dict[str, np.ndarray]
    edits: dict[str, ModelEdit]
    idle: list[mujoco.MjModel] = field(default_factory=list)


class ModelSource:
    """Models of one family by theta and fidelity; see the module docstring.

    Args:
        family: The family.
        slots: Number of slots (sub-envs) that hold private models.
        cache_size: Entries of the shared (per-theta) LRU cache.

    Attributes:
        compiles: Models compiled so far (bases and shared models of non-numeric families).
    """

    def __init__(self, family: Family, slots: int = 1, cache_size: int = 32) -> None:
        self.family = family
        self._params = family.model_params
        self._structural = family.structural_params
        self._numeric = family.numeric_params
        fields_ = {"opt.gravity"} if self._numeric else set()
        self._fields: tuple[str, ...] = ()
        if self._numeric:
            modifiers = getattr(family, "modifiers", {})
            for name in self._numeric:
                fields_.update(getattr(modifiers.get(name), "model_fields", ()))
            self._fields = tuple(sorted(fields_))
        self._getters = {path: _field_getter(path) for path in self._fields}
        self._shared: OrderedDict[tuple[Any, ...], tuple[mujoco.MjModel, tuple[int, ...]]] = (
            OrderedDict()
        )
        self._cache_size = cache_size
        self._bases: OrderedDict[tuple[Any, ...], _Base] = OrderedDict()
        self._base_size = max(cache_size, slots)
        self._seen: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        """Geometries compiled once without a base (a second sighting makes one)."""
        self._seen_size = 4 * self._base_size
        self._slots: list[tuple[mujoco.MjModel, _Base] | None] = [None] * slots
        self._scratch: dict[tuple[int, ...], mujoco.MjData] = {}
        self._edits: dict[tuple[int, ...], dict[str, ModelEdit]] = {}
        self.compiles = 0

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the caches (bound edits are closures; models are rebuilt on demand)."""
        state = self.__dict__.copy()
        state["_shared"], state["_bases"] = OrderedDict(), OrderedDict()
        state["_scratch"], state["_edits"], state["_seen"] = {}, {}, OrderedDict()
        state["_slots"] = [None] * len(self._slots)
        return state

    def shared(
        self, slot: int, theta: Mapping[str, float], fidelity: str
    ) -> tuple[mujoco.MjModel, tuple[int, ...]]:
        """The cached model at ``theta`` (built once, never modified) and its group key.

        The group key is ``(substeps per control step, *size signature)``: models with
        equal keys step together in one rollout call.
        """
        self.release(slot)
        key = (fidelity, *(theta[name] for name in self._params))
        entry = self._shared.get(key)
        if entry is None:
            model, base = self._build(theta, fidelity)
            entry = (model, base.group)
            self._shared[key] = entry
            if len(self._shared) > self._cache_size:
                self._shared.popitem(last=False)
        else:
            self._shared.move_to_end(key)
        return entry

    def private(
        self, slot: int, theta: Mapping[str, float], fidelity: str
    ) -> tuple[mujoco.MjModel, tuple[int, ...]]:
        """A model at ``theta`` owned by ``slot`` until its next request, and its group key.

        It may be the object the slot held before, rewritten in place.
        """
        if not self._numeric:  # nothing to write in place: every theta is a compile
            return self.shared(slot, theta, fidelity)
        key = (fidelity, *(theta[name] for name in self._structural))
        held = self._slots[slot]
        base = self._bases.get(key)
        if base is not None:
            self._bases.move_to_end(key)
            if held is not None and held[1] is base:
                model = held[0]
            else:
                self.release(slot)
                model = base.idle.pop() if base.idle else copy.copy(base.template)
            self._restore(model, base)
            self._apply(model, base, theta)
        elif key not in self._seen:
            # A geometry seen once (full-space randomization draws a new one per episode)
            # is compiled with its numeric parameters, like `build_model`: setting up a base
            # costs ~25% more than that compile and only pays when the geometry repeats.
            self.release(slot)
            self._seen[key] = None
            if len(self._seen) > self._seen_size:
                self._seen.popitem(last=False)
            self.compiles += 1
            model = self.family.build_model(theta, fidelity)
            return model, (self.family.task.n_substeps(model), *size_signature(model))
        else:
            self.release(slot)
            model, base = self._build(theta, fidelity, key)
        self._slots[slot] = (model, base)
        return model, base.group

    def release(self, slot: int) -> None:
        """Give the slot's private model (if any) to its base's idle list."""
        held = self._slots[slot]
        if held is None:
            return
        self._slots[slot] = None
        model, base = held
        if len(base.idle) < _IDLE_PER_BASE:
            base.idle.append(model)

    def _build(
        self, theta: Mapping[str, float], fidelity: str, key: tuple[Any, ...] | None = None
    ) -> tuple[mujoco.MjModel, _Base]:
        """A new model at ``theta`` (compiling and registering its base if new)."""
        if key is None:
            key = (fidelity, *(theta[name] for name in self._structural))
        base = self._bases.get(key)
        if base is not None:  # a copy is cheaper than a compile
            model = copy.copy(base.template)
            self._restore(model, base)
        else:
            self.compiles += 1
            model = self.family.build_base_model(theta, fidelity)
            group = (self.family.task.n_substeps(model), *size_signature(model))
            values = {path: np.array(get(model)) for path, get in self._getters.items()}
            edits = self._edits.get(group)  # element ids are those of the layout
            if edits is None:
                edits = self._edits[group] = (
                    self.family.numeric_edits(model) if self._numeric else {}
                )
            base = _Base(group, model, values, edits)
            self._bases[key] = base
            if len(self._bases) > self._base_size:
                self._bases.popitem(last=False)
        self._apply(model, base, theta)
        return model, base

    def _restore(self, model: mujoco.MjModel, base: _Base) -> None:
        """Put the base's values back into the fields the numeric edits write."""
        for path, value in base.values.items():
            if path.startswith("opt."):
                setattr(model.opt, path[4:], value)
            else:
                self._getters[path](model)[...] = value

    def _apply(self, model: mujoco.MjModel, base: _Base, theta: Mapping[str, float]) -> None:
        if not self._numeric:
            return
        data = self._scratch.get(base.group)
        if data is None:
            data = self._scratch[base.group] = mujoco.MjData(model)
        self.family.apply_numeric(model, theta, base.edits, data)
