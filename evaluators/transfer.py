"""Synthetic-to-real transfer ratio."""

from __future__ import annotations


def transfer_ratio(real_return: float, oracle_return: float) -> float:
    """Real return of the synthetic-trained policy over the oracle's real return.

    1.0 means the policy does as well on the reality proxy as a policy trained on it directly.
    The oracle return must be positive (a non-positive reference makes the ratio meaningless).
    """
    if not oracle_return > 0:
        raise ValueError(f"oracle return must be > 0 for a transfer ratio (got {oracle_return})")
    return float(real_return / oracle_return)
