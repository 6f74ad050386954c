"""The wire form of each message, built without a broker, a disk or a thread: ids, topics, user
properties, expiry, and the events that report the outbox's losses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.core.messages import ModelPayload, ResultPayload, StatsPayload, utc_iso
from edge.mqtt.message_builder import MessageBuilder
from edge.mqtt.outbox_records import Damage, DropReport
from edge.mqtt.topics import Topics

BOOT = 7


def builder(**kw: object) -> MessageBuilder:
    return MessageBuilder(Topics("edge", "cam-1"), BOOT, clock=lambda: 1_700_000_000.0, **kw)  # type: ignore[arg-type]


def result(b: MessageBuilder, seq: int, rid: str | None = None) -> ResultPayload:
    return ResultPayload(
        id=rid or b.result_id(seq),
        device="cam-1",
        camera="main",
        task="caption",
        seq=seq,
        captured_at=utc_iso(1_700_000_000.0),
        published_at=utc_iso(1_700_000_000.0),
        trigger="interval",
        text="a cat",
        model=ModelPayload(name="phi", backend="ort-genai", provider="cpu"),
        stats=StatsPayload(
            prompt_tokens=1,
            image_tokens=0,
            new_tokens=1,
            ttft_ms=1.0,
            decode_tok_s=1.0,
            total_ms=1.0,
            stop_reason="eos",
        ),
    )


def test_a_result_carries_its_id_topic_and_properties_in_order() -> None:
    b = builder(qos=1, message_expiry_s=60, user_properties=(("site", "north"),))
    m = b.result(result(b, 3), 3, (("extra", "1"),))
    assert m.msg_id == f"cam-1-{BOOT}-3" and m.kind == "result"
    assert m.topic == "edge/cam-1/main/caption/result"
    assert m.user_properties == (
        ("device", "cam-1"),
        ("model", "phi"),
        ("backend", "ort-genai"),
        ("id", f"cam-1-{BOOT}-3"),
        ("site", "north"),
        ("extra", "1"),
    )
    assert m.ttl_s == 60.0 and m.content_type == "application/json"
    assert json.loads(m.payload)["seq"] == 3


def test_a_result_that_does_not_carry_its_seq_and_id_is_refused() -> None:
    b = builder()
    with pytest.raises(ValueError, match="seq and id"):
        b.result(result(b, 3), 4)
    with pytest.raises(ValueError, match="seq and id"):
        b.result(result(b, 3, rid="someone-else-3"), 3)


def test_no_expiry_means_the_outbox_keeps_a_message_for_ever() -> None:
    assert builder().ttl_s() is None
    assert builder(message_expiry_s=0).image("main", "caption", "r", b"j").ttl_s is None


def test_images_name_their_result_and_their_key_frame() -> None:
    b = builder(user_properties=(("site", "north"),))
    one = b.image("main", "caption", "r-1", b"jpeg")
    first = b.image("main", "caption", "r-1", b"jpeg", part=0)
    assert one.msg_id == "r-1-image" and first.msg_id == "r-1-image-0"
    assert one.topic == "edge/cam-1/main/caption/image" and one.content_type == "image/jpeg"
    assert one.user_properties == (("id", "r-1"), ("site", "north"))
    assert first.user_properties == (("id", "r-1"), ("frame", "0"), ("site", "north"))


def test_events_are_numbered_per_boot_and_go_to_the_event_topic() -> None:
    b = builder()
    first, second = b.event("camera_lost", "no frame"), b.event("camera_back")
    assert (first.id, second.id) == (f"cam-1-{BOOT}-e1", f"cam-1-{BOOT}-e2")
    m = b.event_message(first)
    assert m.topic == "edge/cam-1/event" and m.msg_id == first.id and m.kind == "event"
    assert json.loads(m.payload)["reason"] == "no frame"


def test_loss_reports_name_their_cause() -> None:
    b = builder()
    full = DropReport(
        count=3, bytes=300, first_id="a", last_id="c", reason="full", new=2, unacknowledged_reports=1
    )
    doc = json.loads(b.loss_report(full, None).payload)
    assert doc["event"] == "outbox_dropped"
    assert doc["detail"] == {
        "count": 3,
        "bytes": 300,
        "first_id": "a",
        "last_id": "c",
        "new": 2,
        "repeats_reports": 1,
    }
    expired = json.loads(b.loss_report(DropReport(2, 20, "a", "b", reason="expired"), None).payload)
    assert expired["event"] == "results_dropped" and expired["detail"]["cause"] == "expired"
    assert expired["reason"] == "2 message(s) expired unpublished"


def test_a_damaged_file_report_says_what_it_held_even_when_its_rows_could_not_be_read() -> None:
    b = builder()
    damage = Damage(Path("/x/o.db.corrupt-1"), None, None, None, None, boot=5, last_seq=41)
    doc = json.loads(b.loss_report(DropReport(-1, 0, None, None, reason="damaged"), damage).payload)
    assert doc["event"] == "outbox_damaged"
    assert "an unknown number of" in doc["reason"]
    assert doc["detail"]["count"] is None
    assert (doc["detail"]["boot"], doc["detail"]["last_seq"]) == (5, 41)
    assert doc["detail"]["aside"] == "/x/o.db.corrupt-1"
