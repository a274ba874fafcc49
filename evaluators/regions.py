"""Per-region return and error of a policy over the generator's parameter space."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from evaluators.rollout import EpisodeStats, Policy, evaluate_policy
from generators import Family, ParamSpace, Region, TaskDistribution


@dataclass(frozen=True)
class RegionResult:
    """How the learner does in one region of Theta (high-fidelity sim)."""

    index: int
    label: str
    mean_return: float
    """Mean episode return over thetas drawn uniformly in the region."""
    error: float
    """Regret: the family's best achievable return minus `mean_return`."""
    stderr: float
    """Standard error of `mean_return`."""
    episodes: int
    unstable: int
    """Episodes ended by the stability guard."""
    env_steps: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_regions(
    policy: Policy,
    family: Family,
    space: ParamSpace,
    regions: Sequence[Region],
    *,
    fidelity: str,
    episodes_per_region: int,
    seed: int,
) -> list[RegionResult]:
    """Evaluate `policy` in each region: episodes at thetas drawn uniformly inside it.

    Region `r` uses episode seeds from `seed + r * episodes_per_region`, so a region's result
    does not change when other regions are added or removed.
    """
    results = []
    for region in regions:
        dist = TaskDistribution.mixture([region], fidelity=fidelity)
        n_envs = min(episodes_per_region, 8)
        envs = [
            family.make_env(fidelity=fidelity, space=space, distribution=dist)
            for _ in range(n_envs)
        ]
        try:
            stats = evaluate_policy(
                policy, envs, episodes_per_region, seed + region.index * episodes_per_region
            )
        finally:
            for env in envs:
                env.close()
        results.append(
            RegionResult(
                index=region.index,
                label=region.label,
                mean_return=stats.mean,
                error=float(family.max_return - stats.mean),
                stderr=stats.stderr,
                episodes=stats.episodes,
                unstable=stats.unstable,
                env_steps=stats.env_steps,
            )
        )
    return results


def evaluate_points(
    policy: Policy,
    family: Family,
    space: ParamSpace,
    points: Sequence[Sequence[float]],
    *,
    fidelity: str,
    episodes: int,
    seed: int,
) -> EpisodeStats:
    """Evaluate `policy` on `episodes` episodes at given unit-cube thetas: episode `i` at
    ``points[i % len(points)]`` (snapped as training draws are), with seed `seed + i`.

    The worlds a policy is meant for, e.g. the thetas consistent with the real system
    (`evaluators.identify`), as opposed to every region of the space.
    """
    if episodes <= 0 or not len(points):
        raise ValueError("evaluate_points needs episodes > 0 and at least one point")
    envs = [
        family.make_env(
            theta=space.from_unit(space.snap(points[i % len(points)])),
            fidelity=fidelity,
            space=space,
        )
        for i in range(episodes)
    ]
    try:
        return evaluate_policy(policy, envs, episodes, seed)
    finally:
        for env in envs:
            env.close()
