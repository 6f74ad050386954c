"""Home Assistant MQTT device-based discovery (HA 2024.11+): one retained config for the device.

`{discovery_prefix}/device/{device_id}/config` describes the device and all its entities:
availability (our `status` topic, the LWT), per (camera, task) a text sensor (state cut to HA's 255
characters; a few stable attributes: the full text, camera, task, trigger, latency) and a latency
sensor, and the last image of tasks that publish one; per camera a describe-now button (`cmd/capture`
naming the camera) and a diagnostic camera-state sensor (from `health`); a state sensor, the AI model
(diagnostic, from `state`), and the captioning switch (pause/resume through `cmd/set {"paused": ...}`:
an HA switch has one command topic). The entities are tables of specs (`DEVICE_ENTITIES`,
`CAMERA_ENTITIES`, `TASK_ENTITIES`): one function per entity, so another entity is one more row.

It is published on every connect, after every reload whose document differs, and again, after a
random short delay so a fleet does not answer at once, when HA announces itself on
`homeassistant/status` (`online`). `forget()` publishes the empty retained payload that removes the
device from HA.

Choices, from what a real HA (2025.4.4) did:
- Removal: HA keeps an entity whose component merely disappears from the document (its registry
  entry stays, shown available, with its last state). A component given as a stub with only its
  `platform` is deleted. So the daemon remembers every component key it ever published, reading its
  own retained config back at each connect (another process, another version, before a restart),
  and sends a stub for each one that is gone. Stubs stay in the retained document: an HA that was
  down at the time deletes them when it reads it.
- Text and latency sensors read the retained `last` topic of their (camera, task), not the result
  stream: results are not retained, and an MQTT sensor without `expire_after` does not restore its
  state, so after an HA restart it would show `unknown` until the next result.
- `qos` is in each component: HA ignores a device-level `qos` and subscribed (and sent button and
  switch commands) at QoS 0.
- No `expire_after`: it counts from the last message on the state topic, so a paused device (online,
  publishing nothing on purpose) had its last answer turn `unavailable`. A device that is gone is
  shown by availability (the LWT sets `status` to `offline`); a camera that is gone by its camera
  sensor and the `camera_lost` event. The last answer stays what it is: the last answer.
- Names carry the task and the camera, except the default camera `main` (the one `[camera]` names),
  first word capitalised only: "Caption", "Yard caption latency". They do not depend on how many
  cameras there are, so adding or removing one renames nothing. Entity ids (`unique_id`) carry
  camera and task always. The device is called `device_name` (default: the device_id).
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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


def camera_label(camera: str) -> str:
    """The camera's word in entity names: none for the default camera, else its name. Never the
    number of cameras: a name must not change when a camera is added or removed."""
    return "" if camera == DEFAULT_CAMERA else camera


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity: `key` is its component id in the document (and, after the
    device_id, its `unique_id`); `config` is the rest of its platform config, without `qos`."""

    key: str
    platform: str
    name: str
    config: Mapping[str, Any] = field(default_factory=dict)

    def component(self, device_id: str, qos: int) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "name": self.name,
            "unique_id": f"{device_id}_{self.key}",
            **self.config,
            "qos": qos,
        }


DeviceSpec = Callable[[Topics], "Entity | None"]
CameraSpec = Callable[[Topics, str], "Entity | None"]
TaskSpec = Callable[[Topics, str, TaskSettings], "Entity | None"]


# ---------------------------------------------------------------- per (camera, task)


def task_label(camera: str, task: TaskSettings) -> str:
    """The camera's word and, for a task that looks at a zone, the zone's: "Front gate caption"."""
    words = camera_label(camera)
    if task.zone and task.zone not in task.name:
        words = f"{words} {task.zone}".strip()
    return words


def task_text(topics: Topics, camera: str, task: TaskSettings) -> Entity:
    """The last answer: state cut to HA's limit, the full text in an attribute."""
    last = topics.last(camera, task.name)
    return Entity(
        f"{camera}_{task.name}_text",
        "sensor",
        label(task_label(camera, task), task.name),
        {
            "state_topic": last,
            "value_template": f"{{{{ value_json.text[:{HA_STATE_MAX}] }}}}",
            "json_attributes_topic": last,
            "json_attributes_template": ATTRIBUTES_TEMPLATE,
            "icon": "mdi:text-box-outline",
        },
    )


def task_latency(topics: Topics, camera: str, task: TaskSettings) -> Entity:
    return Entity(
        f"{camera}_{task.name}_latency",
        "sensor",
        label(task_label(camera, task), task.name, "latency"),
        {
            "state_topic": topics.last(camera, task.name),
            "value_template": "{{ value_json.stats.total_ms | round(0) }}",
            "unit_of_measurement": "ms",
            "device_class": "duration",
            "state_class": "measurement",
            "entity_category": "diagnostic",
        },
    )


def task_image(topics: Topics, camera: str, task: TaskSettings) -> Entity | None:
    if not task.publish_image:
        return None
    return Entity(
        f"{camera}_{task.name}_image",
        "image",
        label(task_label(camera, task), task.name, "image"),
        {"image_topic": topics.image(camera, task.name), "content_type": "image/jpeg"},
    )


# ---------------------------------------------------------------- per camera


def camera_describe_now(topics: Topics, camera: str) -> Entity:
    return Entity(
        f"{camera}_describe_now",
        "button",
        label(camera_label(camera), "describe now"),
        {
            "command_topic": topics.command("capture"),
            "payload_press": json.dumps({"camera": camera}),
            "icon": "mdi:camera",
        },
    )


def camera_state(topics: Topics, camera: str) -> Entity:
    return Entity(
        f"{camera}_camera",
        "sensor",
        label(camera_label(camera), "camera"),
        {
            "state_topic": topics.health,
            "value_template": f"{{{{ value_json.cameras.get('{camera}', {{}}).get('state', 'unknown') }}}}",
            "entity_category": "diagnostic",
            "icon": "mdi:cctv",
        },
    )


# ---------------------------------------------------------------- per device


def device_state(topics: Topics) -> Entity:
    return Entity(
        "state",
        "sensor",
        "State",
        {
            "state_topic": topics.state,
            "value_template": "{{ value_json.state }}",
            "entity_category": "diagnostic",
            "icon": "mdi:state-machine",
        },
    )


def device_ai_model(topics: Topics) -> Entity:
    return Entity(
        "ai_model",
        "sensor",
        "AI model",
        {
            "state_topic": topics.state,
            "value_template": "{{ value_json.model or 'none' }}",
            "json_attributes_topic": topics.state,
            "json_attributes_template": "{{ {'backend': value_json.backend, 'provider': value_json.provider} | tojson }}",
            "entity_category": "diagnostic",
            "icon": "mdi:brain",
        },
    )


def device_captioning(topics: Topics) -> Entity:
    return Entity(
        "captioning",
        "switch",
        "Captioning",
        {
            "command_topic": topics.command("set"),
            "payload_on": json.dumps({"paused": False}),
            "payload_off": json.dumps({"paused": True}),
            "state_topic": topics.state,
            "value_template": "{{ 'OFF' if value_json.state == 'paused' else 'ON' }}",
            "state_on": "ON",
            "state_off": "OFF",
            "icon": "mdi:eye",
        },
    )


# A numeric sensor must render a number; HA's MQTT sensor reads the string "None" as unknown (any
# other word is an error in HA's log on every health message: seen against a real HA 2025.4).
def device_temperature(topics: Topics) -> Entity:
    """The board's temperature from `health` (unknown where the board reports none)."""
    return Entity(
        "temperature",
        "sensor",
        "Temperature",
        {
            "state_topic": topics.health,
            "value_template": "{{ value_json.temperature_c if value_json.temperature_c is not none else 'None' }}",
            "unit_of_measurement": "°C",
            "device_class": "temperature",
            "state_class": "measurement",
            "entity_category": "diagnostic",
        },
    )


def device_throttled(topics: Topics) -> Entity:
    return Entity(
        "throttled",
        "binary_sensor",
        "Throttled",
        {
            "state_topic": topics.health,
            "value_template": "{{ 'ON' if value_json.throttled or value_json.hot else 'OFF' }}",
            "device_class": "problem",
            "entity_category": "diagnostic",
        },
    )


def device_link_bytes(topics: Topics) -> Entity:
    return Entity(
        "link_bytes_today",
        "sensor",
        "Link bytes today",
        {
            "state_topic": topics.health,
            "value_template": "{{ value_json.link.bytes_today if value_json.link else 'None' }}",
            "unit_of_measurement": "B",
            "device_class": "data_size",
            "state_class": "total_increasing",
            "entity_category": "diagnostic",
            "icon": "mdi:signal-cellular-3",
        },
    )


def alert_state(topics: Topics, name: str) -> Entity:
    """An `[[alerts]]` entry: on/off from its retained `{root}/alert/{name}`."""
    topic = f"{topics.root}/alert/{name}"
    return Entity(
        f"alert_{name}",
        "binary_sensor",
        label(name),
        {
            "state_topic": topic,
            "value_template": "{{ 'ON' if value_json.state == 'on' else 'OFF' }}",
            "json_attributes_topic": topic,
            "json_attributes_template": "{{ {'result_id': value_json.result_id, 'at': value_json.at} | tojson }}",
        },
    )


TASK_ENTITIES: tuple[TaskSpec, ...] = (task_text, task_latency, task_image)
CAMERA_ENTITIES: tuple[CameraSpec, ...] = (camera_describe_now, camera_state)
DEVICE_ENTITIES: tuple[DeviceSpec, ...] = (
    device_state,
    device_ai_model,
    device_captioning,
    device_temperature,
    device_throttled,
    device_link_bytes,
)


def entities(
    topics: Topics,
    tasks: Sequence[TaskSettings],
    cameras: Sequence[str] = (DEFAULT_CAMERA,),
    alerts: Sequence[str] = (),
) -> list[Entity]:
    """Every entity, in document order: per camera its tasks' entities then its own; the device's last.

    Result entities are per (camera, task), for each camera the task runs on, as the result topics are.
    """
    out: list[Entity | None] = []
    for camera in cameras:
        for task in tasks:
            if task.cameras is None or camera in task.cameras:
                out += [spec(topics, camera, task) for spec in TASK_ENTITIES]
        out += [spec(topics, camera) for spec in CAMERA_ENTITIES]
    out += [alert_state(topics, name) for name in alerts]
    out += [spec(topics) for spec in DEVICE_ENTITIES]
    return [e for e in out if e is not None]


def discovery_payload(
    topics: Topics,
    tasks: Sequence[TaskSettings],
    *,
    cameras: Sequence[str] = (DEFAULT_CAMERA,),
    device_name: str | None = None,
    qos: int = 1,
    alerts: Sequence[str] = (),
) -> dict[str, Any]:
    """The device discovery document, with HA's full (unabbreviated) key names."""
    dev = topics.device_id
    components = {e.key: e.component(dev, qos) for e in entities(topics, tasks, cameras, alerts)}
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


def is_stub(component: Mapping[str, Any]) -> bool:
    """A removal stub: a component with only its platform (HA deletes that entity)."""
    return set(component) == {"platform"}


def with_removals(document: dict[str, Any], known: Mapping[str, str]) -> dict[str, Any]:
    """`document` plus a stub `{"platform": ...}` for each known component key it no longer has."""
    components = dict(document["components"])
    for key, platform in known.items():
        if key not in components:
            components[key] = {"platform": platform}
    return {**document, "components": components}


class Discovery:
    """Publishes the discovery config on connect, after reloads and on HA's birth; removes what went
    away (stubs for every component key it knows of and no longer has); removes it all on forget."""

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
        self._known: dict[str, str] = {}  # every component key published or read back -> platform
        self._last_body: str | None = None
        self.published = 0

    def attach(self) -> None:
        """Hook into the client: publish on every connect, read our own retained config back (what an
        earlier run published), re-publish on HA's birth."""
        self.client.subscribe(self.topics.discovery_config, self._on_own_config)
        self.client.add_connect_listener(self.publish)
        self.client.subscribe(self.topics.ha_status, self._on_ha_status)

    def publish(self) -> None:
        with self._lock:
            document = with_removals(self._payload(), self._known)
            body = json.dumps(document, separators=(",", ":"))
            self.client.publish(self.topics.discovery_config, body, qos=1, retain=True)
            self._known.update({k: c["platform"] for k, c in document["components"].items()})
            self._last_body = body
            self.published += 1
            removed = sorted(k for k, c in document["components"].items() if is_stub(c))
        log.debug("Home Assistant discovery published on %s", self.topics.discovery_config)
        if removed:
            log.debug("Home Assistant discovery: removal stubs for %s", ", ".join(removed))

    def refresh(self) -> bool:
        """Publish again if the document changed (a reload: cameras, tasks, names, the device).
        True if it was sent."""
        with self._lock:
            document = with_removals(self._payload(), self._known)
            changed = json.dumps(document, separators=(",", ":")) != self._last_body
        if changed and self.client.is_connected:
            self.publish()
            log.info("Home Assistant discovery re-sent: the device's entities changed")
            return True
        return False

    def forget(self) -> paho.MQTTMessageInfo:
        """The empty retained config: Home Assistant removes the device and its entities."""
        self.cancel()
        with self._lock:
            self._known.clear()
            self._last_body = None
        return self.client.publish(self.topics.discovery_config, b"", qos=1, retain=True)

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _on_own_config(self, msg: paho.MQTTMessage) -> None:
        """The broker's retained copy (sent on subscribe, before our own publish of this connection):
        learn its component keys; if one is not in ours, publish again so HA deletes it. Our own
        publishes come back with the retain flag clear (a live delivery) and are ignored."""
        if not msg.retain or not msg.payload:
            return
        try:
            components = json.loads(bytes(msg.payload))["components"]
            previous = {str(k): str(c["platform"]) for k, c in components.items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("retained discovery config on %s is not ours to read; left as it is", msg.topic)
            return
        with self._lock:
            new = {k: p for k, p in previous.items() if k not in self._known}
            self._known.update(new)
        if new and self.client.is_connected:
            log.info("Home Assistant discovery: removing %d entity(ies) an earlier run published", len(new))
            self.publish()

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
