"""The statistics `edge bench` reports: every figure with how sure it is.

- `mean_ci`: a Student-t 95 % interval on a mean (idle CPU over sub-windows);
- `step_level` and `shift_ci`: the overhead's estimator. Each generation is summarized by the mean of
  its log per-token decode times between their 10th and 50th percentiles, after the warm-up tokens (a
  token another process preempted on a shared board is noise of that one generation, not a slower
  runtime); each pair (a daemon job and the
  bare-loop run next to it in time, same prompt, frame and length) gives one log-ratio; the shift
  over the pairs is the Hodges-Lehmann estimate with its Wilcoxon signed-rank 95 % interval, which
  needs no normality and shrugs off the odd pair that a burst of load on the board landed on;
- `percentile_ci`: a distribution-free 95 % interval for a latency percentile (order statistics);
- `judge`: a "< limit" target is met only when the whole interval is below the limit, missed only
  when the whole interval is at or above it, and inconclusive otherwise;
- `precise_enough`: a stopping rule on a t-interval (half-width at most the asked precision).

Pure Python; no scipy (the t quantiles are a table plus the Cornish-Fisher expansion; the signed-rank
quantiles are counted exactly up to 100 pairs, then the normal approximation).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["met", "missed", "inconclusive", "not judged"]

# two-sided 95 % Student-t quantiles t(0.975, df) for df = 1..30
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z975 = 1.959964


def t975(df: int) -> float:
    """t(0.975, df): the table up to 30, then the Cornish-Fisher expansion (error < 1e-4)."""
    if df < 1:
        raise ValueError("df must be at least 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Interval:
    value: float  # the point estimate
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def rounded(self, nd: int) -> list[float]:
        return [round(self.low, nd), round(self.high, nd)]


def mean_ci(samples: Sequence[float]) -> Interval | None:
    """Mean and its 95 % t-interval; None below 2 samples (no spread, no interval)."""
    n = len(samples)
    if n < 2:
        return None
    m = statistics.fmean(samples)
    half = t975(n - 1) * statistics.stdev(samples) / math.sqrt(n)
    return Interval(m, m - half, m + half, n)


def precise_enough(samples: Sequence[float], half_width: float, min_n: int = 5) -> bool:
    """The paired-run stopping rule: at least min_n samples and a 95 % half-width <= half_width."""
    ci = mean_ci(samples)
    return ci is not None and ci.n >= min_n and ci.half_width <= half_width


def _binom_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(0, k + 1)) if k >= 0 else 0.0


@functools.lru_cache(maxsize=256)
def _ranks(n: int, q: float) -> tuple[int, int]:
    """1-based order-statistic ranks (l, u) of the 95 % interval; 0 / n+1 where unbounded."""
    # X_(l) > xi_q iff fewer than l samples are <= xi_q: P = cdf(l-1) <= 2.5 %, the largest such l
    low_rank = 0
    while low_rank < n and _binom_cdf(low_rank, n, q) <= 0.025:
        low_rank += 1
    # X_(u) < xi_q iff at least u samples are below it: P = 1 - cdf(u-1) <= 2.5 %, the smallest u
    high_rank = 1
    while high_rank <= n and _binom_cdf(high_rank - 1, n, q) < 0.975:
        high_rank += 1
    return low_rank, high_rank


def percentile_ci(samples: Sequence[float], q: float) -> Interval | None:
    """The q-percentile (0..1, nearest rank: edge.core.stats.percentile's rule, a measured value)
    and a distribution-free 95 % interval between two order statistics (the binomial interval for
    a quantile: coverage >= 95 % for any latency distribution). None for no samples.

    Chosen over a percentile bootstrap, which covers a p95 of 60 skewed samples only ~85 % of the
    time. A high percentile of few samples has no upper bound: p95 needs >= 72 samples before the
    largest one bounds it; below that `high` is +inf and a '< limit' target stays inconclusive.
    """
    x = sorted(float(v) for v in samples)
    n = len(x)
    if n == 0:
        return None
    value = x[min(n - 1, max(0, int(round(q * (n - 1)))))]
    low_rank, high_rank = _ranks(n, q)
    low = x[low_rank - 1] if low_rank >= 1 else -math.inf
    high = x[high_rank - 1] if high_rank <= n else math.inf
    return Interval(value, min(low, value), max(high, value), n)


def samples_to_bound(q: float, confidence: float = 0.975) -> int:
    """The fewest samples whose largest one bounds the q-percentile from above (one-sided)."""
    return math.ceil(math.log(1 - confidence) / math.log(q))


def finite(ci: Interval | None, nd: int) -> list[float | None] | None:
    """[low, high] for JSON: an unbounded side is null."""
    if ci is None:
        return None
    return [round(v, nd) if math.isfinite(v) else None for v in (ci.low, ci.high)]


def judge(ci: Interval | None, limit: float) -> Verdict:
    """A '< limit' target against a 95 % interval: met / missed / inconclusive."""
    if ci is None:
        return "not judged"
    if ci.high < limit:
        return "met"
    if ci.low >= limit:
        return "missed"
    return "inconclusive"


# --------------------------------------------------------------------------- the overhead's estimator

WARMUP_TOKENS = 4  # decode steps dropped at the start of every generation (caches, allocator, clocks)
# The part of a generation's sorted per-token times that makes its level: from the 10th to the 50th
# percentile. Another process taking the core only ever adds time to a token, so the slow half is
# where the board's noise lives; a fixed per-token cost of the runtime (a callback, a copy) moves
# every token, these included. Cutting the fastest 10 % keeps one lucky token from setting the level.
BAND = (0.1, 0.5)


def band_mean(values: Sequence[float], band: tuple[float, float] = BAND) -> float:
    """The mean of the sorted values between the two quantiles of `band` (at least one value)."""
    x = sorted(values)
    if not x:
        raise ValueError("no values")
    lo = int(len(x) * band[0])
    hi = max(lo + 1, int(round(len(x) * band[1])))
    return statistics.fmean(x[lo:hi])


def step_level(
    steps_ms: Sequence[float], length: int | None = None, warmup: int = WARMUP_TOKENS
) -> float | None:
    """One generation's decode speed as a robust level of its log per-token times.

    steps_ms[i] is the time from token i+1 to token i+2 (the first token, the prefill's, is not a
    decode step). The first `warmup` steps are dropped, and only the first `length` steps are kept
    (both sides of a pair over the same positions: a longer KV cache decodes slower). None when
    fewer than 3 steps are left.
    """
    kept = [math.log(s) for s in steps_ms[warmup:length] if s > 0]
    if len(kept) < 3:
        return None
    return band_mean(kept)


def pair_log_ratio(
    a_steps: Sequence[float], b_steps: Sequence[float], warmup: int = WARMUP_TOKENS
) -> float | None:
    """log(a's per-token time / b's) over the positions both decoded, or None if too short.

    A short answer gives up warm-up tokens before it gives up the comparison: at least 3 steps stay.
    """
    length = min(len(a_steps), len(b_steps))
    warmup = min(warmup, max(0, length - 3))
    a, b = step_level(a_steps, length, warmup), step_level(b_steps, length, warmup)
    return None if a is None or b is None else a - b


def _signed_rank_cdf(n: int) -> list[float]:
    """P(T+ <= t) for t = 0 .. n(n+1)/2, T+ the Wilcoxon signed-rank statistic under symmetry about 0."""
    top = n * (n + 1) // 2
    counts = [1] + [0] * top
    for r in range(1, n + 1):
        for s in range(top, r - 1, -1):
            counts[s] += counts[s - r]
    total = 2.0**n
    cdf, acc = [], 0
    for c in counts:
        acc += c
        cdf.append(acc / total)
    return cdf


@functools.lru_cache(maxsize=256)
def _walsh_cut(n: int) -> int:
    """k: the 95 % interval is [W_(k), W_(M+1-k)] of the M sorted Walsh averages; 0 = unbounded."""
    if n <= 100:
        cdf = _signed_rank_cdf(n)
        k = 0
        while k < len(cdf) and cdf[k] <= 0.025:
            k += 1
        return k  # P(T+ <= k-1) <= 2.5 % < P(T+ <= k)
    m = n * (n + 1) / 4
    sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    return max(0, int(math.floor(m - _Z975 * sd + 0.5)))


def shift_ci(diffs: Sequence[float]) -> Interval | None:
    """The Hodges-Lehmann shift (median of the Walsh averages (d_i + d_j) / 2, i <= j) of paired
    differences, and the Wilcoxon signed-rank 95 % interval that goes with it.

    Coverage holds for any distribution symmetric about the shift (a difference of two like
    measurements is); one wild pair moves neither the estimate nor the interval by much, unlike a
    mean and its t-interval. None below 2 pairs; with fewer than 6 the interval is unbounded.
    """
    d = [float(v) for v in diffs]
    n = len(d)
    if n < 2:
        return None
    walsh = sorted((d[i] + d[j]) / 2 for i in range(n) for j in range(i, n))
    value = statistics.median(walsh)
    k = _walsh_cut(n)
    if k < 1:
        return Interval(value, -math.inf, math.inf, n)
    return Interval(value, min(walsh[k - 1], value), max(walsh[len(walsh) - k], value), n)


def log_to_pct(ci: Interval) -> Interval:
    """An interval on log-ratios as percent changes (exp(x) - 1): monotone, so the interval carries."""

    def pct(x: float) -> float:
        return math.expm1(x) * 100.0 if math.isfinite(x) else x

    return Interval(pct(ci.value), pct(ci.low), pct(ci.high), ci.n)


def main_cpu_share_pct(main_ns: int, decode_s: float, cpus: int) -> float:
    """The daemon main process's CPU during one job as a percentage of the runtime's cores during
    that job's decode: the main process's run time (ns, every thread) over decode wall time x CPUs.

    All of the job's main-process CPU (the command, the frame hand-over, the publish) is charged to
    the decode, so this bounds from above what the main process could have taken from the decode.
    """
    if decode_s <= 0 or cpus < 1:
        raise ValueError("decode_s must be > 0 and cpus >= 1")
    return main_ns / 1e9 / (decode_s * cpus) * 100.0


def cpu_ns_within(samples: Sequence[tuple[float, int]], t0: float, t1: float) -> float | None:
    """A process's run time between t0 and t1, from (time, cumulative ns) samples, linear between
    samples; None unless the samples span the window."""
    pts = sorted(samples)
    if len(pts) < 2 or not pts[0][0] <= t0 <= t1 <= pts[-1][0]:
        return None

    def at(t: float) -> float:
        for (ta, na), (tb, nb) in zip(pts, pts[1:], strict=False):
            if ta <= t <= tb:
                return na + (nb - na) * ((t - ta) / (tb - ta) if tb > ta else 1.0)
        return float(pts[-1][1])

    return at(t1) - at(t0)
