"""The link budget against a real broker: the client's byte count agrees with what mosquitto says it
received, and images past the budget are dropped (or deferred to the next day) while every result
goes out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge.config.settings import LinkSettings
from edge.mqtt.budget import LinkBudget
from tests.helpers.broker_bytes import SYS_INTERVAL, BrokerBytes
from tests.integration.mqtt_stack import DEVICE, make_stack, result_builder, wait_until
from tests.plugins.mosquitto import Collector

ROOT = f"edge/{DEVICE}"
JPEG = b"\xff\xd8" + bytes(range(256)) * 16 + b"\xff\xd9"  # 4 KiB stands in for a frame


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def test_client_byte_count_matches_the_broker(broker_factory: Any, tmp_path: Path) -> None:
    broker = broker_factory(extra_config=SYS_INTERVAL)
    meter = BrokerBytes(broker)
    try:
        before = meter.settled()
        budget = LinkBudget(LinkSettings())
        stack = make_stack(broker.mqtt_settings(), tmp_path / "o.db")
        stack.client.set_byte_counter(budget.count)
        stack.start()
        assert stack.client.wait_connected(10)
        build = result_builder()
        for i in range(30):
            payload = stack.publisher.publish_result(build)
            assert payload is not None
            if i % 3 == 0:
                stack.publisher.publish_image("main", "caption", payload.id, JPEG)
        stack.publisher.publish_event(stack.publisher.event("recovered", "a test event"))
        wait_until(lambda: stack.outbox.stats().depth == 0, what="outbox drained")
        stack.stop()
        after = meter.settled()
        received = after - before
    finally:
        meter.stop()
    counted = budget.snapshot().bytes_today
    # What the client cannot see: DISCONNECT (2 bytes) and its CONNECT, which it estimates.
    assert abs(received - counted) <= 64, (received, counted)
    assert budget.snapshot().images_sent == 0  # no gate on this stack: images are not its business


def test_images_past_the_budget_are_dropped_and_counted_results_all_arrive(
    mosquitto: Any, collector_factory: Any, tmp_path: Path
) -> None:
    sub: Collector = collector_factory(mosquitto, f"{ROOT}/#")
    budget = LinkBudget(LinkSettings(max_mb_per_day=0.04, reserve_kb=10))  # images get ~30 KB
    stack = make_stack(mosquitto.mqtt_settings(), tmp_path / "o.db", image_gate=budget)
    stack.client.set_byte_counter(budget.count)
    stack.start()
    try:
        assert stack.client.wait_connected(10)
        build = result_builder()
        ids = []
        for _ in range(20):
            payload = stack.publisher.publish_result(build)
            assert payload is not None
            ids.append(payload.id)
            stack.publisher.publish_image("main", "caption", payload.id, JPEG)
        wait_until(lambda: stack.outbox.stats().depth == 0, what="outbox drained")
        results = sub.wait_topic(f"{ROOT}/main/caption/result", 20)
    finally:
        stack.stop()
    assert [m.json()["id"] for m in results] == ids
    snap = budget.snapshot()
    images = sub.on(f"{ROOT}/main/caption/image")
    assert snap.images_sent == len(images) > 0
    assert snap.images_dropped == 20 - len(images) > 0
    assert snap.bytes_today <= 0.04 * 2**20
    # the images that went out are the first ones: the budget was spent, then nothing more
    assert [m.user["id"] for m in images] == ids[: len(images)]


def test_deferred_images_wait_in_the_outbox_for_the_next_day(
    mosquitto: Any, collector_factory: Any, tmp_path: Path
) -> None:
    sub: Collector = collector_factory(mosquitto, f"{ROOT}/#")
    clock = Clock()
    budget = LinkBudget(LinkSettings(max_mb_per_day=0.03, reserve_kb=2, over_budget="defer"), clock=clock)
    stack = make_stack(mosquitto.mqtt_settings(), tmp_path / "o.db", image_gate=budget)
    stack.client.set_byte_counter(budget.count)
    stack.start()
    try:
        assert stack.client.wait_connected(10)
        build = result_builder()
        ids = []
        for _ in range(10):
            payload = stack.publisher.publish_result(build)
            assert payload is not None
            ids.append(payload.id)
            stack.publisher.publish_image("main", "caption", payload.id, JPEG)
        sub.wait_topic(f"{ROOT}/main/caption/result", 10)
        wait_until(
            lambda: (s := budget.snapshot()).images_sent + s.images_deferred == 10, what="every image judged"
        )
        deferred, sent_today = budget.snapshot().images_deferred, budget.snapshot().images_sent
        assert deferred > 0 and sent_today > 0
        wait_until(lambda: stack.outbox.stats().depth == deferred, what="only deferred images left")
        assert len(sub.on(f"{ROOT}/main/caption/image")) == sent_today
        clock.t += 86400  # midnight passed: a fresh budget
        stack.publisher._wake.set()
        sub.wait_topic(f"{ROOT}/main/caption/image", 10, timeout=20)
        wait_until(lambda: stack.outbox.stats().depth == 0, what="outbox drained")
    finally:
        stack.stop()
    images = sub.on(f"{ROOT}/main/caption/image")
    assert sorted(m.user["id"] for m in images) == sorted(ids)
    assert budget.snapshot().images_sent == deferred and budget.snapshot().images_deferred == 0
