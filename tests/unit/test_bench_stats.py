"""edge bench's statistics at the seam, on synthetic samples: interval coverage and the verdicts,
never exact numbers."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from edge.cli.bench.stats import (
    WARMUP_TOKENS,
    Interval,
    _walsh_cut,
    finite,
    judge,
    log_to_pct,
    mean_ci,
    pair_log_ratio,
    percentile_ci,
    precise_enough,
    samples_to_bound,
    shift_ci,
    step_level,
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
    assert judge(percentile_ci([20.0, 30.0] * 10, 0.95), 10.0) == "missed"  # bounded below is enough
    assert samples_to_bound(0.95) == 72
    enough = percentile_ci([1.0, 2.0, 3.0, 5.0] * 20, 0.95)
    assert enough is not None and enough.high == 5.0 and judge(enough, 10.0) == "met"


def test_a_target_is_judged_only_when_the_interval_says_so() -> None:
    assert judge(Interval(1.0, 0.2, 1.8, 10), 2.0) == "met"
    assert judge(Interval(3.0, 2.0, 4.0, 10), 2.0) == "missed"
    assert judge(Interval(1.5, 0.5, 2.5, 10), 2.0) == "inconclusive"
    assert judge(None, 2.0) == "not judged"
    # a point estimate under the limit is not enough: noise this wide says nothing yet
    rng = np.random.default_rng(3)
    ci = mean_ci(list(rng.normal(1.0, 6.0, 8)))
    assert ci is not None and judge(ci, 2.0) == "inconclusive"


# --------------------------------------------------------------------------- the overhead's estimator


def _run(rng: np.random.Generator, step_ms: float, n: int = 64, stalls: int = 3) -> list[float]:
    """One generation's per-token times on a shared board: a level, small jitter, a slow warm-up
    and a few preempted tokens (another process took the core for 5-20 ms)."""
    steps = step_ms * rng.lognormal(0.0, 0.02, n)
    steps[:3] *= 1.5
    for i in rng.choice(np.arange(4, n), stalls, replace=False):
        steps[i] += rng.uniform(5.0, 20.0)
    return [float(x) for x in steps]


def _pairs(rng: np.random.Generator, shift: float, n_pairs: int) -> list[float]:
    """Pair log-ratios of a side `shift` slower per token than the other, each pair on its own
    minute's level (drift between pairs: +/- 5 %)."""
    out = []
    for _ in range(n_pairs):
        level = 9.4 * rng.lognormal(0.0, 0.05)
        ratio = pair_log_ratio(_run(rng, level * (1 + shift)), _run(rng, level))
        assert ratio is not None
        out.append(ratio)
    return out


def test_step_level_drops_the_warm_up_and_shrugs_off_preempted_tokens() -> None:
    rng = np.random.default_rng(11)
    steps = _run(rng, 9.4, stalls=0)
    stalled = list(steps)
    stalled[10] += 15.0
    stalled[40] += 15.0
    level, level_stalled = step_level(steps), step_level(stalled)
    assert level is not None and level_stalled is not None
    mean_shift = math.log(statistics.fmean(stalled[WARMUP_TOKENS:]) / statistics.fmean(steps[WARMUP_TOKENS:]))
    assert abs(level_stalled - level) < mean_shift / 10  # two stalls move the mean, not the level
    # the warm-up tokens are not counted: slowing them changes nothing
    slow_start = [s * 3 for s in steps[:WARMUP_TOKENS]] + steps[WARMUP_TOKENS:]
    assert step_level(slow_start) == level
    assert step_level(steps[: WARMUP_TOKENS + 2]) is None  # too short to say anything
    assert pair_log_ratio(steps[:4], steps[:4]) == 0.0  # ... unless a short pair gives up its warm-up
    assert pair_log_ratio(steps[:2], steps[:2]) is None
    # a pair is compared over the positions both decoded
    assert pair_log_ratio(steps, steps[:30]) == pytest.approx(0.0)


def test_a_known_shift_is_recovered_within_its_interval_and_a_a_covers_zero() -> None:
    rng = np.random.default_rng(5)
    ab = log_to_pct(shift_ci(_pairs(rng, 0.03, 40)))  # type: ignore[arg-type]
    aa = log_to_pct(shift_ci(_pairs(rng, 0.0, 40)))  # type: ignore[arg-type]
    assert ab.low <= 3.0 <= ab.high and ab.low > 0.0  # 3 % found, and told apart from none
    assert aa.low <= 0.0 <= aa.high
    assert aa.half_width < 0.5  # the estimator resolves what the per-run mean cannot (below)
    assert judge(ab, 2.0) in ("inconclusive", "missed") and judge(aa, 2.0) == "met"


def test_the_shift_interval_covers_the_true_shift_about_95_percent() -> None:
    rng = np.random.default_rng(9)
    hits, trials, true = 0, 300, 0.01
    for _ in range(trials):
        ci = shift_ci(list(true + rng.standard_t(3, 20) * 0.01))  # heavy-tailed pairs
        assert ci is not None and ci.low <= ci.value <= ci.high
        hits += ci.low <= true <= ci.high
    assert 0.92 <= hits / trials <= 0.99


def test_the_per_token_estimator_is_narrower_than_the_mean_of_run_speeds_on_the_same_runs() -> None:
    rng = np.random.default_rng(2)
    robust, by_mean = [], []
    for _ in range(40):
        a, b = _run(rng, 9.4), _run(rng, 9.4)
        robust.append(pair_log_ratio(a, b))
        by_mean.append(math.log(statistics.fmean(a[1:]) / statistics.fmean(b[1:])))
    assert shift_ci(robust).half_width < mean_ci(by_mean).half_width / 3  # type: ignore[arg-type, union-attr]


def test_shift_interval_edges() -> None:
    assert shift_ci([]) is None and shift_ci([0.1]) is None
    few = shift_ci([0.1, 0.2, 0.3, 0.4, 0.5])  # 5 pairs: the signed-rank interval cannot be bounded
    assert few is not None and few.low == -math.inf and few.high == math.inf
    assert judge(few, 2.0) == "inconclusive"
    six = shift_ci([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert six is not None and math.isfinite(six.low) and six.low <= six.value <= six.high
    # one wild pair barely moves the estimate (a mean would move by 1 / n of it)
    calm = [0.01 * (i % 5) for i in range(30)]
    assert abs(shift_ci([*calm[:-1], 5.0]).value - shift_ci(calm).value) < 0.01  # type: ignore[union-attr]
    # the exact signed-rank quantiles meet the normal approximation where one hands over to the other
    normal_100 = 100 * 101 / 4 - 1.959964 * math.sqrt(100 * 101 * 201 / 24)
    assert abs(_walsh_cut(100) - normal_100) <= 2 and _walsh_cut(101) > _walsh_cut(100)
    pct = log_to_pct(Interval(math.log(1.02), 0.0, math.log(1.05), 10))
    assert pct.value == pytest.approx(2.0) and pct.low == 0.0 and pct.high == pytest.approx(5.0)


def test_the_main_process_share_is_its_cpu_over_the_decode_on_every_core() -> None:
    from edge.cli.bench.stats import main_cpu_share_pct

    # 20 ms of main-process CPU during a 0.5 s decode on 2 cores: 2 % of the runtime's cores
    assert main_cpu_share_pct(20_000_000, 0.5, 2) == pytest.approx(2.0)
    assert main_cpu_share_pct(0, 0.5, 2) == 0.0
    with pytest.raises(ValueError):
        main_cpu_share_pct(1, 0.0, 2)


def test_a_process_cpu_inside_a_window_is_read_off_its_samples() -> None:
    from edge.cli.bench.stats import cpu_ns_within

    # 10 ms of CPU per 100 ms, sampled every 100 ms: a 50 ms window between samples holds 5 ms
    samples = [(0.0, 0), (0.1, 10_000_000), (0.2, 20_000_000), (0.3, 30_000_000)]
    assert cpu_ns_within(samples, 0.125, 0.175) == pytest.approx(5_000_000)
    assert cpu_ns_within(samples, 0.05, 0.25) == pytest.approx(20_000_000)
    assert cpu_ns_within(samples, 0.25, 0.35) is None  # past the last sample: unknown, not zero
    assert cpu_ns_within(samples[:1], 0.0, 0.0) is None
