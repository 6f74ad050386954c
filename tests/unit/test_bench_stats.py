"""edge bench's statistics at the seam, on synthetic samples: interval coverage and the verdicts,
never exact numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.cli.bench.stats import (
    Interval,
    finite,
    judge,
    mean_ci,
    percentile_ci,
    precise_enough,
    samples_to_bound,
    t975,
)
from edge.core.stats import percentile


def test_t_quantiles_are_monotone_and_approach_the_normal() -> None:
    qs = [t975(df) for df in range(1, 200)]
    assert all(a > b for a, b in zip(qs, qs[1:], strict=False))
    assert t975(30) == pytest.approx(2.042, abs=1e-3) and t975(31) == pytest.approx(2.0395, abs=1e-3)
    assert t975(120) == pytest.approx(1.980, abs=1e-3) and t975(10_000) == pytest.approx(1.96, abs=1e-3)


@pytest.mark.parametrize("n", [5, 10, 30])
def test_the_paired_t_interval_covers_the_true_mean_about_95_percent(n: int) -> None:
    rng = np.random.default_rng(n)
    true = 1.5  # an overhead of 1.5 points, under noise of 3 points per pair (a shared board)
    hits = 0
    trials = 2000
    for _ in range(trials):
        ci = mean_ci(list(true + rng.normal(0, 3, n)))
        assert ci is not None and ci.low <= ci.value <= ci.high
        hits += ci.low <= true <= ci.high
    assert 0.93 <= hits / trials <= 0.97


def test_the_interval_narrows_with_more_pairs_and_the_stopping_rule_follows() -> None:
    rng = np.random.default_rng(1)
    pairs = list(rng.normal(0.5, 2.0, 200))
    widths = [mean_ci(pairs[:n]).half_width for n in (5, 20, 80, 200)]  # type: ignore[union-attr]
    assert widths == sorted(widths, reverse=True)
    assert not precise_enough(pairs[:5], 1.0)
    assert precise_enough(pairs, 1.0)
    assert not precise_enough([1.0, 1.0, 1.0], 1.0, min_n=5)  # too few, however tight
    assert mean_ci([1.0]) is None


@pytest.mark.parametrize("q", [0.5, 0.95])
def test_the_percentile_interval_covers_the_true_percentile(q: float) -> None:
    # latencies: a skewed distribution (lognormal), 80 jobs per run
    rng = np.random.default_rng(7)
    true = float(np.exp(1.0 + 0.5 * {0.5: 0.0, 0.95: 1.6448536}[q]))
    hits, trials = 0, 1000
    for _ in range(trials):
        x = list(rng.lognormal(1.0, 0.5, 80))
        ci = percentile_ci(x, q)
        assert ci is not None and ci.low <= ci.value <= ci.high
        assert ci.value == percentile(x, q)  # the same rule as health and the outbox
        hits += ci.low <= true <= ci.high
    assert hits / trials >= 0.94  # distribution-free: at least 95 % (less sampling noise)


def test_percentile_interval_edges() -> None:
    assert percentile_ci([], 0.95) is None
    # too few jobs to bound a p95 from above: the interval says so, and the target stays open
    few = percentile_ci([1.0, 2.0, 3.0, 5.0] * 5, 0.95)
    assert few is not None and few.high == math.inf and judge(few, 10.0) == "inconclusive"
    assert finite(few, 1) == [few.low, None]
    assert judge(percentile_ci([20.0, 30.0] * 10, 0.95), 10.0) == "not met"  # bounded below is enough
    assert samples_to_bound(0.95) == 72
    enough = percentile_ci([1.0, 2.0, 3.0, 5.0] * 20, 0.95)
    assert enough is not None and enough.high == 5.0 and judge(enough, 10.0) == "met"


def test_a_target_is_judged_only_when_the_interval_says_so() -> None:
    assert judge(Interval(1.0, 0.2, 1.8, 10), 2.0) == "met"
    assert judge(Interval(3.0, 2.0, 4.0, 10), 2.0) == "not met"
    assert judge(Interval(1.5, 0.5, 2.5, 10), 2.0) == "inconclusive"
    assert judge(None, 2.0) == "not judged"
    # a point estimate under the limit is not enough: noise this wide says nothing yet
    rng = np.random.default_rng(3)
    ci = mean_ci(list(rng.normal(1.0, 6.0, 8)))
    assert ci is not None and judge(ci, 2.0) == "inconclusive"
