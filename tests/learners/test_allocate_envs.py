"""Sub-envs are split between parts of a task distribution by share, none left out."""

from __future__ import annotations

import pytest

from learners.rllib_learner import allocate_envs


@pytest.mark.parametrize(
    ("shares", "n", "expected"),
    [
        ([1.0], 8, [8]),
        ([0.5, 0.5], 8, [4, 4]),
        ([0.2, 0.8], 8, [2, 6]),
        ([0.01, 0.99], 8, [1, 7]),  # a positive share gets at least one sub-env
        ([0.0, 1.0], 4, [0, 4]),
        ([1, 1, 1], 8, [3, 3, 2]),
        ([0.05, 0.05, 0.9], 3, [1, 1, 1]),
    ],
)
def test_allocation_follows_shares(shares, n, expected) -> None:
    counts = allocate_envs(shares, n)
    assert counts == expected
    assert sum(counts) == n


def test_allocation_rejects_impossible_splits() -> None:
    with pytest.raises(ValueError, match="sub-envs"):
        allocate_envs([1, 1, 1], 2)
    with pytest.raises(ValueError, match="positive sum"):
        allocate_envs([0, 0], 4)
