"""The closed loop: controllers, scheduler, journal, checkpoints, W&B, CLI."""

from loop.config import Config, ConfigError, load_config
from loop.controllers import (
    CONTROLLERS,
    Controller,
    Proposal,
    ProposalResult,
    make_controller,
    register_controller,
    to_task_distribution,
)

__all__ = [
    "CONTROLLERS",
    "Config",
    "ConfigError",
    "Controller",
    "Loop",
    "Proposal",
    "ProposalResult",
    "load_config",
    "make_controller",
    "register_controller",
    "to_task_distribution",
]


def __getattr__(name: str):  # torch, rich and Ray load only when a run starts.
    if name == "Loop":
        from loop.runner import Loop

        return Loop
    raise AttributeError(name)
