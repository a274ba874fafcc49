"""Statistics of a comparison over seeds: is one method's real-proxy return higher than another's?

RL outcomes over a handful of seeds are noisy and often bimodal (a policy balances on the
proxy or it drops), so a difference of means alone says little. `compare` reports, per
method, a bootstrap confidence interval of the mean, and for each method against the
baseline the paired difference by seed (mean, bootstrap interval, wins/losses/ties, the
Wilcoxon signed-rank test) and the probability of improvement, P(X > Y) over all pairs of
runs (Agarwal et al., 2021, "Deep RL at the edge of the statistical precipice"). The
statistics are SciPy's; resampling uses a fixed seed so a `compare.json` is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
"""Level of the bootstrap intervals."""

RESAMPLES = 10_000
"""Bootstrap resamples per interval."""


def mean_interval(values: Sequence[float], seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean; None with fewer than two values.

    Constant data gives the degenerate interval (v, v).
    """
    xs = np.asarray(values, dtype=float)
    if xs.size < 2:
        return None
    if np.all(xs == xs[0]):
        return float(xs[0]), float(xs[0])
    res = stats.bootstrap(
        (xs,),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """P(X > Y) + P(X = Y) / 2 for a run X of one method and a run Y of the other, over all
    pairs (the Mann-Whitney U statistic over ``len(x) * len(y)``)."""
    xs = np.asarray(x, dtype=float)[:, None]
    ys = np.asarray(y, dtype=float)[None, :]
    return float(np.mean((xs > ys) + 0.5 * (xs == ys)))


def paired_test(
    candidate: Mapping[int, float], baseline: Mapping[int, float], seed: int = 0
) -> dict[str, Any]:
    """The candidate against the baseline on the seeds both have a value for.

    Keys: ``seeds`` (paired), ``n``, ``mean_difference`` (candidate - baseline),
    ``difference_ci`` (bootstrap, of the mean paired difference), ``wins``/``losses``/
    ``ties`` (per seed), ``wilcoxon_p`` (two-sided signed-rank test of the paired
    differences, exact for small samples; 1.0 when every difference is zero, None with no
    pair) and ``probability_of_improvement`` (all runs of each, paired or not).
    """
    seeds = sorted(set(candidate) & set(baseline))
    d = np.array([candidate[s] - baseline[s] for s in seeds], dtype=float)
    if d.size == 0:
        p = None
    elif np.all(d == 0):
        p = 1.0
    else:
        p = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return {
        "seeds": seeds,
        "n": int(d.size),
        "mean_difference": float(d.mean()) if d.size else None,
        "difference_ci": mean_interval(d, seed),
        "wins": int((d > 0).sum()),
        "losses": int((d < 0).sum()),
        "ties": int((d == 0).sum()),
        "wilcoxon_p": p,
        "probability_of_improvement": (
            probability_of_improvement(list(candidate.values()), list(baseline.values()))
            if candidate and baseline
            else None
        ),
    }


__all__ = ["mean_interval", "paired_test", "probability_of_improvement"]
