"""The closed loop: controllers, scheduler, journal, checkpoints, W&B, CLI."""

from loop.config import Config, ConfigError, load_config
from loop.controllers import (
    CONTROLLERS,
    Controller,
    Proposal,
    ProposalResult,
    learning_progress,
    local_progress,
    make_controller,
    register_controller,
    to_task_distribution,
    to_task_distributions,
)
from loop.scheduler import FidelityBudget, Scheduler

__all__ = [
    "CONTROLLERS",
    "Config",
    "ConfigError",
    "Controller",
    "FidelityBudget",
    "Loop",
    "Proposal",
    "ProposalResult",
    "Scheduler",
    "learning_progress",
    "load_config",
    "local_progress",
    "make_controller",
    "register_controller",
    "to_task_distribution",
    "to_task_distributions",
]


def __getattr__(name: str):  # torch, rich and Ray load only when a run starts.
    if name == "Loop":
        from loop.runner import Loop

        return Loop
    raise AttributeError(name)
