"""Generators: parameter spaces, task distributions, MuJoCo task families, reality proxies.

Importing the package registers the built-in families (``inverted_pendulum``,
``cartpole_swingup``, ``reacher``, ``hopper``) and their reality proxies.
"""

from generators import cartpole_swingup as _cartpole_swingup  # noqa: F401  (registers)
from generators import hopper as _hopper  # noqa: F401  (registers)
from generators import inverted_pendulum as _inverted_pendulum  # noqa: F401  (registers)
from generators import reacher as _reacher  # noqa: F401  (registers)
from generators._mujoco_setup import route_mujoco_warnings  # first: headless GL, log warnings
from generators.distribution import TaskDistribution
from generators.env import MujocoTaskEnv, TaskEnv
from generators.families import (
    FAMILIES,
    FIDELITIES,
    Family,
    SpecFamily,
    get_family,
    register_family,
)
from generators.models import ModelSource
from generators.reality import REALITIES, RealityEnv, RealityProxy, get_reality
from generators.space import Param, ParamSpace, Region
from generators.task import BatchState, ChannelEffects, Task, UniformResetNoise
from generators.vector import BatchedVectorEnv

__all__ = [
    "FAMILIES",
    "FIDELITIES",
    "REALITIES",
    "BatchState",
    "BatchedVectorEnv",
    "ChannelEffects",
    "Family",
    "ModelSource",
    "MujocoTaskEnv",
    "Param",
    "ParamSpace",
    "RealityEnv",
    "RealityProxy",
    "Region",
    "SpecFamily",
    "Task",
    "TaskDistribution",
    "TaskEnv",
    "UniformResetNoise",
    "get_family",
    "get_reality",
    "register_family",
    "route_mujoco_warnings",
]
