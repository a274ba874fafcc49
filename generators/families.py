"""Task families: procedural MuJoCo model builders, registered by the names configs use."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import gymnasium
import mujoco

from generators.modifiers import (
    ModelEdit,
    SpecModifier,
    apply_modifiers,
    check_value,
)
from generators.space import ParamSpace
from generators.task import CHANNEL_PARAMS, DEADZONE, LATENCY, ChannelEffects, Task

if TYPE_CHECKING:
    from generators.distribution import TaskDistribution
    from generators.env import TaskEnv

FIDELITIES = ("surrogate", "coarse", "fine")
"""Simulation fidelities, cheapest first. ``surrogate`` is the neural model in ``surrogates/``."""


class Family(ABC):
    """A parameterized family of MuJoCo environments sharing one observation/action interface.

    Subclasses set the class attributes and implement :meth:`build_model`; envs, the task
    half and validation come from here.

    Attributes:
        name: The name configs use (``task: inverted_pendulum``).
        space: The family's default parameter space.
        fidelities: Fidelities :meth:`build_model` can simulate, cheapest first.
        task: Observation, reward, termination and initial state, shared with the family's
            reality proxies.
        max_return: Best achievable episode return, the reference for regret.
        max_episode_steps: Steps after which an episode is truncated.
        absolute_params: Model parameters given in physical units rather than as scale
            factors, for quantities the reference model lacks (nominal 0, e.g. a dry
            friction); they need ``low >= 0``.
        numeric_params: Model parameters that only change numeric fields of the compiled
            model (masses, damping, gear, gravity...): :meth:`apply_numeric` writes them
            into a compiled model, so envs compile once per value of the other
            (:attr:`structural_params`: lengths, terrain) and edit copies in place.
    """

    name: str
    space: ParamSpace
    fidelities: tuple[str, ...]
    task: Task
    max_return: float
    max_episode_steps: int
    absolute_params: tuple[str, ...] = ()
    numeric_params: tuple[str, ...] = ()

    @property
    def model_params(self) -> tuple[str, ...]:
        """Parameters that change the compiled model (the rest act on the env's channels)."""
        return tuple(n for n in self.space.names if n not in CHANNEL_PARAMS)

    @property
    def structural_params(self) -> tuple[str, ...]:
        """Model parameters that need a compile (all but :attr:`numeric_params`)."""
        return tuple(n for n in self.model_params if n not in self.numeric_params)

    def build_base_model(
        self, theta: Mapping[str, float] | None = None, fidelity: str = "fine"
    ) -> mujoco.MjModel:
        """Compile the model at ``theta``'s structural parameters, numeric ones unapplied.

        :meth:`apply_numeric` on (a copy of) it then gives :meth:`build_model`'s model.
        Families without numeric parameters compile the full model.
        """
        return self.build_model(theta, fidelity)

    def numeric_edits(self, model: mujoco.MjModel) -> dict[str, ModelEdit]:
        """The in-place edit of each numeric parameter, bound to ``model``'s layout.

        Raises:
            TypeError: If a numeric parameter has no compiled-model edit.
        """
        if self.numeric_params:
            raise TypeError(f"family {self.name!r} declares numeric params but no model edits")
        return {}

    def apply_numeric(
        self,
        model: mujoco.MjModel,
        theta: Mapping[str, float],
        edits: Mapping[str, ModelEdit] | None = None,
        data: mujoco.MjData | None = None,
    ) -> None:
        """Write ``theta``'s numeric parameters into ``model`` (a base model) in place.

        Then ``mujoco.mj_setConst`` recomputes the derived constants (subtree masses,
        inverse weights, ``actuator_acc0``...) and the mass statistics (``stat.meanmass``,
        ``stat.meaninertia``) are updated, as compiling does.

        Args:
            model: A model from :meth:`build_base_model` (or a copy) at the same structural
                parameters; its numeric fields must still be the base's.
            theta: Values by name; missing numeric names take their nominal value.
            edits: :meth:`numeric_edits` of a model of the same layout (found if omitted).
            data: Scratch ``MjData`` of the same sizes for ``mj_setConst`` (made if omitted).

        Raises:
            ValueError: For an invalid value (as :meth:`build_model`).
        """
        if not self.numeric_params:
            return
        edits = self.numeric_edits(model) if edits is None else edits
        for name in self.numeric_params:
            value = float(theta.get(name, self.space[name].nominal))
            edits[name](model, value)
        mujoco.mj_setConst(model, mujoco.MjData(model) if data is None else data)
        # The compiler's mass and inertia statistics (mj_setConst leaves them): the solver
        # scales its tolerance by meaninertia. Sequential sums, as the compiler adds them.
        if model.nbody > 1:
            model.stat.meanmass = sum(model.body_mass[1:].tolist()) / (model.nbody - 1)
        if model.nv:
            model.stat.meaninertia = sum(model.dof_M0.tolist()) / model.nv

    @abstractmethod
    def build_model(
        self, theta: Mapping[str, float] | None = None, fidelity: str = "fine"
    ) -> mujoco.MjModel:
        """Compile the family's model at ``theta`` and ``fidelity``.

        Args:
            theta: Parameter values by name; missing names take their nominal value.
                Channel parameters (latency, observation noise) are validated but do not
                change the model; the env applies them.
            fidelity: One of :attr:`fidelities`.

        Raises:
            ValueError: For an unknown parameter or fidelity, or an invalid value.
        """

    def check_space(self, space: ParamSpace) -> None:
        """Raise ``ValueError`` unless every theta of ``space`` is valid for this family.

        Names must be the family's; scale factors need ``low > 0``; latency must be an
        integer parameter, channel and absolute parameters need ``low >= 0`` and the
        deadzone ``high < 1``.
        """
        for param in space:
            if param.name not in self.space:
                raise ValueError(
                    f"{param.name}: not a parameter of family {self.name!r} "
                    f"(known: {', '.join(self.space.names)})"
                )
            if param.name in CHANNEL_PARAMS:
                if param.low < 0:
                    raise ValueError(f"{param.name}.low: must be >= 0 (got {param.low})")
                if param.name == LATENCY and not param.integer:
                    raise ValueError(f"{param.name}: must be an integer parameter")
                if param.name == DEADZONE and param.high >= 1:
                    raise ValueError(f"{param.name}.high: must be < 1 (got {param.high})")
            elif param.name in self.absolute_params:
                if param.low < 0:
                    raise ValueError(f"{param.name}.low: must be >= 0 (got {param.low})")
            elif param.low <= 0:
                raise ValueError(f"{param.name}.low: a scale factor must be > 0 (got {param.low})")

    def check_fidelity(self, fidelity: str) -> None:
        """Raise ``ValueError`` unless this family can simulate ``fidelity``."""
        if fidelity not in self.fidelities:
            hint = " (served by surrogates/)" if fidelity == "surrogate" else ""
            raise ValueError(
                f"family {self.name!r} cannot simulate fidelity {fidelity!r}{hint} "
                f"(known: {', '.join(self.fidelities)})"
            )

    def make_env(
        self,
        theta: Mapping[str, float] | None = None,
        fidelity: str | None = None,
        *,
        space: ParamSpace | None = None,
        distribution: TaskDistribution | None = None,
    ) -> TaskEnv:
        """Return a :class:`~generators.env.TaskEnv` of this family.

        Args:
            theta: Fixed theta for every episode (missing names -> nominal); ``None`` and no
                distribution means the nominal model.
            fidelity: Fidelity when no distribution is given (default ``"fine"``); a
                distribution carries its own fidelity.
            space: Parameter space the distribution lives in (default: :attr:`space`).
            distribution: Task distribution to draw each episode's theta from.
        """
        from generators.env import TaskEnv  # env imports this module

        return TaskEnv(self, theta, fidelity, space=space, distribution=distribution)

    def make_vector_env(
        self,
        n: int,
        fidelity: str | None = None,
        *,
        space: ParamSpace | None = None,
        distribution: TaskDistribution | None = None,
    ) -> gymnasium.vector.VectorEnv:
        """Return ``n`` sub-envs stepped together by one batched MuJoCo call per step.

        Each sub-env draws its own theta (so its own physics) at its own reset; see
        :class:`~generators.vector.BatchedVectorEnv`. Change every sub-env's distribution
        with ``venv.set_task_distribution(dist)`` (or ``venv.call("set_task_distribution",
        dist)`` as for a ``SyncVectorEnv``).
        """
        from generators.vector import BatchedVectorEnv  # vector imports this module

        return BatchedVectorEnv(self, n, fidelity, space=space, distribution=distribution)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


@dataclass(frozen=True)
class Fidelity:
    """Integrator settings of one fidelity (a family's fidelities share its control step)."""

    integrator: mujoco.mjtIntegrator
    timestep: float
    iterations: int
    ls_iterations: int

    def apply(self, spec: mujoco.MjSpec) -> None:
        """Write the settings into ``spec.option``."""
        spec.option.integrator = self.integrator
        spec.option.timestep = self.timestep
        spec.option.iterations = self.iterations
        spec.option.ls_iterations = self.ls_iterations


class SpecFamily(Family):
    """A family whose model is a procedural ``MjSpec`` edited by a table of modifiers.

    Subclasses give the nominal spec (:meth:`build_spec`), the integrator settings of each
    fidelity and the modifier table; :meth:`edit_spec` is the hook for edits the table does
    not express (e.g. generated terrain).

    Attributes:
        modifiers: Spec modifier per model parameter (see :mod:`generators.modifiers`).
        fidelity_settings: The integrator settings of each fidelity.
    """

    modifiers: Mapping[str, SpecModifier]
    fidelity_settings: Mapping[str, Fidelity]

    @abstractmethod
    def build_spec(self) -> mujoco.MjSpec:
        """The nominal spec: reference parameters, fine fidelity."""

    def edit_spec(self, spec: mujoco.MjSpec, theta: Mapping[str, float]) -> None:
        """Edit ``spec`` for ``theta`` beyond the modifier table; nothing by default."""

    def build_model(
        self, theta: Mapping[str, float] | None = None, fidelity: str = "fine"
    ) -> mujoco.MjModel:
        """Compile the model at ``theta`` (missing names -> nominal) and ``fidelity``."""
        return self._compile(theta, fidelity, skip=())

    def build_base_model(
        self, theta: Mapping[str, float] | None = None, fidelity: str = "fine"
    ) -> mujoco.MjModel:
        """Compile with ``theta``'s structural parameters; numeric modifiers are skipped.

        Numeric values are still validated, so an invalid theta fails here as in
        :meth:`build_model`.
        """
        return self._compile(theta, fidelity, skip=self.numeric_params)

    def numeric_edits(self, model: mujoco.MjModel) -> dict[str, ModelEdit]:
        """Each numeric parameter's modifier, bound to ``model``'s layout.

        Raises:
            TypeError: If a numeric parameter's modifier has no compiled-model edit.
        """
        edits = {}
        for name in self.numeric_params:
            modifier = self.modifiers.get(name)
            if not callable(getattr(modifier, "model_edit", None)):
                raise TypeError(
                    f"family {self.name!r}: numeric parameter {name!r} has no compiled-model "
                    "edit (its modifier must implement model_edit)"
                )
            edits[name] = modifier.model_edit(model)  # type: ignore[union-attr]
        return edits

    def apply_numeric(
        self,
        model: mujoco.MjModel,
        theta: Mapping[str, float],
        edits: Mapping[str, ModelEdit] | None = None,
        data: mujoco.MjData | None = None,
    ) -> None:
        """Validate the numeric values, then write them (see :meth:`Family.apply_numeric`)."""
        for name in self.numeric_params:
            if name in theta:
                check_value(name, self.modifiers[name], theta[name])
        super().apply_numeric(model, theta, edits, data)

    def _compile(
        self, theta: Mapping[str, float] | None, fidelity: str, skip: tuple[str, ...]
    ) -> mujoco.MjModel:
        self.check_fidelity(fidelity)
        theta = self.space.complete(theta)
        ChannelEffects.from_theta(theta)  # validate the channel entries too
        spec = self.build_spec()
        self.fidelity_settings[fidelity].apply(spec)
        for name in skip:
            check_value(name, self.modifiers[name], theta[name])
        apply_modifiers(spec, self.modifiers, {k: v for k, v in theta.items() if k not in skip})
        self.edit_spec(spec, theta)
        return spec.compile()


FAMILIES: dict[str, Family] = {}
"""Registered families by name."""

_F = TypeVar("_F")


def register_family(name: str) -> Callable[[_F], _F]:
    """Register a family under ``name``; decorates a ``Family`` subclass, factory or instance.

    A class or factory is called once, with no arguments, at registration. The decorated
    object is returned unchanged.

    Raises:
        ValueError: If ``name`` is taken or the family's own ``name`` differs.
        TypeError: If the object does not produce a :class:`Family`.
    """

    def decorator(obj: _F) -> _F:
        family: Any = obj if isinstance(obj, Family) else obj()  # type: ignore[operator]
        if not isinstance(family, Family):
            raise TypeError(f"register_family({name!r}) needs a Family, got {type(family)}")
        if getattr(family, "name", name) != name:
            raise ValueError(f"family registered as {name!r} is named {family.name!r}")
        if name in FAMILIES:
            raise ValueError(f"task family {name!r} is already registered")
        family.name = name
        FAMILIES[name] = family
        return obj

    return decorator


def get_family(name: str) -> Family:
    """Return the registered family ``name``.

    Raises:
        ValueError: If no family has that name.
    """
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown task family {name!r} (known: {', '.join(sorted(FAMILIES))})"
        ) from None
