"""The RLlib learner: builds the Algorithm, pushes the task distribution, trains, exports."""

from importlib import import_module

from learners.config import LearnerConfig

__all__ = ["LearnerConfig", "MLPPolicy", "RLlibLearner", "TrainStats", "make_env"]

# torch and Ray load on first use, so validating a config stays fast.
_LAZY = {
    "MLPPolicy": "learners.policy",
    "RLlibLearner": "learners.rllib_learner",
    "TrainStats": "learners.rllib_learner",
    "make_env": "learners.rllib_learner",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(name)
