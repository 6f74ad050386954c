"""The consumer library's pure parts: topic/payload decoding, the completeness tracker, the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.consumer import Tracker, decode, parse_result_id
from edge.consumer.models import SUPPORTED, ResultPayload
from edge.consumer.store import ResultStore
from edge.core import messages
from edge.core.messages import EventPayload, ModelPayload, StatsPayload

BOOT = 1700000000


def result(seq: int, device: str = "cam-01", boot: int = BOOT, rid: str | None = None) -> ResultPayload:
    return ResultPayload(
        id=rid or f"{device}-{boot}-{seq}",
        device=device,
        camera="main",
        task="caption",
        seq=seq,
        captured_at="2026-01-01T00:00:00.000Z",
        published_at="2026-01-01T00:00:01.000Z",
        trigger="interval",
        text=f"scene {seq}",
        model=ModelPayload(name="m", backend="ort-genai", provider="cpu"),
        stats=StatsPayload(
            prompt_tokens=1,
            image_tokens=0,
            new_tokens=1,
            ttft_ms=1.0,
            decode_tok_s=1.0,
            total_ms=2.0,
            stop_reason="eos",
        ),
    )


# --------------------------------------------------------------------------- models


def test_models_are_the_daemons_own_not_copies() -> None:
    from edge import consumer

    assert consumer.ResultPayload is messages.ResultPayload
    assert consumer.EventPayload is messages.EventPayload
    assert SUPPORTED["result"] == {messages.RESULT_VERSION}


def test_decode_result_topic_and_payload() -> None:
    r = result(3)
    d = decode("edge/cam-01/main/caption/result", r.model_dump_json().encode())
    assert (d.kind, d.device, d.camera, d.task, d.error) == ("result", "cam-01", "main", "caption", None)
    assert d.result == r


def test_the_retained_last_result_is_read_but_never_counted_as_a_delivery() -> None:
    r = result(3)
    d = decode("edge/cam-01/main/caption/last", r.model_dump_json().encode())
    assert (d.kind, d.camera, d.task, d.error) == ("last", "main", "caption", None)
    assert d.last == r and d.result is None  # the tracker sees results only


@pytest.mark.parametrize(
    ("topic", "kind", "device"),
    [
        ("edge/cam-01/status", "status", "cam-01"),
        ("edge/cam-01/health", "health", "cam-01"),
        ("edge/cam-01/state", "state", "cam-01"),
        ("edge/cam-01/event", "event", "cam-01"),
        ("edge/cam-01/cmd/ask", "command", "cam-01"),
        ("edge/cam-01/reply/ask", "reply", "cam-01"),
        ("edge/cam-01/main/caption/image", "image", "cam-01"),
        ("edge/cam-01/yard/gate/result", "result", "cam-01"),  # a two-level task topic override
        ("edge/cam-01/main/caption/last", "last", "cam-01"),
        ("other/cam-01/status", "other", None),
    ],
)
def test_decode_classifies_every_contract_topic(topic: str, kind: str, device: str | None) -> None:
    assert decode(topic, b"online").kind == kind
    assert decode(topic, b"online").device == device


def test_decode_reports_bad_payloads_instead_of_raising() -> None:
    assert decode("edge/d/status", b"maybe").error
    assert "not JSON" in (decode("edge/d/main/t/result", b"{").error or "")
    newer = json.loads(result(1).model_dump_json()) | {"v": 3}
    err = decode("edge/d/main/t/result", json.dumps(newer).encode()).error or ""
    assert "v=3" in err and "reads v=2" in err
    broken = json.loads(result(1).model_dump_json())
    del broken["seq"]
    assert "seq" in (decode("edge/d/main/t/result", json.dumps(broken).encode()).error or "")


def test_parse_result_id_splits_from_the_right() -> None:
    rid = parse_result_id("cam-north-01-1700000000-42")
    assert rid is not None and (rid.device, rid.boot, rid.seq) == ("cam-north-01", 1700000000, 42)
    assert parse_result_id("nodash") is None
    assert parse_result_id("cam-x-12") is None  # boot not numeric


# --------------------------------------------------------------------------- tracker


def test_in_order_stream_is_complete() -> None:
    t = Tracker()
    obs = [t.result(result(s)) for s in range(1, 11)]
    assert [o.status for o in obs] == ["new"] * 10
    assert obs[0].new_boot and not obs[1].new_boot
    rep = t.report()
    assert rep.complete and rep.results == 10 and rep.duplicates == 0


def test_gap_is_reported_when_it_opens_and_in_the_report() -> None:
    t = Tracker()
    for s in (1, 2, 3):
        t.result(result(s))
    o = t.result(result(6))
    assert o.status == "new" and [(g.first, g.last) for g in o.opened] == [(4, 5)]
    rep = t.report()
    assert not rep.complete and rep.missing == 2
    assert str(rep.gaps[0]) == f"cam-01 boot {BOOT}: seq 4..5 missing (2)"


def test_redelivery_is_a_duplicate_not_a_gap() -> None:
    t = Tracker()
    for s in (1, 2, 3, 2, 3, 4):
        t.result(result(s))
    rep = t.report()
    assert rep.complete and rep.results == 4 and rep.duplicates == 2


def test_reordering_fills_the_gap_as_late() -> None:
    t = Tracker()
    statuses = [t.result(result(s)).status for s in (1, 2, 5, 3, 4, 6)]
    assert statuses == ["new", "new", "new", "late", "late", "new"]
    rep = t.report()
    assert rep.complete and rep.late == 2
    assert rep.boots[0].first_seq == 1 and rep.boots[0].last_seq == 6


def test_first_boot_seen_counts_from_the_first_seq_later_boots_from_one() -> None:
    t = Tracker()
    t.result(result(41))  # joined late: 1..40 were before our time
    t.result(result(42))
    o = t.result(result(3, boot=BOOT + 60))  # a restart while we watched: 1 and 2 are lost
    assert o.new_boot and [(g.first, g.last) for g in o.opened] == [(1, 2)]
    rep = t.report()
    assert [(b.boot, b.missing) for b in rep.boots] == [(BOOT, 0), (BOOT + 60, 2)]


def test_from_start_expects_seq_one_for_every_boot() -> None:
    t = Tracker(from_start=True)
    t.result(result(3))
    assert t.report().missing == 2


def test_late_join_below_the_first_seen_seq_extends_the_boot() -> None:
    t = Tracker()
    for s in (5, 3, 4):
        t.result(result(s))
    rep = t.report()
    assert rep.complete and rep.boots[0].first_seq == 3


def test_devices_and_boots_are_independent() -> None:
    t = Tracker()
    for s in (1, 2):
        t.result(result(s, device="a"))
        t.result(result(s, device="b"))
    t.result(result(4, device="b"))
    rep = t.report()
    assert [d.device for d in rep.devices] == ["a", "b"]
    assert [(g.device, g.first) for g in rep.gaps] == [("b", 3)]


def test_an_id_that_contradicts_the_payload_is_invalid() -> None:
    t = Tracker()
    assert t.result(result(2, rid="cam-01-5-3")).status == "invalid"
    assert t.report().invalid == 1


def test_availability_and_events() -> None:
    t = Tracker()
    assert t.status("cam-01", "online") == "online"
    assert t.status("cam-01", "online") is None
    assert t.status("cam-01", "offline") == "offline"
    ev = EventPayload(
        id=f"cam-01-{BOOT}-e1", device="cam-01", at="x", event="outbox_dropped", detail={"count": 7}
    )
    assert t.event(ev) and not t.event(ev)
    (dev,) = t.report().devices
    assert (dev.online, dev.offline_count, dev.events, dev.dropped_reported) == (False, 1, 1, 7)


def test_every_kind_of_loss_is_counted_and_a_repeated_range_once() -> None:
    """`results_dropped` counts as much as `outbox_dropped`; a report that repeats the range of one
    the broker had not acknowledged (same first_id, larger count) replaces it instead of adding."""
    t = Tracker()

    def ev(n: int, kind: str, **detail: object) -> EventPayload:
        return EventPayload(id=f"cam-01-{BOOT}-e{n}", device="cam-01", at="x", event=kind, detail=detail)

    t.event(ev(1, "outbox_dropped", count=3, first_id="a1", last_id="a3"))
    t.event(ev(2, "results_dropped", cause="expired", count=2, first_id="b1", last_id="b2"))
    t.event(ev(3, "results_dropped", cause="expired", count=5, first_id="b1", last_id="b5"))  # repeats e2
    t.event(ev(4, "results_dropped", cause="storage", count=4))
    t.event(ev(5, "outbox_damaged", count=None, first_id=None))
    (dev,) = t.report().devices
    assert dev.dropped_reported == 3 + 5 + 4
    assert dict(dev.dropped_by_cause) == {"full": 3, "expired": 5, "storage": 4, "damaged": 0}


def test_results_lost_with_a_damaged_outbox_at_the_end_of_a_boot_become_a_gap() -> None:
    """No later seq reveals them; the outbox_damaged event's boot and last_seq do."""
    t = Tracker()
    for s in (1, 2, 3):
        t.result(result(s))
    assert t.report().complete
    detail = {"count": None, "boot": BOOT, "last_seq": 7}
    ev = EventPayload(
        id=f"cam-01-{BOOT + 1}-e1", device="cam-01", at="x", event="outbox_damaged", detail=detail
    )
    assert t.event(ev)
    assert [(g.first, g.last) for g in t.report().gaps] == [(4, 7)]


def test_report_as_dict_is_json() -> None:
    t = Tracker()
    for s in (1, 3):
        t.result(result(s))
    d = json.loads(json.dumps(t.report().to_dict()))
    assert d["complete"] is False and d["devices"][0]["boots"][0]["gaps"] == [[2, 2]]


def test_many_results_keep_few_intervals() -> None:
    t = Tracker()
    for s in range(1, 20001):
        if s % 1000:
            t.result(result(s))
    rep = t.report()
    assert rep.missing == 19 and len(rep.gaps) == 19


# --------------------------------------------------------------------------- store


def test_store_is_idempotent_by_id_and_finds_gaps(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.db")
    assert [store.add(result(s)) for s in (1, 2, 2, 4)] == [True, True, False, True]
    assert store.count() == 3
    assert store.get(f"cam-01-{BOOT}-4") == result(4)
    assert [(g.first, g.last) for g in store.gaps()] == [(3, 3)]
    store.close()
    again = ResultStore(tmp_path / "r.db")  # a restarted consumer sees the same rows
    assert not again.add(result(1)) and again.add(result(3)) and again.gaps() == []
