"""`edge bench`'s verdicts from its figures and intervals: met / missed / inconclusive per target, the A/A
row's veto, cold start reported but never judged. Synthetic reports, no daemon."""

from __future__ import annotations

import math
from typing import Any

import pytest

from edge.cli.bench.report import RSS_LIMIT_MB, evaluate_targets, render_table


def report(**figures: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "decode_ms_per_token": 9.4,
        "overhead_pct": 0.4,
        "overhead_aa_pct": 0.05,
        "overhead_pct_tok_s": 0.6,
        "idle_cpu_pct_per_camera": 0.6,
        "cameras": 1,
        "rss_mb_main": 55.0,
        "ready_s": 3.1,
        "first_result_s": 3.6,
        "camera": {"fps": 15},
        "range": {"rss_mb_main": [54.0, 56.0]},
        "ci95": {
            "overhead_pct": [0.1, 0.7],
            "overhead_aa_pct": [-0.3, 0.35],
            "overhead_pct_tok_s": [-1.0, 2.2],
            "idle_cpu_pct_per_camera": [0.5, 0.7],
        },
    }
    for key, value in figures.items():
        if key.startswith("ci_"):
            r["ci95"][key[3:]] = value
        elif key == "rss_range":
            r["range"]["rss_mb_main"] = value
        else:
            r[key] = value
    return r


def verdicts(r: dict[str, Any]) -> dict[str, str]:
    return {k: t["verdict"] for k, t in evaluate_targets(r).items()}


def test_every_target_gets_its_verdict_from_its_interval() -> None:
    v = verdicts(report())
    assert v["overhead_pct"] == "met"
    assert v["idle_cpu_pct_per_camera"] == "met"
    assert v["rss_mb_main"] == "met"
    # cold start has no target: its figures are there, never judged
    assert v["ready_s"] == v["first_result_s"] == "not judged"
    targets = evaluate_targets(report())
    assert targets["first_result_s"]["value"] == 3.6 and targets["first_result_s"]["target"] == "none"


@pytest.mark.parametrize(
    ("ci", "expected"),
    [([0.1, 1.9], "met"), ([1.2, 2.8], "inconclusive"), ([2.1, 3.0], "missed")],
)
def test_the_overhead_verdict_follows_its_interval(ci: list[float], expected: str) -> None:
    assert verdicts(report(ci_overhead_pct=ci, overhead_pct=sum(ci) / 2))["overhead_pct"] == expected


@pytest.mark.parametrize(
    ("aa_ci", "why"),
    [([0.2, 0.9], "excludes 0"), ([-1.2, 1.3], "too noisy"), ([None, None], "unchecked")],
)
def test_the_a_a_interval_must_vouch_for_the_pairing(aa_ci: list[float | None], why: str) -> None:
    # an A/B interval that alone would say "met" or "missed" is not believed when the A/A cannot vouch
    for ab in ([0.1, 0.7], [2.5, 3.5]):
        t = evaluate_targets(report(ci_overhead_aa_pct=aa_ci, ci_overhead_pct=ab))["overhead_pct"]
        assert t["verdict"] == "inconclusive" and why in t["note"]


def test_stalls_seen_by_whole_run_tok_s_make_the_overhead_missed() -> None:
    t = evaluate_targets(report(ci_overhead_pct_tok_s=[2.5, 4.0]))["overhead_pct"]
    assert t["verdict"] == "missed" and "stalls" in t["note"]


def test_a_small_model_is_reported_not_judged() -> None:
    assert verdicts(report(decode_ms_per_token=0.3))["overhead_pct"] == "not judged"


@pytest.mark.parametrize(
    ("span", "expected"),
    [([50.0, RSS_LIMIT_MB - 0.1], "met"), ([57.0, 61.0], "inconclusive"), ([RSS_LIMIT_MB, 90.0], "missed")],
)
def test_main_rss_is_judged_on_the_range_of_its_samples(span: list[float], expected: str) -> None:
    assert pytest.approx(0.7 * 84) == RSS_LIMIT_MB
    assert verdicts(report(rss_range=span, rss_mb_main=span[1]))["rss_mb_main"] == expected


def test_idle_per_camera_missed_when_the_whole_interval_is_above_one_percent() -> None:
    assert verdicts(report(ci_idle_cpu_pct_per_camera=[1.1, 1.6]))["idle_cpu_pct_per_camera"] == "missed"
    assert (
        verdicts(report(ci_idle_cpu_pct_per_camera=[0.8, 1.2]))["idle_cpu_pct_per_camera"] == "inconclusive"
    )


def test_the_table_shows_the_a_a_row_beside_the_overhead_and_cold_start_unjudged() -> None:
    r = report(overhead_pairs=40, overhead_aa_pairs=40, overhead_method="per-token", cpus=[0, 1])
    evaluate_targets(r)
    table = render_table(r)
    rows = table.splitlines()
    at = next(i for i, line in enumerate(rows) if "runtime overhead per decoded token" in line)
    assert "A/A" in rows[at + 1] and "+0.05 %" in rows[at + 1] and "covers 0" in rows[at + 1]
    assert "cold start" in table and "no target: not judged" in table
    assert "< 1 % of one core: met" in table and f"< {RSS_LIMIT_MB:g} MB: met" in table


def test_with_restarts_the_interval_is_over_sets_of_processes_not_rounds() -> None:
    from edge.cli.bench.overhead_estimate import log_ratios

    def run(step: float, block: int) -> dict[str, Any]:
        return {"new_tokens": 20, "decode_tok_s": 1000 / step, "steps_ms": [step] * 19, "block": block}

    # three sets of processes, two rounds each; each set has its own offset between the two sides
    offsets = {0: 1.00, 1: 1.04, 2: 0.98}
    daemon = [run(10.0 * offsets[b], b) for b in (0, 0, 1, 1, 2, 2)]
    bare = [run(10.0, b) for b in (0, 0, 1, 1, 2, 2)]
    rounds, method = log_ratios(daemon, bare)
    sets, set_method = log_ratios(daemon, bare, by_set=True)
    assert method == "per-token" and len(rounds) == 6
    assert set_method == "per-token, per process set" and len(sets) == 3
    assert sets == pytest.approx([0.0, math.log(1.04), math.log(0.98)])


# --------------------------------------------------------------------------- the in-process verdict


@pytest.mark.parametrize(
    ("overhead", "aa", "main", "expected"),
    [
        ([0.1, 0.9], [-0.3, 0.4], [0.5, 0.8], "met"),  # 0.9 + 0.8 <= 2, A/A within +/-0.5
        ([0.1, 1.4], [-0.3, 0.4], [0.5, 0.8], "inconclusive"),  # 1.4 + 0.8 > 2: the sum decides
        ([0.1, 0.9], [-0.9, 0.4], [0.5, 0.8], "inconclusive"),  # A/A half-width 0.65
        ([0.1, 0.9], [0.1, 0.5], [0.5, 0.8], "inconclusive"),  # A/A excludes 0
        ([0.1, 0.9], [-0.3, 0.4], None, "inconclusive"),  # no main-process share
        ([2.3, 3.0], [-2.0, 2.0], None, "missed"),  # the lower end alone is above 2, whatever the A/A
        ([2.0, 3.0], [-0.3, 0.4], [0.0, 0.1], "inconclusive"),  # "above", not "at"
        ([None, None], [-0.3, 0.4], [0.5, 0.8], "not judged"),
    ],
)
def test_the_in_process_verdict_adds_the_main_process_share_and_needs_its_a_a(
    overhead: list[float | None], aa: list[float | None], main: list[float | None] | None, expected: str
) -> None:
    from edge.cli.bench.report import inproc_verdict

    verdict, note = inproc_verdict(overhead, aa, main)
    assert verdict == expected
    assert note


def inproc_report(**figures: Any) -> dict[str, Any]:
    return report(
        overhead_pct=6.0,  # the cross-process figure with a per-process offset in it
        ci_overhead_pct=[4.0, 8.0],
        ci_overhead_aa_pct=[-2.2, 2.2],
        overhead_inproc_pct=0.3,
        ci_overhead_inproc_pct=[0.0, 0.7],
        overhead_inproc_aa_pct=0.0,
        ci_overhead_inproc_aa_pct=[-0.4, 0.4],
        overhead_main_cpu_pct=0.5,
        ci_overhead_main_cpu_pct=[0.4, 0.6],
        overhead_inproc_rounds=30,
        cpus=[0, 1],
        **figures,
    )


def test_with_in_process_figures_they_carry_the_verdict_and_the_cross_process_row_informs() -> None:
    r = inproc_report()
    v = verdicts(r)
    assert v["overhead_inproc_pct"] == "met"
    assert v["overhead_pct"] == "not judged"  # it would say "missed" on its own interval
    assert "+/-2.2 points" in r["targets"]["overhead_pct"]["note"]
    rows = render_table(r).splitlines()
    at = next(i for i, line in enumerate(rows) if "in one process (30 rounds" in line)
    assert "< 2 %: met" in rows[at] and "+0.30 % [+0.00, +0.70]" in rows[at]
    assert "A/A in one process" in rows[at + 1] and "covers 0" in rows[at + 1]
    assert "main process's CPU while" in rows[at + 2] and "0.50 % [0.40, 0.60]" in rows[at + 2]
    assert "end-to-end, across processes" in rows[at + 3] and "informative" in rows[at + 3]


def test_without_in_process_figures_the_cross_process_row_keeps_its_verdict() -> None:
    r = report()
    assert verdicts(r)["overhead_pct"] == "met" and "overhead_inproc_pct" not in r["targets"]


def test_a_small_model_leaves_the_in_process_figure_unjudged() -> None:
    assert verdicts(inproc_report(decode_ms_per_token=0.4))["overhead_inproc_pct"] == "not judged"
