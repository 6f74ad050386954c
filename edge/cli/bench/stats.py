"""The statistics `edge bench` reports: every figure with how sure it is.

- `mean_ci`: a Student-t 95 % interval on paired differences (the overhead: daemon vs bare loop, one
  pair next to each other in time, so drift on a shared board cancels within each pair);
- `percentile_ci`: a distribution-free 95 % interval for a latency percentile (order statistics);
- `judge`: a "< limit" target is met only when the whole interval is below the limit, missed only
  when the whole interval is at or above it, and inconclusive otherwise;
- `precise_enough`: the stopping rule for paired runs (half-width at most the asked precision).

Pure Python; no scipy (the t quantiles are a table plus the Cornish-Fisher expansion).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["met", "not met", "inconclusive", "not judged"]

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
    """A '< limit' target against a 95 % interval: met / not met / inconclusive."""
    if ci is None:
        return "not judged"
    if ci.high < limit:
        return "met"
    if ci.low >= limit:
        return "not met"
    return "inconclusive"
