"""Generators: parameter spaces, task distributions, MuJoCo task families, reality proxies.

Importing the package registers the built-in families (``inverted_pendulum``) and reality
proxies (``gymnasium/InvertedPendulum-v5``).
"""

from generators import inverted_pendulum as _inverted_pendulum  # noqa: F401  (registers)
from generators.distribution import TaskDistribution
from generators.env import MujocoTaskEnv, TaskEnv
from generators.families import FAMILIES, FIDELITIES, Family, get_family, register_family
from generators.reality import REALITIES, RealityEnv, RealityProxy, get_reality
from generators.space import Param, ParamSpace, Region
from generators.task import ChannelEffects, Task

__all__ = [
    "FAMILIES",
    "FIDELITIES",
    "REALITIES",
    "ChannelEffects",
    "Family",
    "MujocoTaskEnv",
    "Param",
    "ParamSpace",
    "RealityEnv",
    "RealityProxy",
    "Region",
    "Task",
    "TaskDistribution",
    "TaskEnv",
    "get_family",
    "get_reality",
    "register_family",
]
