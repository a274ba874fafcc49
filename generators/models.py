"""Per-episode MuJoCo models without a compile per theta.

A family's numeric parameters (masses, damping, gear, gravity...) only change numeric fields
of the compiled model, so :class:`ModelSource` compiles once per fidelity and value of the
structural parameters (lengths, terrain), a *base*, and writes the numeric parameters into
a model in place (:meth:`~generators.families.Family.apply_numeric`).

Bases of one layout (equal sizes and substeps, a *group*) differ from each other only in
some numeric arrays (geom sizes and positions, body inertias, ``stat``...). A group keeps
its first base compiled as a pristine *reference*; every later base stores only the fields
in which it differs from the reference. So a slot (one per sub-env) owns one model per
group and turns it into any base of the group by writing those fields: the model equals the
compiled base field for field, without a compile or an allocation. Structural parameters
with :attr:`~generators.space.Param.levels` make bases repeat under random draws.

The bases of a family are shared by every source (env) of the process.

A geometry seen for the first time is compiled (its base, then the numeric parameters
written in: every model is made so, which keeps a theta's model the same bit for bit
whatever the process built before) and becomes a base only if it comes back, so continuous
structural draws cost one compile each.
Thetas that repeat (point distributions, fixed thetas) use :meth:`ModelSource.shared`
instead: one immutable model per theta, in an LRU cache.
"""

from __future__ import annotations

import copy
import operator
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mujoco
import numpy as np

if TYPE_CHECKING:
    from generators.families import Family
    from generators.modifiers import ModelEdit

_SIZE_FIELDS: tuple[str, ...] | None = None  # MjModel size attributes, found on first use
_BASES = 4096  # bases kept per family and process (each stores only its differing fields)


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


_FIELD_PATHS: tuple[tuple[str, str, str], ...] | None = None  # (owner, name, path), found once


def numeric_fields(model: mujoco.MjModel) -> dict[str, np.ndarray]:
    """Copies of every numeric array of ``model`` and every numeric field of ``opt`` and
    ``stat``, by path (``"geom_size"``, ``"opt.timestep"``); the model's sizes excluded."""
    global _FIELD_PATHS
    if _FIELD_PATHS is None:
        paths = []
        for owner, obj in (("", model), ("opt", model.opt), ("stat", model.stat)):
            for name in dir(obj):
                if name.startswith("_"):
                    continue
                value = getattr(obj, name)
                if isinstance(value, bool) or not isinstance(value, np.ndarray | float | int):
                    continue
                if not owner and not isinstance(value, np.ndarray):
                    continue  # a size: equal within a group, and read-only
                if np.asarray(value).dtype.kind in "fiu":
                    paths.append((owner, name, f"{owner}.{name}" if owner else name))
        _FIELD_PATHS = tuple(paths)
    structs = {"": model, "opt": model.opt, "stat": model.stat}
    return {path: np.array(getattr(structs[owner], name)) for owner, name, path in _FIELD_PATHS}


def _writer(path: str) -> Callable[[mujoco.MjModel, np.ndarray], None]:
    """A function writing a value (as :func:`numeric_fields` reads it) to ``path``."""
    if "." in path:
        owner, name = path.split(".")

        def write_struct(model: mujoco.MjModel, value: np.ndarray) -> None:
            obj = getattr(model, owner)
            if value.ndim:
                getattr(obj, name)[...] = value
            else:
                setattr(obj, name, value.item())

        return write_struct
    get = operator.attrgetter(path)

    def write_array(model: mujoco.MjModel, value: np.ndarray) -> None:
        get(model)[...] = value

    return write_array


@dataclass
class _Group:
    """Bases of one layout: the pristine reference and the fields that vary among them."""

    reference: mujoco.MjModel  # the group's first compiled base; never handed out
    fields: dict[str, np.ndarray]  # the reference's values, by path
    varying: list[str] = field(default_factory=list)  # paths some base differs in
    paths: tuple[str, ...] = ()  # what turning a model into a base writes: varying + numeric
    writers: tuple[Callable[[mujoco.MjModel, np.ndarray], None], ...] = ()
    numeric: tuple[int, ...] = ()  # positions of the numeric edits' fields in `paths`
    version: int = 0  # bumped when `paths` grows


@dataclass
class _Store:
    """A process's compiled bases of one family, shared by all its sources (envs)."""

    groups: dict[tuple[int, ...], _Group] = field(default_factory=dict)
    bases: OrderedDict[tuple[Any, ...], _Base] = field(default_factory=OrderedDict)
    seen: OrderedDict[tuple[Any, ...], None] = field(default_factory=OrderedDict)
    """Geometries compiled once without a base (a second sighting makes one)."""
    layouts: dict[tuple[int, ...], tuple[dict[str, ModelEdit], mujoco.MjData]] = field(
        default_factory=dict
    )
    """Per group key: the numeric edits bound to the layout and a scratch for mj_setConst."""


_STORES: dict[int, tuple[Family, _Store]] = {}


def _store(family: Family) -> _Store:
    entry = _STORES.get(id(family))
    if entry is None or entry[0] is not family:
        entry = _STORES[id(family)] = (family, _Store())
    return entry[1]


def clear_bases() -> None:
    """Forget every family's compiled bases in this process (the next draws compile)."""
    _STORES.clear()


@dataclass
class _Base:
    """A compiled base: its group and the values where it differs from the reference."""

    group: tuple[int, ...]
    values: dict[str, np.ndarray]
    row: list[np.ndarray] = field(default_factory=list)  # its values at the group's paths
    version: int = -1  # the group version `row` follows


class ModelSource:
    """Models of one family by theta and fidelity; see the module docstring.

    Args:
        family: The family.
        slots: Number of slots (sub-envs) that hold private models.
        cache_size: Entries of the shared (per-theta) LRU cache.

    Attributes:
        compiles: Models compiled so far (bases, first sightings, shared models).
    """

    def __init__(self, family: Family, slots: int = 1, cache_size: int = 32) -> None:
        self.family = family
        self._params = family.model_params
        self._structural = family.structural_params
        self._numeric = family.numeric_params
        fields_ = {"opt.gravity"} if self._numeric else set()
        if self._numeric:
            modifiers = getattr(family, "modifiers", {})
            for name in self._numeric:
                fields_.update(getattr(modifiers.get(name), "model_fields", ()))
        self._numeric_fields: tuple[str, ...] = tuple(sorted(fields_))
        self._shared: OrderedDict[tuple[Any, ...], tuple[mujoco.MjModel, tuple[int, ...]]] = (
            OrderedDict()
        )
        self._cache_size = cache_size
        self._store = _store(family)
        self._groups, self._bases, self._seen = (
            self._store.groups,
            self._store.bases,
            self._store.seen,
        )
        self._slots: list[dict[tuple[int, ...], list[Any]]] = [{} for _ in range(slots)]
        """Per slot and group key: ``[model, the base it was last made]``."""
        self.compiles = 0

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the caches (bound edits are closures; models are rebuilt on demand)."""
        state = self.__dict__.copy()
        for name in ("_store", "_groups", "_bases", "_seen"):
            del state[name]
        state["_shared"] = OrderedDict()
        state["_slots"] = [{} for _ in self._slots]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Join the unpickling process's store of the family's bases."""
        self.__dict__.update(state)
        self._store = _store(self.family)
        self._groups, self._bases, self._seen = (
            self._store.groups,
            self._store.bases,
            self._store.seen,
        )

    def shared(
        self, slot: int, theta: Mapping[str, float], fidelity: str
    ) -> tuple[mujoco.MjModel, tuple[int, ...]]:
        """The cached model at ``theta`` (built once, never modified) and its group key.

        The group key is ``(substeps per control step, *size signature)``: models with
        equal keys step together in one batch call.
        """
        key = (fidelity, *(theta[name] for name in self._params))
        entry = self._shared.get(key)
        if entry is None:
            base = self._bases.get(self._base_key(theta, fidelity)) if self._numeric else None
            if base is not None:  # a copy is cheaper than a compile
                model = copy.copy(self._groups[base.group].reference)
                self._set(model, base, theta)
                entry = (model, base.group)
            else:
                entry = self._compile(theta, fidelity)
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

        It is the slot's model of the group, rewritten in place, except for a geometry seen
        for the first time (compiled, not kept as a base).
        """
        if not self._numeric:  # nothing to write in place: every theta is a compile
            return self.shared(slot, theta, fidelity)
        key = self._base_key(theta, fidelity)
        base = self._bases.get(key)
        if base is not None:
            self._bases.move_to_end(key)
        elif key not in self._seen:
            # A geometry seen once (continuous structural draws make one per episode) is
            # compiled and used as it is: registering a base costs a field comparison on
            # top, which only pays when the geometry repeats.
            self._seen[key] = None
            if len(self._seen) > 4 * _BASES:
                self._seen.popitem(last=False)
            return self._compile(theta, fidelity)
        else:
            base = self._new_base(theta, fidelity, key)
        held = self._slots[slot].get(base.group)
        if held is None:
            held = self._slots[slot][base.group] = [
                copy.copy(self._groups[base.group].reference),
                None,
            ]
        self._set(held[0], base, theta, same=held[1] is base)
        held[1] = base
        return held[0], base.group

    def _base_key(self, theta: Mapping[str, float], fidelity: str) -> tuple[Any, ...]:
        return (fidelity, *(theta[name] for name in self._structural))

    def _group_key(self, model: mujoco.MjModel) -> tuple[int, ...]:
        return (self.family.task.n_substeps(model), *size_signature(model))

    def _compile(
        self, theta: Mapping[str, float], fidelity: str
    ) -> tuple[mujoco.MjModel, tuple[int, ...]]:
        """A new model at ``theta`` and its group key: its base compiled, the numeric
        parameters written in.

        As every model of the source is made so (never by compiling the numeric parameters),
        a theta's model is the same bit for bit whatever the process built before.
        """
        self.compiles += 1
        if not self._numeric:
            model = self.family.build_model(theta, fidelity)
            return model, self._group_key(model)
        model = self.family.build_base_model(theta, fidelity)
        gkey = self._group_key(model)
        self._apply(model, gkey, theta)
        return model, gkey

    def _apply(
        self, model: mujoco.MjModel, gkey: tuple[int, ...], theta: Mapping[str, float]
    ) -> None:
        """Write ``theta``'s numeric parameters into ``model`` (at its base's values)."""
        layout = self._store.layouts.get(gkey)
        if layout is None:
            layout = self._store.layouts[gkey] = (
                self.family.numeric_edits(model),
                mujoco.MjData(model),
            )
        self.family.apply_numeric(model, theta, *layout)

    def _new_base(self, theta: Mapping[str, float], fidelity: str, key: tuple[Any, ...]) -> _Base:
        """Compile the base at ``theta``'s structural parameters and register it."""
        self.compiles += 1
        model = self.family.build_base_model(theta, fidelity)
        gkey = self._group_key(model)
        group = self._groups.get(gkey)
        values: dict[str, np.ndarray] = {}
        if group is None:
            group = self._groups[gkey] = _Group(reference=model, fields=numeric_fields(model))
            self._plan(group)
        else:
            grown = False
            for path, value in numeric_fields(model).items():
                ref = group.fields[path]
                if value.shape != ref.shape or value.tobytes() != ref.tobytes():
                    values[path] = value
                    if path not in group.varying:
                        group.varying.append(path)
                        grown = True
            if grown:
                self._plan(group)
        base = self._bases[key] = _Base(gkey, values)
        if len(self._bases) > _BASES:
            self._bases.popitem(last=False)
        return base

    def _plan(self, group: _Group) -> None:
        """(Re)build what making a model of ``group`` a base writes, in order."""
        group.paths = tuple(dict.fromkeys((*group.varying, *self._numeric_fields)))
        group.writers = tuple(_writer(path) for path in group.paths)
        group.numeric = tuple(group.paths.index(path) for path in self._numeric_fields)
        group.version += 1

    def _set(
        self, model: mujoco.MjModel, base: _Base, theta: Mapping[str, float], same: bool = False
    ) -> None:
        """Make ``model`` (of the base's group) the base, then write the numeric params.

        ``same``: the model was last made this base, so only the numeric fields need their
        base values back.
        """
        group = self._groups[base.group]
        if base.version != group.version:
            base.row = [base.values.get(path, group.fields[path]) for path in group.paths]
            base.version = group.version
        if same:
            for i in group.numeric:
                group.writers[i](model, base.row[i])
        else:
            for write, value in zip(group.writers, base.row, strict=True):
                write(model, value)
        self._apply(model, base.group, theta)
