"""The full-disk path without a broker: a real outbox whose filesystem reports no free space, and a
fake client that records what would have been sent. Held while away, sent unstored while connected,
stored in order (and numbered without gaps) when the disk frees, losses beyond the bound reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from edge.mqtt.client import MqttClient
from edge.mqtt.message_builder import MessageBuilder
from edge.mqtt.outbox import Outbox
from edge.mqtt.outbox_records import OutboxMessage
from edge.mqtt.storage_hold import StorageHold
from edge.mqtt.topics import Topics


class Info:
    def __init__(self, mid: int) -> None:
        self.mid, self.rc = mid, 0


class Client:
    """Records publishes; `is_connected` is the test's to set."""

    def __init__(self, connected: bool) -> None:
        self.is_connected = connected
        self.sent: list[dict[str, Any]] = []

    def properties(self, **kw: Any) -> dict[str, Any]:
        return kw

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, properties: Any = None
    ) -> Info:
        self.sent.append({"topic": topic, "payload": payload, "qos": qos, "props": properties})
        return Info(len(self.sent))


def numbered(seq: int) -> OutboxMessage:
    return OutboxMessage(topic="edge/cam-1/main/caption/result", payload=b"x", msg_id=f"r{seq}")


@pytest.fixture
def disk() -> list[int]:
    return [0]  # free bytes on the outbox's filesystem; 0: full


@pytest.fixture
def outbox(tmp_path: Path, disk: list[int]) -> Any:
    with Outbox(tmp_path / "o.db", 1 << 20, reserve_bytes=1 << 16, free_bytes=lambda: disk[0]) as ob:
        ob.begin_boot()
        yield ob


def hold(client: Client, outbox: Outbox, **kw: Any) -> StorageHold:
    builder = MessageBuilder(Topics("edge", "cam-1"), outbox.boot)
    return StorageHold(cast(MqttClient, client), outbox, builder, lambda: None, retry_s=0.0, **kw)


def rows(outbox: Outbox) -> list[OutboxMessage]:
    return [s.message for s in outbox.next_batch(0, 100)]


def state(h: StorageHold) -> str:
    return h.storage  # read through a call: each read is a new look at the hold


def event_name(m: OutboxMessage) -> str:
    return str(json.loads(m.payload)["event"])


def test_while_away_a_full_disk_holds_results_unnumbered_and_stores_them_in_order_when_it_frees(
    outbox: Outbox, disk: list[int]
) -> None:
    client = Client(connected=False)
    h = hold(client, outbox)
    assert h.store_numbered(numbered) is False
    assert h.store_numbered(numbered) is False
    assert state(h) == "full" and h.held == 3  # the storage_full event, then both results
    # also handed to paho at once, which holds it for the reconnect
    assert [json.loads(s["payload"])["event"] for s in client.sent] == ["storage_full"]
    disk[0] = 1 << 30
    h.flush()
    stored = rows(outbox)
    assert [m.kind for m in stored] == ["event", "result", "result", "event"]
    assert [m.msg_id for m in stored[1:3]] == ["r1", "r2"]  # numbered when stored: no gap
    assert (event_name(stored[0]), event_name(stored[3])) == ("storage_full", "recovered")
    assert state(h) == "ok" and h.held == 0 and h.lost == 0


def test_held_messages_beyond_the_bound_are_given_up_and_reported(outbox: Outbox, disk: list[int]) -> None:
    h = hold(Client(connected=False), outbox, hold_max=2)
    for _ in range(4):
        h.store_numbered(numbered)
    assert h.held == 2 and h.lost == 3  # the oldest: the storage_full event and two results
    disk[0] = 1 << 30
    h.flush()
    events = [json.loads(m.payload) for m in rows(outbox) if m.kind == "event"]
    (dropped,) = [e for e in events if e["event"] == "results_dropped"]
    assert dropped["detail"] == {"cause": "storage", "count": 3, "results": 2}
    assert [m.msg_id for m in rows(outbox) if m.kind == "result"] == ["r1", "r2"]


def test_while_connected_a_full_disk_sends_directly_unstored_and_numbering_goes_on(
    outbox: Outbox, disk: list[int]
) -> None:
    client = Client(connected=True)
    h = hold(client, outbox)
    assert h.store_numbered(numbered) is True
    assert h.held == 0 and outbox.stats().depth == 0
    event, result = client.sent
    assert result["qos"] >= 1 and ("persisted", "false") in result["props"]["user"]
    assert h.ack(2, 0, "") is True and h.sent_unstored == 1
    assert h.ack(1, 135, "not authorized") is True and h.lost == 1  # a refused unstored send is lost
    assert h.ack(99, 0, "") is False  # not one of ours
    disk[0] = 1 << 30
    h.flush()
    assert state(h) == "full"  # nothing held to try the disk with: the next write tells
    assert h.store_numbered(numbered) is True
    h.flush()
    assert state(h) == "ok"
    assert [m.msg_id for m in rows(outbox) if m.kind == "result"] == ["r2"]  # after the unstored r1
    assert [event_name(m) for m in rows(outbox) if m.kind == "event"] == ["results_dropped", "recovered"]
