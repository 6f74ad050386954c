"""The daily link budget: wire sizes, admission of images, the local day, persistence."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config.settings import LinkSettings
from edge.core.messages import LinkPayload
from edge.mqtt.budget import IMAGE_OVERHEAD_BYTES, LinkBudget, local_day
from edge.mqtt.wire import publish_bytes, varint_len


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def noon() -> float:
    lt = time.localtime()
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 12, 0, 0, 0, 0, -1))


def test_varint_and_publish_sizes() -> None:
    assert [varint_len(n) for n in (0, 127, 128, 16383, 16384, 2097152)] == [1, 1, 2, 2, 3, 4]
    # 3.1.1, QoS 0: 1 + remaining length (1) + 2 + topic + payload
    assert publish_bytes("a/b", b"xyz", 0, v5=False) == 1 + 1 + 2 + 3 + 3
    # QoS 1 adds the packet id; MQTT 5 adds the properties' length (0 -> one byte)
    assert publish_bytes("a/b", b"xyz", 1, v5=True) == 1 + 1 + 2 + 3 + 2 + 1 + 3
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    packed = len(props.pack())
    assert publish_bytes("a/b", "é", 1, v5=True, properties=props) == 1 + 1 + 2 + 3 + 2 + packed + 2
    big = publish_bytes("t", b"x" * 20000, 1, v5=False)
    assert big == 1 + 3 + 2 + 1 + 2 + 20000


def test_unlimited_counts_but_never_refuses() -> None:
    b = LinkBudget(LinkSettings())
    b.count(10_000_000)
    assert b.admit_image(500_000) == "send"
    snap = b.snapshot()
    assert snap.budget_bytes is None and snap.bytes_today == 10_000_000 and snap.images_sent == 1


def test_images_stop_at_budget_minus_reserve_and_are_counted() -> None:
    spent: list[LinkPayload] = []
    b = LinkBudget(
        LinkSettings(max_mb_per_day=0.01, reserve_kb=2), clock=Clock(noon()), on_spent=spent.append
    )
    budget = int(0.01 * 2**20)
    room = budget - 2048
    assert b.room() == room
    image = 3000
    verdicts = []
    for _ in range(6):
        v = b.admit_image(image)
        verdicts.append(v)
        if v == "send":
            b.count(image + IMAGE_OVERHEAD_BYTES)
    sent = room // (image + IMAGE_OVERHEAD_BYTES)
    assert verdicts == ["send"] * sent + ["drop"] * (6 - sent)
    snap = b.snapshot()
    assert (snap.images_sent, snap.images_dropped, snap.images_deferred) == (sent, 6 - sent, 0)
    assert len(spent) == 1  # said once a day, not per image
    b.count(5000)  # results always go out, even past the budget: never refused
    assert b.snapshot().bytes_today > room


def test_defer_keeps_the_count_and_a_new_day_sends_them() -> None:
    clock = Clock(noon())
    b = LinkBudget(LinkSettings(max_mb_per_day=0.005, reserve_kb=0, over_budget="defer"), clock=clock)
    b.count(int(0.005 * 2**20))
    assert b.admit_image(1000) == "defer"
    assert b.admit_image(1000) == "defer"
    assert b.snapshot().images_deferred == 2
    assert b.admit_image(1000, deferred=True) == "defer"  # asked again the same day: still waiting
    assert b.snapshot().images_deferred == 2
    clock.t += 86400
    assert b.snapshot().day == local_day(clock.t) and b.snapshot().bytes_today == 0
    assert b.admit_image(1000, deferred=True) == "send"
    assert b.snapshot().images_sent == 1


def test_the_day_survives_a_restart_but_not_midnight(tmp_path: Path) -> None:
    path = tmp_path / "outbox.link.json"
    clock = Clock(noon())
    b = LinkBudget(LinkSettings(max_mb_per_day=1), path, clock=clock)
    b.count(12345)
    b.admit_image(10)
    b.save(force=True)
    again = LinkBudget(LinkSettings(max_mb_per_day=1), path, clock=clock)
    assert again.snapshot().bytes_today == 12345 and again.snapshot().images_sent == 1
    tomorrow = LinkBudget(LinkSettings(max_mb_per_day=1), path, clock=Clock(clock.t + 86400))
    assert tomorrow.snapshot().bytes_today == 0


def test_a_damaged_record_starts_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "outbox.link.json"
    path.write_text("{not json")
    assert LinkBudget(LinkSettings(max_mb_per_day=1), path).snapshot().bytes_today == 0


@pytest.mark.parametrize("key", ["max_mb_per_day", "image_quality", "image_max_edge"])
def test_bad_link_settings_name_the_key(key: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=key):
        LinkSettings(**{key: -1})
