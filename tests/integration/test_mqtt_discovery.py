"""Home Assistant discovery over a real broker: retained on connect, re-sent on HA's birth, forgotten."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from edge.config.settings import TaskSettings
from edge.mqtt.discovery import Discovery, discovery_payload, forget_device
from tests.integration.mqtt_stack import DEVICE, make_stack
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
