"""Evaluation: real-proxy return, oracle cache, transfer ratio, per-region maps."""

from evaluators.config import EvalConfig, OracleConfig
from evaluators.oracle import OracleCache, OracleRecord, oracle_key
from evaluators.regions import RegionResult, evaluate_regions
from evaluators.rollout import EpisodeStats, Policy, evaluate_policy
from evaluators.transfer import normalized_transfer_ratio, transfer_ratio, zero_policy

__all__ = [
    "EpisodeStats",
    "EvalConfig",
    "OracleCache",
    "OracleConfig",
    "OracleRecord",
    "Policy",
    "RegionResult",
    "evaluate_policy",
    "evaluate_regions",
    "normalized_transfer_ratio",
    "oracle_key",
    "transfer_ratio",
    "zero_policy",
]
