"""Home Assistant MQTT device-based discovery (HA 2024.11+): one retained config for the device.

`{discovery_prefix}/device/{device_id}/config` describes the device and all its entities:
availability (our `status` topic, the LWT), per (camera, task) a text sensor (state cut to HA's 255
characters; a few stable attributes: the full text, camera, task, trigger, latency) and a latency
sensor, and the last image of tasks that publish one; per camera a describe-now button (`cmd/capture`
naming the camera) and a diagnostic camera-state sensor (from `health`); a state sensor, the AI model
(diagnostic, from `state`), and the captioning switch (pause/resume through `cmd/set {"paused": ...}`:
an HA switch has one command topic). It is published on every connect and again, after a random
short delay so a fleet does not answer at once, when HA announces itself on `homeassistant/status`
(`online`). `forget()` publishes the empty retained payload that removes the device from HA.

Choices, from what a real HA (2025.4.4) did with the first version:
- `qos` is in each component: HA ignores a device-level `qos` and subscribed (and sent button and
  switch commands) at QoS 0.
- No `expire_after`: it counts from the last message on the state topic, so a paused device (online,
  publishing nothing on purpose) had its last answer turn `unavailable`. A device that is gone is
  shown by availability (the LWT sets `status` to `offline`); a camera that is gone by its camera
  sensor and the `camera_lost` event. The last answer stays what it is: the last answer.
- Names carry the camera (when there is more than one) and the task, first word capitalised only:
  "Caption", "Caption latency", "Gate caption latency". Entity ids (`unique_id`) carry both always.
- The device's `model` is the product ("edge vision agent"); the AI model is a diagnostic sensor.
  No `configuration_url`: the daemon has no web page to link to.
- Attributes are small and stable (`json_attributes_template`), not the whole result: ids, seq and
  timestamps change with every result and would fill HA's recorder.
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
PRODUCT = "edge vision agent"
ATTRIBUTES_TEMPLATE = (
    "{{ {'text': value_json.text, 'camera': value_json.camera, 'task': value_json.task, "
    "'trigger': value_json.trigger, 'latency_ms': value_json.stats.total_ms} | tojson }}"
)


def label(*words: str) -> str:
    """An entity name: the words joined, '_' and '-' as spaces, only the first letter capitalised."""
    text = " ".join(w.replace("_", " ").replace("-", " ") for w in words if w)
    return text[:1].upper() + text[1:]


def _task_components(
    topics: Topics, camera: str, task: TaskSettings, name_camera: bool, qos: int
) -> dict[str, dict[str, Any]]:
    """Last-result text sensor, latency sensor and (if published) the image of one (camera, task)."""
    dev, key = topics.device_id, f"{camera}_{task.name}"
    cam = camera if name_camera else ""
    if task.zone and task.zone not in task.name:  # the zone it looks at, by name: "Front gate caption"
        cam = f"{cam} {task.zone}".strip()
    result = topics.result(camera, task.name)
    text: dict[str, Any] = {
        "platform": "sensor",
        "name": label(cam, task.name),
        "unique_id": f"{dev}_{key}_text",
        "state_topic": result,
        "value_template": f"{{{{ value_json.text[:{HA_STATE_MAX}] }}}}",
        "json_attributes_topic": result,
        "json_attributes_template": ATTRIBUTES_TEMPLATE,
        "icon": "mdi:text-box-outline",
        "qos": qos,
    }
    latency: dict[str, Any] = {
        "platform": "sensor",
        "name": label(cam, task.name, "latency"),
        "unique_id": f"{dev}_{key}_latency",
        "state_topic": result,
        "value_template": "{{ value_json.stats.total_ms | round(0) }}",
        "unit_of_measurement": "ms",
        "device_class": "duration",
        "state_class": "measurement",
        "entity_category": "diagnostic",
        "qos": qos,
    }
    out = {f"{key}_text": text, f"{key}_latency": latency}
    if task.publish_image:
        out[f"{key}_image"] = {
            "platform": "image",
            "name": label(cam, task.name, "image"),
            "unique_id": f"{dev}_{key}_image",
            "image_topic": topics.image(camera, task.name),
            "content_type": "image/jpeg",
            "qos": qos,
        }
    return out


def _camera_components(topics: Topics, camera: str, name_camera: bool, qos: int) -> dict[str, dict[str, Any]]:
    """The describe-now button and the camera-state sensor of one camera."""
    dev = topics.device_id
    cam = camera if name_camera else ""
    return {
        f"{camera}_describe_now": {
            "platform": "button",
            "name": label(cam, "describe now"),
            "unique_id": f"{dev}_{camera}_describe_now",
            "command_topic": topics.command("capture"),
            "payload_press": json.dumps({"camera": camera}),
            "icon": "mdi:camera",
            "qos": qos,
        },
        f"{camera}_camera": {
            "platform": "sensor",
            "name": label(cam, "camera"),
            "unique_id": f"{dev}_{camera}_camera",
            "state_topic": topics.health,
            "value_template": f"{{{{ value_json.cameras.get('{camera}', {{}}).get('state', 'unknown') }}}}",
            "entity_category": "diagnostic",
            "icon": "mdi:cctv",
            "qos": qos,
        },
    }


def _field_components(topics: Topics, qos: int) -> dict[str, dict[str, Any]]:
    """Diagnostic sensors of the board and the uplink, from `health` (None there: unknown in HA)."""
    dev, health = topics.device_id, topics.health
    return {
        "temperature": {
            "platform": "sensor",
            "name": "Temperature",
            "unique_id": f"{dev}_temperature",
            "state_topic": health,
            "value_template": "{{ value_json.temperature_c if value_json.temperature_c is not none else 'unknown' }}",
            "unit_of_measurement": "°C",
            "device_class": "temperature",
            "state_class": "measurement",
            "entity_category": "diagnostic",
            "qos": qos,
        },
        "throttled": {
            "platform": "binary_sensor",
            "name": "Throttled",
            "unique_id": f"{dev}_throttled",
            "state_topic": health,
            "value_template": "{{ 'ON' if value_json.throttled or value_json.hot else 'OFF' }}",
            "device_class": "problem",
            "entity_category": "diagnostic",
            "qos": qos,
        },
        "link_bytes_today": {
            "platform": "sensor",
            "name": "Link bytes today",
            "unique_id": f"{dev}_link_bytes_today",
            "state_topic": health,
            "value_template": "{{ value_json.link.bytes_today if value_json.link else 'unknown' }}",
            "unit_of_measurement": "B",
            "device_class": "data_size",
            "state_class": "total_increasing",
            "entity_category": "diagnostic",
            "icon": "mdi:signal-cellular-3",
            "qos": qos,
        },
    }


def discovery_payload(
    topics: Topics,
    tasks: Sequence[TaskSettings],
    *,
    cameras: Sequence[str] = (DEFAULT_CAMERA,),
    device_name: str | None = None,
    qos: int = 1,
    alerts: Sequence[str] = (),
) -> dict[str, Any]:
    """The device discovery document, with HA's full (unabbreviated) key names.

    Result entities are per (camera, task), for each camera the task runs on, as the result topics
    are; their ids carry the camera so a second camera adds entities instead of renaming the first's.
    """
    dev = topics.device_id
    several = len(cameras) > 1
    components: dict[str, dict[str, Any]] = {}
    for camera in cameras:
        for task in tasks:
            if task.cameras is None or camera in task.cameras:
                components.update(_task_components(topics, camera, task, several, qos))
        components.update(_camera_components(topics, camera, several, qos))
    components.update(_field_components(topics, qos))
    for name in alerts:  # [[alerts]]: the retained {root}/alert/{name} state
        components[f"alert_{name}"] = {
            "platform": "binary_sensor",
            "name": label(name),
            "unique_id": f"{topics.device_id}_alert_{name}",
            "state_topic": f"{topics.root}/alert/{name}",
            "value_template": "{{ 'ON' if value_json.state == 'on' else 'OFF' }}",
            "json_attributes_topic": f"{topics.root}/alert/{name}",
            "json_attributes_template": "{{ {'result_id': value_json.result_id, 'at': value_json.at} | tojson }}",
            "qos": qos,
        }
    components["state"] = {
        "platform": "sensor",
        "name": "State",
        "unique_id": f"{dev}_state",
        "state_topic": topics.state,
        "value_template": "{{ value_json.state }}",
        "entity_category": "diagnostic",
        "icon": "mdi:state-machine",
        "qos": qos,
    }
    components["ai_model"] = {
        "platform": "sensor",
        "name": "AI model",
        "unique_id": f"{dev}_ai_model",
        "state_topic": topics.state,
        "value_template": "{{ value_json.model or 'none' }}",
        "json_attributes_topic": topics.state,
        "json_attributes_template": "{{ {'backend': value_json.backend, 'provider': value_json.provider} | tojson }}",
        "entity_category": "diagnostic",
        "icon": "mdi:brain",
        "qos": qos,
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
        "qos": qos,
    }
    return {
        "device": {
            "identifiers": [f"edge-{dev}"],
            "name": device_name or dev,
            "manufacturer": "edge",
            "model": PRODUCT,
            "sw_version": __version__,
        },
        "origin": {"name": "edge", "sw_version": __version__},
        "availability_topic": topics.status,
        "payload_available": "online",
        "payload_not_available": "offline",
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
