"""Publisher and client faults against a real mosquitto: a disk that fills and frees, two clients with
one client id (session takeover), and how quickly the client is back after an outage."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from edge.mqtt.client import RECONNECT_MAX_S, MqttClient
from edge.mqtt.outbox import Outbox
from edge.mqtt.publisher import Publisher
from edge.mqtt.topics import Topics
from tests.integration.mqtt_stack import DEVICE, result_builder, wait_until
from tests.plugins.mosquitto import Broker, Collector

ROOT = f"edge/{DEVICE}"


def test_full_disk_sends_directly_while_connected_holds_while_not_and_resumes(
    mosquitto: Broker, collector_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A disk that stays full costs durability, not delivery: while the broker is there results go to
    it directly (marked persisted=false); while it is away they are held, and sent when it returns
    though the disk is still full (before: nothing until the disk freed)."""
    # persistent: the broker keeps what arrives after its restart before this subscriber is back
    sub: Collector = collector_factory(mosquitto, f"{ROOT}/#", persistent=True)
    free = [100 << 20]
    settings = mosquitto.mqtt_settings()
    topics = Topics.from_settings(settings, DEVICE)
    client = MqttClient(settings, topics, reconnect_min_s=0.2, reconnect_max_s=1.0)
    outbox = Outbox(tmp_path / "o.db", 64 << 20, reserve_bytes=1 << 20, free_bytes=lambda: free[0])
    pub = Publisher(client, outbox, topics, storage_retry_s=0.2, drop_report_interval_s=0.0)
    client.start()
    pub.start()
    try:
        assert client.wait_connected(10)
        build = result_builder()
        assert pub.publish_result(build) is not None
        sub.wait_topic(f"{ROOT}/main/caption/result", 1)
        free[0] = 10_000  # the disk is full, and stays full
        sent = [pub.publish_result(build) for _ in range(3)]
        assert all(r is not None for r in sent)  # sent directly: no exception reaches the job thread
        pub.publish_event(pub.event("job_failed", "x"))  # nor from the error path
        direct = sub.wait_topic(f"{ROOT}/main/caption/result", 4)[1:]
        assert [m.json()["id"] for m in direct] == [r.id for r in sent if r is not None]
        assert all(m.user.get("persisted") == "false" for m in direct)
        sub.wait_for(
            lambda ms: "storage_full" in [m.json().get("event") for m in ms if m.topic.endswith("/event")]
        )
        (ev,) = [m.json() for m in sub.on(f"{ROOT}/event") if m.json()["event"] == "storage_full"]
        assert ev["detail"]["free_bytes"] == 10_000
        wait_until(lambda: pub.stats().unstored_sent >= 5, what="PUBACKs of the unstored sends")
        st = pub.stats()
        assert (st.storage, st.held) == ("full", 0)
        lines = [r for r in caplog.records if "storage full" in r.getMessage()]
        assert (
            len(lines) == 1
            and str(outbox.path) in lines[0].getMessage()
            and "10000 bytes free" in lines[0].getMessage()
        )
        # The broker goes away: held in memory; it comes back: sent, though the disk is still full.
        mosquitto.stop()
        wait_until(lambda: not client.is_connected, what="disconnected")
        away = [pub.publish_result(build) for _ in range(2)]
        assert away == [None, None] and pub.stats().held == 2
        mosquitto.start()
        got = sub.wait_topic(f"{ROOT}/main/caption/result", 6, timeout=30)
        assert pub.stats().storage == "full" and pub.stats().held == 0
        free[0] = 100 << 20  # space returns: storing resumes by itself
        assert pub.publish_result(build) is not None
        got = sub.wait_topic(f"{ROOT}/main/caption/result", 7, timeout=30)
        wait_until(lambda: pub.stats().storage == "ok", what="storage ok")
        kinds = [m.json()["event"] for m in sub.on(f"{ROOT}/event")]
        wait_until(lambda: "recovered" in [m.json()["event"] for m in sub.on(f"{ROOT}/event")])
    finally:
        pub.stop(2)
        client.stop()
        outbox.close()
    seqs = sorted({m.json()["seq"] for m in got})
    assert seqs == [1, 2, 3, 4, 5, 6, 7]  # one sequence for stored and unstored: no gap, nothing lost
    assert "persisted" not in got[-1].user  # stored again
    assert "job_failed" in kinds


def test_held_results_beyond_the_bound_are_reported_lost(
    mosquitto: Broker, collector_factory: Any, tmp_path: Path
) -> None:
    sub: Collector = collector_factory(mosquitto, f"{ROOT}/event")
    free = [0]
    settings = mosquitto.mqtt_settings()
    topics = Topics.from_settings(settings, DEVICE)
    client = MqttClient(settings, topics, reconnect_min_s=0.2, reconnect_max_s=1.0)
    outbox = Outbox(tmp_path / "o.db", 64 << 20, reserve_bytes=1 << 20, free_bytes=lambda: free[0])
    pub = Publisher(client, outbox, topics, storage_retry_s=0.2, hold_max=4)
    pub.start()
    try:
        for _ in range(10):  # no broker and no disk: held, the oldest given up beyond 4
            pub.publish_result(result_builder())
        free[0] = 100 << 20
        client.start()
        wait_until(lambda: any(m.json()["event"] == "results_dropped" for m in sub.messages))
    finally:
        pub.stop(2)
        client.stop()
        outbox.close()
    (ev,) = [m.json() for m in sub.messages if m.json()["event"] == "results_dropped"]
    assert ev["detail"]["cause"] == "storage" and ev["detail"]["count"] == 7  # 10 + storage_full event - 4


def test_session_takeover_is_detected_and_backed_off(
    mosquitto: Broker, collector_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two daemons with one device_id: the broker drops one for the other. Before: ~1 fight a second."""
    sub: Collector = collector_factory(mosquitto, f"{ROOT}/event")
    settings = mosquitto.mqtt_settings()
    stacks = []
    for i in range(2):
        topics = Topics.from_settings(settings, DEVICE)
        client = MqttClient(settings, topics, reconnect_min_s=0.5, reconnect_max_s=1.0, takeover_backoff_s=4)
        outbox = Outbox(tmp_path / f"o{i}.db", 1 << 20)
        pub = Publisher(client, outbox, topics)
        client.start()
        pub.start()
        stacks.append((client, pub, outbox))
    try:
        wait_until(lambda: any(c.takeovers for c, _, _ in stacks), timeout=20, what="takeover detected")
        detected = time.monotonic()
        connects = sum(c.connects for c, _, _ in stacks)
        time.sleep(8)
        later = sum(c.connects for c, _, _ in stacks)
        sub.wait_topic(f"{ROOT}/event", timeout=15)
    finally:
        for client, pub, outbox in stacks:
            pub.stop(1)
            client.stop()
            outbox.close()
    lines = [r.getMessage() for r in caplog.records if "session taken over" in r.getMessage()]
    assert 1 <= len(lines) <= 2 and "device_id" in lines[0]  # one line per client and episode
    assert later - connects <= 4, f"still fighting: {later - connects} connects in 8 s after detection"
    ev = [m.json() for m in sub.messages if m.json()["event"] == "session_takeover"]
    assert ev and ev[0]["detail"]["client_id"] == f"edge-{DEVICE}"
    assert detected


def test_reconnect_after_a_long_outage_is_quick(mosquitto: Broker) -> None:
    """The reconnect delay is capped at RECONNECT_MAX_S: back within seconds of the broker, not a minute."""
    assert RECONNECT_MAX_S <= 5
    settings = mosquitto.mqtt_settings()
    client = MqttClient(settings, Topics.from_settings(settings, DEVICE))  # the daemon's defaults
    client.start()
    try:
        assert client.wait_connected(10)
        mosquitto.stop()
        time.sleep(20)  # long enough for 1+2+4+8 s of backoff and more
        mosquitto.start()  # returns once it listens: its own start-up time is not the client's
        back = time.monotonic()
        assert client.wait_connected(60)
        took = time.monotonic() - back
    finally:
        client.stop()
    logging.getLogger(__name__).warning("reconnected %.1f s after the broker came back", took)
    print(f"reconnected {took:.1f} s after a 20 s outage")
    assert took <= RECONNECT_MAX_S + 2
