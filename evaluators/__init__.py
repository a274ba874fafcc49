"""Evaluation: real-proxy return, oracle cache, transfer ratio, per-region maps."""

from evaluators.config import EvalConfig, OracleConfig
from evaluators.oracle import OracleCache, OracleRecord, oracle_key
from evaluators.regions import RegionResult, evaluate_points, evaluate_regions
from evaluators.rollout import EpisodeStats, Policy, Trajectory, evaluate_policy
from evaluators.sysid import Identification, Windows, identify, make_windows, prediction_errors
from evaluators.transfer import normalized_transfer_ratio, transfer_ratio, zero_policy

__all__ = [
    "EpisodeStats",
    "EvalConfig",
    "Identification",
    "OracleCache",
    "OracleConfig",
    "OracleRecord",
    "Policy",
    "RegionResult",
    "Trajectory",
    "Windows",
    "evaluate_points",
    "evaluate_policy",
    "evaluate_regions",
    "identify",
    "make_windows",
    "normalized_transfer_ratio",
    "oracle_key",
    "prediction_errors",
    "transfer_ratio",
    "zero_policy",
]
