"""Fleets on an existing broker: shared subscriptions and the board-local bridge, proven complete
with the consumer library's tracker. Results come from the daemon's own Outbox + Publisher."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from edge.consumer import Delivery, Observation, Tracker
from edge.consumer.stream import RESULTS, Consumer
from tests.helpers.bridge import render_bridge
from tests.integration.mqtt_stack import make_stack, result_builder, wait_until
from tests.plugins.mosquitto import Broker, BrokerFactory, TlsFiles


def test_shared_subscription_splits_a_fleet_with_nothing_lost(mosquitto: Broker, tmp_path: Path) -> None:
    tracker = Tracker(from_start=True)  # one tracker fed by both members: the union must be whole
    share: Counter[str] = Counter()
    lock = threading.Lock()

    def member(name: str) -> Consumer:
        def on_delivery(d: Delivery, obs: Observation | None) -> None:
            if obs is not None:
                with lock:
                    share[name] += 1

        return Consumer(
            mosquitto.mqtt_settings(),
            on_delivery,
            client_id=f"t-{name}",
            tracker=tracker,
            what=RESULTS,
            group="sink",
        ).start()

    consumers = [member("a"), member("b")]
    devices = [f"cam-{i:02d}" for i in range(4)]
    stacks = [
        make_stack(mosquitto.mqtt_settings(), tmp_path / f"{d}.db", device_id=d).start() for d in devices
    ]
    try:
        for _ in range(50):
            for s in stacks:
                s.publisher.publish_result(result_builder(device=s.topics.device_id))
        wait_until(lambda: tracker.report().results >= 200, timeout=30, what="200 distinct results")
    finally:
        for s in stacks:
            s.stop()
        for c in consumers:
            c.stop()
    rep = tracker.report()
    assert rep.complete and rep.results == 200, rep.to_dict()
    assert [b.last_seq for b in rep.boots] == [50] * 4
    # split, not copied: each member got a real share and together (minus redeliveries) each once
    assert share["a"] > 20 and share["b"] > 20
    assert share["a"] + share["b"] == rep.results + rep.duplicates


def test_bridge_carries_every_result_across_a_cut_link(
    broker_factory: BrokerFactory, tls_files: TlsFiles, tmp_path: Path
) -> None:
    central = broker_factory(tls=tls_files)  # the fleet's broker, over TLS as across a WAN
    bridge = render_bridge(
        {
            "persistence": None,  # the fixture's own persistence lines stay (its directory)
            "persistence_location": None,
            "autosave_interval": None,
            "address": f"{central.host}:{central.port}",
            "remote_clientid": "edge-bridge-t1",
            "remote_username": None,
            "remote_password": None,
            "bridge_cafile": str(tls_files.ca),
            "restart_timeout": "1 2",  # the test waits for the reconnect: keep it short
        }
    )
    local = broker_factory(extra_config=bridge)
    tracker = Tracker(from_start=True)
    sink = Consumer(
        central.mqtt_settings(),
        client_id="t-central-sink",
        tracker=tracker,
        what=RESULTS,
        session_expiry_s=3600,
    ).start()
    stack = make_stack(local.mqtt_settings(), tmp_path / "o.db").start()
    build = result_builder()
    try:
        for _ in range(50):
            stack.publisher.publish_result(build)
        wait_until(lambda: tracker.report().results >= 50, timeout=20, what="50 results over the bridge")
        central.stop()  # the WAN is cut
        for _ in range(200):
            stack.publisher.publish_result(build)
        # the daemon's outbox still drains: the board's broker holds them for the bridge
        wait_until(
            lambda: stack.outbox.stats().depth == 0, timeout=20, what="outbox drained into the local broker"
        )
        time.sleep(1.5)
        central.start()  # the link comes back; the bridge reconnects and forwards its queue
        for _ in range(50):
            stack.publisher.publish_result(build)
        wait_until(
            lambda: tracker.report().results >= 300, timeout=40, what="300 distinct results after the cut"
        )
    finally:
        stack.stop()
        sink.stop()
    rep = tracker.report()
    assert rep.complete and rep.results == 300 and rep.boots[0].last_seq == 300, rep.to_dict()
    assert sink.subscriber.connects >= 2
    assert "edge-central" in local.log_text()
