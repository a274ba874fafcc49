"""The statistics `compare` reports: known values, and the cases a few seeds produce."""

from __future__ import annotations

import numpy as np
import pytest

from loop.stats import mean_interval, paired_test, probability_of_improvement


def test_eight_paired_wins_give_the_exact_two_sided_signed_rank_p() -> None:
    base = {s: 100.0 * s for s in range(8)}
    cand = {s: 100.0 * s + 1.0 + s for s in range(8)}  # every seed better, distinct margins
    t = paired_test(cand, base)
    assert (t["n"], t["wins"], t["losses"], t["ties"]) == (8, 8, 0, 0)
    assert t["mean_difference"] == pytest.approx(4.5)
    assert t["wilcoxon_p"] == pytest.approx(2 / 2**8)  # only the all-positive sign pattern
    low, high = t["difference_ci"]
    assert 1.0 <= low < 4.5 < high <= 8.0


def test_a_mixed_result_is_not_significant_and_its_interval_spans_zero() -> None:
    # The bimodal outcome of a real comparison: ties at the proxy's maximum, one collapse each.
    base = {0: 1000.0, 1: 1000.0, 2: 218.1, 3: 1000.0}
    cand = {0: 1000.0, 1: 135.6, 2: 1000.0, 3: 1000.0}
    t = paired_test(cand, base)
    assert (t["wins"], t["losses"], t["ties"]) == (1, 1, 2)
    assert t["wilcoxon_p"] > 0.5
    low, high = t["difference_ci"]
    assert low < 0 < high


def test_only_seeds_both_methods_finished_are_paired() -> None:
    t = paired_test({0: 2.0, 1: 3.0, 2: 9.0}, {1: 1.0, 2: 1.0, 5: 0.0})
    assert t["seeds"] == [1, 2] and t["n"] == 2
    assert t["mean_difference"] == pytest.approx(5.0)


def test_identical_results_tie_with_p_one() -> None:
    t = paired_test({0: 5.0, 1: 5.0}, {0: 5.0, 1: 5.0})
    assert t["wilcoxon_p"] == 1.0 and t["ties"] == 2
    assert t["difference_ci"] == (0.0, 0.0)
    assert t["probability_of_improvement"] == 0.5


def test_no_common_seed_gives_no_test() -> None:
    t = paired_test({0: 1.0}, {1: 2.0})
    assert t["n"] == 0 and t["wilcoxon_p"] is None and t["mean_difference"] is None


def test_probability_of_improvement_counts_every_pair_and_half_the_ties() -> None:
    # Pairs (x, y): 3>1, 3>2, 3=3 (half), 1=1 (half), 1<2, 1<3 -> (2 + 0.5 + 0.5) / 6.
    assert probability_of_improvement([3.0, 1.0], [1.0, 2.0, 3.0]) == pytest.approx(0.5)
    assert probability_of_improvement([5.0, 6.0], [1.0, 2.0]) == 1.0


def test_mean_interval_covers_the_mean_and_is_reproducible() -> None:
    xs = np.random.default_rng(3).normal(10.0, 2.0, size=12)
    ci = mean_interval(xs)
    assert ci is not None and ci[0] < xs.mean() < ci[1]
    assert ci[1] - ci[0] < 4 * xs.std(ddof=1) / np.sqrt(xs.size)
    assert mean_interval(xs) == ci
    assert mean_interval([1.0]) is None
