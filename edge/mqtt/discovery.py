"""Home Assistant MQTT device-based discovery (HA 2024.11+): one retained config for the device.

`{discovery_prefix}/device/{device_id}/config` describes the device and all its entities:
availability (our `status` topic), per (camera, task) a text sensor (state cut to HA's 255 characters, the
whole result as attributes, `expire_after` so a silent camera shows as unavailable) and a latency
sensor, a state sensor, the captioning switch (pause/resume through `cmd/set {"paused": ...}`: an HA
switch has one command topic), the describe-now button (`cmd/capture`), and the last image of tasks
that publish one. It is published on every connect and again, after a random short delay so a fleet
does not answer at once, when HA announces itself on `homeassistant/status` (`online`). `forget()`
publishes the empty retained payload that removes the device from HA.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as paho

from edge import __version__
from edge.config.settings import MqttSettings, TaskSettings
from edge.mqtt.client import MqttClient
from edge.mqtt.topics import DEFAULT_CAMERA, Topics

log = logging.getLogger(__name__)

HA_STATE_MAX = 255


def default_expire_after(max_interval_s: float, tasks: Sequence[TaskSettings]) -> int:
    """Three missed results: the longest gap a healthy device leaves between results, times 3."""
    gaps = [max_interval_s, *(t.interval_s for t in tasks if t.trigger == "interval" and t.interval_s)]
    return max(60, int(3 * max(gaps)))


def _task_components(
    topics: Topics, camera: str, task: TaskSettings, name_camera: bool, expire_after_s: int | None
) -> dict[str, dict[str, Any]]:
    """Last-result text sensor, latency sensor and (if published) the image of one (camera, task)."""
    dev, key = topics.device_id, f"{camera}_{task.name}"
    label = f"{camera} " if name_camera else ""
    result = topics.result(camera, task.name)
    text: dict[str, Any] = {
        "platform": "sensor",
        "name": f"{label}{task.name} text" if task.kind != "caption" else f"{label}last caption".capitalize(),
        "unique_id": f"{dev}_{key}_text",
        "state_topic": result,
        "value_template": f"{{{{ value_json.text[:{HA_STATE_MAX}] }}}}",
        "json_attributes_topic": result,
        "icon": "mdi:text-box-outline",
    }
    latency: dict[str, Any] = {
        "platform": "sensor",
        "name": f"{label}{task.name} latency",
        "unique_id": f"{dev}_{key}_latency",
        "state_topic": result,
        "value_template": "{{ value_json.stats.total_ms | round(0) }}",
        "unit_of_measurement": "ms",
        "device_class": "duration",
        "state_class": "measurement",
        "entity_category": "diagnostic",
    }
    if expire_after_s:
        text["expire_after"] = latency["expire_after"] = int(expire_after_s)
    out = {f"{key}_text": text, f"{key}_latency": latency}
    if task.publish_image:
        out[f"{key}_image"] = {
            "platform": "image",
            "name": f"{label}{task.name} image",
            "unique_id": f"{dev}_{key}_image",
            "image_topic": topics.image(camera, task.name),
            "content_type": "image/jpeg",
        }
    return out


def discovery_payload(
    topics: Topics,
    tasks: Sequence[TaskSettings],
    *,
    cameras: Sequence[str] = (DEFAULT_CAMERA,),
    device_name: str | None = None,
    model: str | None = None,
    expire_after_s: int | None = None,
) -> dict[str, Any]:
    """The device discovery document, with HA's full (unabbreviated) key names.

    Result entities are per (camera, task), as the result topics are; their ids carry the camera so a
    second camera adds entities instead of renaming the first camera's.
    """
    dev = topics.device_id
    components: dict[str, dict[str, Any]] = {}
    for camera in cameras:
        for task in tasks:
            components.update(_task_components(topics, camera, task, len(cameras) > 1, expire_after_s))
    components["state"] = {
        "platform": "sensor",
        "name": "State",
        "unique_id": f"{dev}_state",
        "state_topic": topics.state,
        "value_template": "{{ value_json.state }}",
        "entity_category": "diagnostic",
        "icon": "mdi:state-machine",
    }
    components["captioning"] = {
        "platform": "switch",
        "name": "Captioning",
        "unique_id": f"{dev}_captioning",
        "command_topic": topics.command("set"),
        "payload_on": json.dumps({"paused": False}),
        "payload_off": json.dumps({"paused": True}),
        "state_topic": topics.state,
        "value_template": "{{ 'OFF' if value_json.state == 'paused' else 'ON' }}",
        "state_on": "ON",
        "state_off": "OFF",
        "icon": "mdi:eye",
    }
    components["describe_now"] = {
        "platform": "button",
        "name": "Describe now",
        "unique_id": f"{dev}_describe_now",
        "command_topic": topics.command("capture"),
        "payload_press": "{}",
        "icon": "mdi:camera",
    }
    return {
        "device": {
            "identifiers": [f"edge-{dev}"],
            "name": device_name or dev,
            "manufacturer": "edge",
            "model": model or "edge vision agent",
            "sw_version": __version__,
        },
        "origin": {"name": "edge", "sw_version": __version__},
        "availability_topic": topics.status,
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
        "components": components,
    }


class Discovery:
    """Publishes the discovery config on connect and on HA's birth message; removes it on forget."""

    def __init__(
        self,
        client: MqttClient,
        topics: Topics,
        payload: Callable[[], dict[str, Any]],
        *,
        resend_delay_s: tuple[float, float] = (1.0, 10.0),
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.topics = topics
        self._payload = payload
        self.resend_delay_s = resend_delay_s
        self._rng = rng or random.Random()
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self.published = 0

    def attach(self) -> None:
        """Hook into the client: publish on every connect, re-publish on HA's birth."""
        self.client.add_connect_listener(self.publish)
        self.client.subscribe(self.topics.ha_status, self._on_ha_status)

    def publish(self) -> None:
        body = json.dumps(self._payload(), separators=(",", ":"))
        self.client.publish(self.topics.discovery_config, body, qos=1, retain=True)
        self.published += 1
        log.debug("Home Assistant discovery published on %s", self.topics.discovery_config)

    def forget(self) -> paho.MQTTMessageInfo:
        """The empty retained config: Home Assistant removes the device and its entities."""
        self.cancel()
        return self.client.publish(self.topics.discovery_config, b"", qos=1, retain=True)

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _on_ha_status(self, msg: paho.MQTTMessage) -> None:
        # A retained birth arrives on every subscribe; on connect we publish anyway.
        if msg.retain or bytes(msg.payload).strip().lower() != b"online":
            return
        delay = self._rng.uniform(*self.resend_delay_s)
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(delay, self._resend)
            self._timer.daemon = True
            self._timer.start()
        log.info("Home Assistant came online; re-sending discovery in %.1fs", delay)

    def _resend(self) -> None:
        try:
            if self.client.is_connected:
                self.publish()
        except Exception:
            log.exception("re-sending Home Assistant discovery failed")


def forget_device(settings: MqttSettings, device_id: str, timeout: float = 10.0) -> bool:
    """`edge mqtt forget`: remove the device from Home Assistant. Connects as a separate client
    (no will, no birth) so a running daemon keeps its session. True if the broker confirmed."""
    topics = Topics.from_settings(settings, device_id)
    client = MqttClient(settings, topics, client_id=f"edge-{device_id}-forget", birth=False)
    client.start()
    try:
        if not client.wait_connected(timeout):
            return False
        info = client.publish(topics.discovery_config, b"", qos=1, retain=True)
        info.wait_for_publish(timeout)
        return info.is_published()
    finally:
        client.stop()
