"""Which iterate a run deploys to the reality proxy (`eval.deploy`)."""

from __future__ import annotations

import pytest

from loop.runner import replaces_deployed


def deployed_iterations(rule: str, region_returns: list[float]) -> list[int]:
    """The deployed iteration after each iteration of a run with these region returns."""
    deployed, out = None, []
    for k, value in enumerate(region_returns):
        if replaces_deployed(rule, deployed, value):
            deployed = {"iteration": k, "return": value}
        out.append(deployed["iteration"])
    return out


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("last", [0, 1, 2, 3, 4]), ("best", [0, 1, 1, 1, 4])],
)
def test_rule_picks_the_latest_or_the_best_on_the_sim_regions(
    rule: str, expected: list[int]
) -> None:
    # An early iterate that scores well on the sim regions, later ones that score less, and a
    # final one that ties it (ties go to the later iterate).
    assert deployed_iterations(rule, [0.1, 0.8, 0.5, 0.6, 0.8]) == expected
