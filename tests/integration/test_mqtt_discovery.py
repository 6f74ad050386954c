"""Home Assistant discovery over a real broker: retained on connect, re-sent on HA's birth and after
a reload, what went away removed (also by a later process), forgotten; the retained `last` results."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from edge.config.settings import TaskSettings
from edge.mqtt.discovery import Discovery, discovery_payload, forget_device
from edge.mqtt.last_result import LastResults
from tests.integration.mqtt_stack import DEVICE, make_stack, result_builder
from tests.plugins.mosquitto import Broker, Collector

CONFIG = f"homeassistant/device/{DEVICE}/config"


def test_discovery_published_resent_on_ha_birth_and_forgotten(
    mosquitto: Broker, collector_factory: Any, tmp_path: Path
) -> None:
    stack = make_stack(mosquitto.mqtt_settings(discovery=True), tmp_path / "o.db")
    tasks = [TaskSettings(name="caption", publish_image=True)]
    discovery = Discovery(
        stack.client,
        stack.topics,
        lambda: discovery_payload(stack.topics, tasks),
        resend_delay_s=(0.2, 0.4),
        rng=random.Random(1),
    )
    discovery.attach()
    ha: Collector = collector_factory(mosquitto, "homeassistant/#")
    stack.start()
    try:
        ha.wait_topic(CONFIG)  # published on connect
        late: Collector = collector_factory(mosquitto, CONFIG)
        (first,) = late.wait_topic(CONFIG)
        assert first.retain and first.json()["components"]["main_caption_text"]["platform"] == "sensor"
        ha.clear()
        t0 = time.monotonic()
        ha.publish("homeassistant/status", b"online")  # Home Assistant restarted
        resent = ha.wait_topic(CONFIG)[-1]
        assert 0.15 <= resent.at - t0 < 5  # after the random delay, not at once
        assert resent.json() == first.json()
        ha.publish("homeassistant/status", b"offline")  # HA's will: nothing to do
        time.sleep(0.6)
        assert len(ha.on(CONFIG)) == 1

        # `edge mqtt forget` runs as its own client while the daemon stays connected.
        assert forget_device(mosquitto.mqtt_settings(), DEVICE)
        (removal,) = ha.wait_topic(CONFIG, 2)[1:]
        assert removal.payload == b""
        assert stack.client.is_connected
    finally:
        discovery.cancel()
        stack.stop()
    gone: Collector = collector_factory(mosquitto, CONFIG)
    time.sleep(0.3)
    assert gone.on(CONFIG) == []  # no retained config left: HA removed the device


def _discovery(stack: Any, tasks: list[TaskSettings], cameras: list[str]) -> Discovery:
    return Discovery(
        stack.client,
        stack.topics,
        lambda: discovery_payload(stack.topics, tasks, cameras=cameras),
        resend_delay_s=(0.2, 0.4),
    )


def test_a_later_run_removes_what_an_earlier_one_published(
    mosquitto: Broker, collector_factory: Any, tmp_path: Path
) -> None:
    """The second process knows nothing of the first: it reads the retained config back at connect
    and sends a platform stub for each component that went away (HA deletes those entities)."""
    tasks = [TaskSettings(name="caption"), TaskSettings(name="count", kind="ask", prompt="How many?")]
    first = make_stack(mosquitto.mqtt_settings(discovery=True), tmp_path / "a.db")
    _discovery(first, tasks, ["front", "back"]).attach()
    ha: Collector = collector_factory(mosquitto, CONFIG)
    first.start()
    try:
        before = ha.wait_topic(CONFIG)[-1].json()["components"]
        assert "back_describe_now" in before and "front_count_text" in before
    finally:
        first.stop()

    ha.clear()
    second = make_stack(mosquitto.mqtt_settings(discovery=True), tmp_path / "b.db")
    cameras = ["front"]
    discovery = _discovery(second, tasks[:1], cameras)
    discovery.attach()
    second.start()
    try:
        final = ha.wait_for(
            lambda ms: any(
                m.json()["components"].get("back_describe_now") == {"platform": "button"} for m in ms
            ),
            what="removal stubs",
        )[-1].json()["components"]
        assert final["back_caption_text"] == {"platform": "sensor"}
        assert final["front_count_latency"] == {"platform": "sensor"}
        assert (
            final["front_caption_text"]["platform"] == "sensor"
            and "state_topic" in final["front_caption_text"]
        )
        assert set(final) == set(before)

        # a reload that adds a camera re-sends at once; one that changes nothing sends nothing
        ha.clear()
        cameras.append("side")
        assert discovery.refresh()
        added = ha.wait_topic(CONFIG)[-1].json()["components"]
        assert "side_describe_now" in added and added["back_describe_now"] == {"platform": "button"}
        assert not discovery.refresh()
        time.sleep(0.3)
        assert len(ha.on(CONFIG)) == 1
    finally:
        discovery.cancel()
        second.stop()


def test_last_result_is_retained_and_sent_again_on_connect(
    mosquitto: Broker, collector_factory: Any, tmp_path: Path
) -> None:
    stack = make_stack(mosquitto.mqtt_settings(), tmp_path / "o.db")
    last = LastResults(stack.client, stack.topics)
    last.attach()
    stack.start()
    topic = f"edge/{DEVICE}/main/caption/last"
    try:
        assert stack.client.wait_connected(10)
        last.publish(result_builder(text="first")(1, f"{DEVICE}-1-1"))
        last.publish(result_builder(text="second")(2, f"{DEVICE}-1-2"))
        late: Collector = collector_factory(mosquitto, topic)  # a reader that starts later
        (got,) = late.wait_topic(topic)
        assert got.retain and got.json()["text"] == "second 2" and got.content_type == "application/json"
        mosquitto.kill()  # the broker loses its retained messages (no clean save)
        mosquitto.start()
        assert stack.client.wait_connected(20)
        again: Collector = collector_factory(mosquitto, topic)
        assert again.wait_topic(topic, timeout=20)[-1].json()["text"] == "second 2"

        watcher: Collector = collector_factory(mosquitto, topic)  # sees the clear pass through the broker
        last.clear([("main", "caption")])
        watcher.wait_for(lambda ms: any(not m.payload for m in ms), 20, "the retained last cleared")
        gone: Collector = collector_factory(mosquitto, topic)
        time.sleep(0.5)
        assert [m for m in gone.on(topic) if m.payload] == []
    finally:
        stack.stop()
