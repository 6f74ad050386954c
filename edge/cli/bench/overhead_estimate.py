"""The overhead estimate of `edge bench`: per-round log-ratios of decode time, their shift and interval.

Pure functions over the runs' stats dicts (each with "new_tokens", "decode_tok_s" and, where the
side timed every token, "steps_ms"); the phases that produce the runs live in command.py.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from edge.cli.bench.stats import Interval, finite, log_to_pct, mean_ci, pair_log_ratio, shift_ci


def rounds_pct(ab: list[float], aa: list[float]) -> list[list[float]]:
    """Each round's A/B and A/A log-ratios in percent, for a reader who wants to see the spread or the drift."""
    return [[round(a * 100.0, 2), round(b * 100.0, 2)] for a, b in zip(ab, aa, strict=False)]


def log_ratios(
    a_side: list[dict[str, Any]], b_side: list[dict[str, Any]], by_set: bool = False
) -> tuple[list[float], str]:
    """Per round, log(a's per-token decode time / b's), and how it was measured: from the per-token
    times when both sides have them ("per-token"), else from the two runs' decode tok/s ("tok/s").
    by_set: one figure per set of processes instead (the mean of its rounds)."""
    pairs = comparable_pairs(a_side, b_side)
    per_token = [
        pair_log_ratio(a["steps_ms"], b["steps_ms"])
        for a, b in pairs
        if a.get("steps_ms") is not None and b.get("steps_ms") is not None
    ]
    if pairs and len(per_token) == len(pairs) and None not in per_token:
        values, method = [x for x in per_token if x is not None], "per-token"
    else:
        pairs = [(a, b) for a, b in pairs if a["decode_tok_s"] > 0]
        values, method = [math.log(b["decode_tok_s"] / a["decode_tok_s"]) for a, b in pairs], "tok/s"
    if not by_set:
        return values, method
    sets: dict[int, list[float]] = {}
    for (a, _b), value in zip(pairs, values, strict=True):
        sets.setdefault(int(a.get("block", 0)), []).append(value)
    return [statistics.fmean(v) for v in sets.values()], f"{method}, per process set"


def overhead_ci(
    a_side: list[dict[str, Any]], b_side: list[dict[str, Any]], rotate: int = 0
) -> Interval | None:
    """The overhead of a_side over b_side in percent of b's per-token time, with its 95 % interval."""
    ci = shift_ci(log_ratios(a_side, b_side, bool(rotate))[0])
    return None if ci is None else log_to_pct(ci)


def settled(
    runtime: list[dict[str, Any]],
    bare: list[dict[str, Any]],
    again: list[dict[str, Any]],
    half_width: float,
    rotate: int = 0,
) -> bool:
    """The stopping rule: both intervals (A/B and A/A) within +/-half_width points."""
    ab, aa = overhead_ci(runtime, bare, rotate), overhead_ci(again, bare, rotate)
    return ab is not None and aa is not None and max(ab.half_width, aa.half_width) <= half_width


def report_overhead(
    report: dict[str, Any],
    runtime: list[dict[str, Any]],
    bare: list[dict[str, Any]],
    again: list[dict[str, Any]],
    rotate: int = 0,
) -> None:
    """A/B (daemon vs bare) and A/A (bare vs bare) with the same estimator, and the old tok/s one."""
    ci95 = report.setdefault("ci95", {})
    rounds_ab, _ = log_ratios(runtime, bare)
    rounds_aa, _ = log_ratios(again, bare)
    ab_logs, method = log_ratios(runtime, bare, bool(rotate))
    aa_logs, _ = log_ratios(again, bare, bool(rotate))
    report["overhead_method"] = method
    report["overhead_pairs"] = len(rounds_ab)
    report["overhead_aa_pairs"] = len(rounds_aa)
    if rotate:
        report["overhead_rotate"] = rotate
        report["overhead_process_sets"] = len(ab_logs)
    report["overhead_rounds_pct"] = rounds_pct(rounds_ab, rounds_aa)
    for key, logs in (("overhead_pct", ab_logs), ("overhead_aa_pct", aa_logs)):
        put_shift(report, key, logs)
        if len(logs) >= 2:  # one pair's spread: what the estimator has to average away
            report.setdefault("overhead_pair_sd_pct", {})[key] = round(statistics.stdev(logs) * 100.0, 2)
    # The previous estimator (the mean of per-run decode tok/s differences, t-interval) on the same
    # pairs: it keeps every token, a preempted one included, so it is both wider and a check that
    # trimming hides no overhead that comes as rare long stalls.
    for key, a_side in (("overhead_pct_tok_s", runtime), ("overhead_aa_pct_tok_s", again)):
        diffs = [
            (1.0 - a["decode_tok_s"] / b["decode_tok_s"]) * 100.0 for a, b in comparable_pairs(a_side, bare)
        ]
        ci = mean_ci(diffs)
        if ci is not None:
            report[key] = round(ci.value, 2)
            ci95[key] = ci.rounded(2)


def put_shift(report: dict[str, Any], key: str, logs: list[float]) -> None:
    """report[key] and its ci95: the Hodges-Lehmann shift of per-round log-ratios, in percent."""
    ci = shift_ci(logs)
    if ci is not None:
        pct = log_to_pct(ci)
        report[key] = round(pct.value, 2)
        report.setdefault("ci95", {})[key] = finite(pct, 2)


def comparable_pairs(
    runtime: list[dict[str, Any]], bare: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Daemon/bare pairs that can be compared: both decoded, and (when enough of them) equally long
    answers (the bare loop's own EOS may come first)."""
    pairs = [
        (r, b)
        for r, b in zip(runtime, bare, strict=False)
        if r["new_tokens"] > 1 and b["new_tokens"] > 1 and b["decode_tok_s"] > 0
    ]
    same = [(r, b) for r, b in pairs if r["new_tokens"] == b["new_tokens"]]
    return same if len(same) >= max(3, len(pairs) // 3) else pairs
