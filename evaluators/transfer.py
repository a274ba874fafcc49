"""Synthetic-to-real transfer ratio."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def transfer_ratio(real_return: float, oracle_return: float) -> float:
    """Real return of the synthetic-trained policy over the oracle's real return.

    1.0 means the policy does as well on the reality proxy as a policy trained on it directly.
    Meaningful for non-negative returns; see `normalized_transfer_ratio` otherwise.
    """
    if not oracle_return > 0:
        raise ValueError(f"oracle return must be > 0 for a transfer ratio (got {oracle_return})")
    return float(real_return / oracle_return)


def normalized_transfer_ratio(real_return: float, oracle_return: float, floor: float) -> float:
    """`(real - floor) / (oracle - floor)`: 0 at the floor policy, 1 at the oracle.

    With the return of a do-nothing policy as `floor`, this stays meaningful for families whose
    returns are negative (e.g. reacher's negative distance), where the plain ratio is not.
    """
    if not oracle_return > floor:
        raise ValueError(f"oracle return {oracle_return} does not beat the floor {floor}")
    return float((real_return - floor) / (oracle_return - floor))


def zero_policy(act_dim: int) -> Callable[[np.ndarray], np.ndarray]:
    """The do-nothing policy: zero action (`b x obs_dim` -> `b x act_dim`), the usual floor."""

    def act(obs: np.ndarray) -> np.ndarray:
        return np.zeros((obs.shape[0], act_dim))

    return act
