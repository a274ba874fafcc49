"""Reality proxies: independently authored models standing in for the real system.

A proxy loads a model file that this project does not own (Gymnasium's XML, from the
installed package), applies hidden parameter changes with the same names and semantics as
the family it stands in for, and adds unmodeled effects (actuator deadzone). Its env shares
the family's task half, so policies move between the two unchanged.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import mujoco

from generators import inverted_pendulum
from generators.env import EpisodeSetup, MujocoTaskEnv
from generators.families import get_family
from generators.modifiers import SpecModifier, apply_modifiers, pin_geom_masses
from generators.task import CHANNEL_PARAMS, ChannelEffects, Task


class RealityProxy:
    """A held-out system for one family: a model file plus parameter edits.

    Args:
        name: Registry name (``reality.env`` in configs).
        family: Name of the task family this proxy stands in for.
        model_file: Returns the path of the model XML (resolved lazily so that importing
            this module does not import the file's owner).
        task: The family's task half (observation, reward, termination, initial state).
        modifiers: ``{param: modifier}`` spec edits for the model parameters; channel
            parameters (``latency_steps``, ``obs_noise_std``) are handled by the env.
        pinned_mass_geoms: Geoms whose density-derived mass is made explicit before the
            modifiers run, so that mass and geometry can be scaled independently.
        spec_edit: Optional whole-spec edit run after the modifiers with all model params,
            for parameters no per-element modifier expresses (e.g. procedural terrain).
        spec_edit_params: Parameter names ``spec_edit`` reads (accepted by
            :meth:`check_params`).
    """

    def __init__(
        self,
        name: str,
        family: str,
        *,
        model_file: Callable[[], Path],
        task: Task,
        modifiers: Mapping[str, SpecModifier],
        pinned_mass_geoms: tuple[str, ...] = (),
        spec_edit: Callable[[mujoco.MjSpec, Mapping[str, float]], None] | None = None,
        spec_edit_params: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.family = family
        self.task = task
        self._model_file = model_file
        self._modifiers = dict(modifiers)
        self._pinned_mass_geoms = pinned_mass_geoms
        self._spec_edit = spec_edit
        self._spec_edit_params = spec_edit_params

    @property
    def xml_path(self) -> Path:
        """Path of the model file the proxy loads."""
        return self._model_file()

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names accepted by :meth:`make_env` and :meth:`build_model`."""
        return (*self._modifiers, *self._spec_edit_params, *CHANNEL_PARAMS)

    def check_params(self, params: Mapping[str, float] | None) -> dict[str, float]:
        """Return ``params`` as floats; raise ``ValueError`` naming an unknown entry."""
        params = {} if params is None else {k: float(v) for k, v in params.items()}
        unknown = [n for n in params if n not in self.param_names]
        if unknown:
            raise ValueError(
                f"reality {self.name!r}: unknown parameter {unknown[0]!r} "
                f"(known: {', '.join(self.param_names)})"
            )
        return params

    def build_model(self, params: Mapping[str, float] | None = None) -> mujoco.MjModel:
        """Load the model file, apply the model entries of ``params`` and compile.

        Args:
            params: Scale factors relative to the file's own values, by the family's names;
                missing names leave the file's value.

        Raises:
            ValueError: For an unknown name or an invalid value.
        """
        params = self.check_params(params)
        ChannelEffects.from_theta(params)  # validate channel entries early
        spec = mujoco.MjSpec.from_file(str(self.xml_path))
        pin_geom_masses(spec, self._pinned_mass_geoms)
        apply_modifiers(spec, self._modifiers, params)
        if self._spec_edit is not None:
            self._spec_edit(spec, params)
        return spec.compile()

    def make_env(
        self, params: Mapping[str, float] | None = None, *, deadzone: float = 0.0
    ) -> RealityEnv:
        """Return an env of the proxy with hidden ``params`` and an actuator ``deadzone``.

        Args:
            params: As in :meth:`build_model`, plus ``latency_steps`` and ``obs_noise_std``.
            deadzone: Fraction of the control range below which the actuator does nothing.
        """
        return RealityEnv(self, params, deadzone=deadzone)

    def __repr__(self) -> str:
        return f"RealityProxy(name={self.name!r}, family={self.family!r})"


class RealityEnv(MujocoTaskEnv):
    """A reality proxy's env: fixed model and effects, the family's task half.

    ``info`` holds ``fidelity`` (``"real"``) and ``unstable``; the hidden parameters are not
    reported. RLlib constructs env classes as ``cls(env_config)``, so ``proxy`` may also be
    a mapping with keys ``reality`` (name), ``params`` and ``deadzone``.

    Args:
        proxy: The proxy, its registered name, or an env-config mapping.
        params: Hidden parameter values (see :meth:`RealityProxy.make_env`).
        deadzone: Actuator deadzone as a fraction of the control range.
    """

    def __init__(
        self,
        proxy: RealityProxy | str | Mapping[str, Any],
        params: Mapping[str, float] | None = None,
        *,
        deadzone: float = 0.0,
    ) -> None:
        if isinstance(proxy, Mapping):
            if "reality" not in proxy:
                raise ValueError("env config needs a 'reality' key")
            params, deadzone = proxy.get("params"), float(proxy.get("deadzone", 0.0))
            proxy = str(proxy["reality"])
        self.proxy = get_reality(proxy) if isinstance(proxy, str) else proxy
        super().__init__(self.proxy.task)
        params = self.proxy.check_params(params)
        self._params = params
        self._proxy_effects = ChannelEffects.from_theta(params, deadzone=deadzone)
        self._proxy_model = self.proxy.build_model(params)
        self.task.n_substeps(self._proxy_model)  # fail now if the timestep does not fit

    def _setup_episode(self, options: Mapping[str, Any] | None) -> EpisodeSetup:
        return EpisodeSetup(self._proxy_model, self._proxy_effects, {"fidelity": "real"})


REALITIES: dict[str, RealityProxy] = {}
"""Registered reality proxies by name."""


def register_reality(proxy: RealityProxy) -> RealityProxy:
    """Add ``proxy`` to :data:`REALITIES` under its name (which must be new)."""
    if proxy.name in REALITIES:
        raise ValueError(f"reality {proxy.name!r} is already registered")
    get_family(proxy.family)  # the family must exist
    REALITIES[proxy.name] = proxy
    return proxy


def get_reality(name: str) -> RealityProxy:
    """Return the registered reality proxy ``name``.

    Raises:
        ValueError: If no proxy has that name.
    """
    try:
        return REALITIES[name]
    except KeyError:
        raise ValueError(
            f"unknown reality {name!r} (known: {', '.join(sorted(REALITIES))})"
        ) from None


def gymnasium_asset(filename: str) -> Path:
    """Path of a model file shipped in the installed ``gymnasium.envs.mujoco`` package."""
    spec = importlib.util.find_spec("gymnasium.envs.mujoco")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("gymnasium.envs.mujoco is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / filename
    if not path.is_file():
        raise FileNotFoundError(f"gymnasium ships no {path}")
    return path


def dm_control_asset(filename: str) -> Path:
    """Path of a model file shipped in the installed ``dm_control.suite`` package.

    Only ``dm_control`` itself is located (not imported beyond its top level), because the
    suite's Python modules need a matching MuJoCo runtime while its XML files do not.
    """
    spec = importlib.util.find_spec("dm_control")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("dm_control is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "suite" / filename
    if not path.is_file():
        raise FileNotFoundError(f"dm_control ships no {path}")
    return path


register_reality(
    RealityProxy(
        name="gymnasium/InvertedPendulum-v5",
        family="inverted_pendulum",
        model_file=functools.partial(gymnasium_asset, "inverted_pendulum.xml"),
        task=inverted_pendulum.TASK,
        modifiers=inverted_pendulum.MODIFIERS,
        pinned_mass_geoms=inverted_pendulum.MASS_GEOMS,
    )
)
