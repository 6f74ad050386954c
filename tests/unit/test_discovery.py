"""The Home Assistant discovery document, checked key by key against HA's own schemas.

What these checks cannot see (they know HA's keys, not HA): whether HA renders the Jinja templates
(value_template, json_attributes_template: `dict.get`, `tojson`, slicing) as intended, how HA
derives entity ids and friendly names from `name` and the device name, what the recorder keeps, and
whether HA really subscribes and publishes at each component's `qos` (seen in a real HA 2025.4.4:
it ignores the device-level one). A run against a real HA would."""

from __future__ import annotations

import json

from edge.config.settings import TaskSettings
from edge.mqtt.discovery import (
    HA_STATE_MAX,
    PRODUCT,
    Entity,
    discovery_payload,
    entities,
    is_stub,
    with_removals,
)
from edge.mqtt.topics import Topics

# Allowed keys, transcribed from Home Assistant core (homeassistant/components/mqtt/):
#   schemas.py   DEVICE_DISCOVERY_SCHEMA (= MQTT_AVAILABILITY_SCHEMA + device, components, origin,
#                state_topic, command_topic, qos, encoding), MQTT_ENTITY_DEVICE_INFO_SCHEMA,
#                MQTT_ORIGIN_INFO_SCHEMA, MQTT_ENTITY_COMMON_SCHEMA, COMPONENT_CONFIG_SCHEMA (platform)
#   config.py    SCHEMA_BASE (qos, encoding), MQTT_RO_SCHEMA (state_topic, value_template),
#                MQTT_RW_SCHEMA (command_topic, optimistic, retain, state_topic)
#   sensor.py, switch.py, button.py, image.py   PLATFORM_SCHEMA(_MODERN) of each platform
# Voluptuous schemas reject unknown keys in the device document; entity schemas drop them
# silently, which is worse (a typo just does nothing), so both are checked here.
AVAILABILITY = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "payload_available",
    "payload_not_available",
}
DEVICE_DOC = AVAILABILITY | {
    "device",
    "components",
    "origin",
    "state_topic",
    "command_topic",
    "qos",
    "encoding",
}
DEVICE_INFO = {
    "identifiers",
    "connections",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "hw_version",
    "serial_number",
    "sw_version",
    "via_device",
    "suggested_area",
    "configuration_url",
}
ORIGIN = {"name", "sw_version", "support_url"}
ENTITY_COMMON = AVAILABILITY | {
    "platform",
    "device",
    "origin",
    "enabled_by_default",
    "entity_category",
    "icon",
    "json_attributes_topic",
    "json_attributes_template",
    "object_id",
    "unique_id",
    "name",
    "qos",
    "encoding",
}
PLATFORM = {
    "sensor": {
        "state_topic",
        "value_template",
        "device_class",
        "expire_after",
        "force_update",
        "last_reset_value_template",
        "state_class",
        "unit_of_measurement",
        "suggested_display_precision",
        "options",
    },
    "switch": {
        "command_topic",
        "command_template",
        "optimistic",
        "retain",
        "state_topic",
        "value_template",
        "payload_on",
        "payload_off",
        "state_on",
        "state_off",
        "device_class",
    },
    "button": {"command_topic", "command_template", "device_class", "payload_press", "retain"},
    "binary_sensor": {
        "state_topic",
        "value_template",
        "payload_on",
        "payload_off",
        "device_class",
        "expire_after",
        "force_update",
        "off_delay",
    },
    "image": {"content_type", "image_topic", "image_encoding", "url_topic", "url_template"},
}
REQUIRED = {
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "switch": {"command_topic"},
    "button": {"command_topic"},
}

TASKS = [
    TaskSettings(name="caption", publish_image=True),
    TaskSettings(name="people", kind="ask", prompt="How many people?", trigger="interval", interval_s=30),
]


def doc() -> dict:
    return discovery_payload(Topics("edge", "cam-01"), TASKS)


def check_keys(d: dict) -> None:
    assert set(d) <= DEVICE_DOC
    assert set(d["device"]) <= DEVICE_INFO and d["device"]["identifiers"]
    assert set(d["origin"]) <= ORIGIN and d["origin"]["name"]
    for cid, comp in d["components"].items():
        platform = comp["platform"]
        assert platform in PLATFORM, cid
        extra = set(comp) - ENTITY_COMMON - PLATFORM[platform]
        assert not extra, f"{cid}: keys HA does not know: {extra}"
        assert REQUIRED.get(platform, set()) <= set(comp), cid
        if platform == "image":
            assert ("image_topic" in comp) != ("url_topic" in comp)
        if "entity_category" in comp:
            assert comp["entity_category"] in {"config", "diagnostic"}
        assert comp["qos"] == 1, cid  # HA ignores a device-level qos: each component carries it
        assert "expire_after" not in comp, cid  # it hid the last answer of a paused device
    assert json.loads(json.dumps(d)) == d  # plain JSON


def test_document_keys_are_home_assistant_keys() -> None:
    check_keys(doc())
    two = discovery_payload(Topics("edge", "cam-01"), TASKS, cameras=("yard", "gate"))
    check_keys(two)
    # the keys were checked on both cameras' entities, not on one camera's twice
    assert {"yard_caption_text", "gate_caption_text", "yard_camera", "gate_camera"} <= set(two["components"])


def test_entities_and_topics() -> None:
    d = doc()
    comps = d["components"]
    assert d["availability_topic"] == "edge/cam-01/status"
    assert (d["payload_available"], d["payload_not_available"]) == ("online", "offline")
    text = comps["main_caption_text"]
    # the retained `last` copy of the result: HA shows it again after a restart
    assert text["state_topic"] == text["json_attributes_topic"] == "edge/cam-01/main/caption/last"
    assert f"[:{HA_STATE_MAX}]" in text["value_template"] and HA_STATE_MAX == 255
    assert comps["main_caption_latency"]["unit_of_measurement"] == "ms"
    assert comps["main_caption_image"]["image_topic"] == "edge/cam-01/main/caption/image"
    assert "main_people_image" not in comps  # that task publishes no image
    assert comps["main_people_text"]["state_topic"] == "edge/cam-01/main/people/last"
    switch = comps["captioning"]
    assert switch["command_topic"] == "edge/cam-01/cmd/set"
    assert json.loads(switch["payload_off"]) == {"paused": True}
    assert json.loads(switch["payload_on"]) == {"paused": False}
    button = comps["main_describe_now"]
    assert button["command_topic"] == "edge/cam-01/cmd/capture"
    assert json.loads(button["payload_press"]) == {"camera": "main"}
    ids = [c["unique_id"] for c in comps.values()]
    assert len(ids) == len(set(ids)) and all(i.startswith("cam-01_") for i in ids)


def test_names_do_not_depend_on_the_number_of_cameras() -> None:
    """Two cameras -> one renamed "Front caption" to "Caption" once; a name is now a function of
    the camera and task alone (the default camera `main` carries no word)."""
    two = discovery_payload(Topics("edge", "cam-01"), TASKS, cameras=("front", "back"))["components"]
    one = discovery_payload(Topics("edge", "cam-01"), TASKS, cameras=("front",))["components"]
    for key, comp in one.items():
        assert two[key]["name"] == comp["name"] and two[key]["unique_id"] == comp["unique_id"], key
    assert one["front_caption_text"]["name"] == "Front caption"
    main = discovery_payload(Topics("edge", "cam-01"), TASKS, cameras=("main", "back"))["components"]
    assert (
        main["main_caption_text"]["name"] == "Caption" and main["back_caption_text"]["name"] == "Back caption"
    )


def test_device_name_labels_the_device_only() -> None:
    d = discovery_payload(Topics("edge", "cam-01"), TASKS, device_name="Porch camera")
    assert d["device"]["name"] == "Porch camera" and d["device"]["identifiers"] == ["edge-cam-01"]
    assert doc()["device"]["name"] == "cam-01"  # default: the device_id
    assert all(c["unique_id"].startswith("cam-01_") for c in d["components"].values())


def test_removed_components_become_platform_stubs() -> None:
    before = discovery_payload(Topics("edge", "cam-01"), TASKS, cameras=("front", "back"))
    known = {k: c["platform"] for k, c in before["components"].items()}
    after = with_removals(discovery_payload(Topics("edge", "cam-01"), TASKS[:1], cameras=("front",)), known)
    comps = after["components"]
    assert comps["back_describe_now"] == {"platform": "button"}
    assert comps["back_caption_image"] == {"platform": "image"}
    assert comps["front_people_text"] == {"platform": "sensor"}  # a removed task
    assert is_stub(comps["back_camera"]) and not is_stub(comps["front_camera"])
    assert set(comps) == set(known)
    check_keys({**after, "components": {k: c for k, c in comps.items() if not is_stub(c)}})


def test_entity_table_is_open_for_more_rows() -> None:
    """Another entity is one more spec in a table; its component gets id, name and qos like the rest."""
    spec = lambda topics: Entity("temperature", "sensor", "Temperature", {"state_topic": topics.health})  # noqa: E731
    extra = Entity("x", "sensor", "X").component("cam-01", 1)
    assert extra == {"platform": "sensor", "name": "X", "unique_id": "cam-01_x", "qos": 1}
    assert spec(Topics("edge", "cam-01")).component("cam-01", 1)["unique_id"] == "cam-01_temperature"
    assert [e.key for e in entities(Topics("edge", "d"), TASKS[:1])] == [
        "main_caption_text",
        "main_caption_latency",
        "main_caption_image",
        "main_describe_now",
        "main_camera",
        "state",
        "ai_model",
        "captioning",
        "temperature",
        "throttled",
        "link_bytes_today",
    ]


def test_names_carry_task_and_camera_with_one_capital() -> None:
    one = doc()["components"]
    assert [one[k]["name"] for k in ("main_caption_text", "main_caption_latency", "main_people_text")] == [
        "Caption",
        "Caption latency",
        "People",
    ]
    assert one["main_describe_now"]["name"] == "Describe now"
    two = discovery_payload(Topics("edge", "cam-01"), TASKS, cameras=("yard", "gate"))["components"]
    assert two["gate_caption_latency"]["name"] == "Gate caption latency"
    assert two["yard_describe_now"]["name"] == "Yard describe now"
    names = [c["name"] for c in two.values()]
    assert len(names) == len(set(names))  # no "Last caption" twice
    assert all(n[:1].isupper() and n[1:] == n[1:].lower() for n in names if n != "AI model"), names


def test_device_model_is_the_product_and_the_ai_model_a_diagnostic_sensor() -> None:
    d = doc()
    assert d["device"]["model"] == PRODUCT and "configuration_url" not in d["device"]
    ai = d["components"]["ai_model"]
    assert ai["state_topic"] == "edge/cam-01/state" and ai["entity_category"] == "diagnostic"
    assert "value_json.model" in ai["value_template"]


def test_attributes_are_small_and_stable() -> None:
    text = doc()["components"]["main_caption_text"]
    template = text["json_attributes_template"]
    for key in ("text", "camera", "task", "trigger", "total_ms"):
        assert key in template
    for changing in ("value_json.id", "seq", "captured_at", "published_at"):
        assert changing not in template


def test_result_entities_are_per_camera_and_task() -> None:
    tasks = [*TASKS, TaskSettings(name="plates", trigger="motion", cameras=["gate"])]
    comps = discovery_payload(Topics("edge", "cam-01"), tasks, cameras=("yard", "gate"))["components"]
    assert comps["yard_caption_text"]["state_topic"] == "edge/cam-01/yard/caption/last"
    assert comps["gate_people_latency"]["state_topic"] == "edge/cam-01/gate/people/last"
    assert comps["gate_caption_image"]["image_topic"] == "edge/cam-01/gate/caption/image"
    assert "gate_plates_text" in comps and "yard_plates_text" not in comps  # bound to gate only
    assert comps["gate_camera"]["state_topic"] == "edge/cam-01/health"
    assert "'gate'" in comps["gate_camera"]["value_template"]
    ids = [c["unique_id"] for c in comps.values()]
    assert len(ids) == len(set(ids))


def test_board_and_link_diagnostics_read_health() -> None:
    """Temperature, throttled (firmware flag or the heat policy) and the link's bytes today."""
    comps = doc()["components"]
    health = Topics("edge", "cam-01").health
    for cid in ("temperature", "throttled", "link_bytes_today"):
        assert comps[cid]["state_topic"] == health
        assert comps[cid]["entity_category"] == "diagnostic"
    assert comps["temperature"]["unit_of_measurement"] == "°C"
    assert comps["throttled"]["platform"] == "binary_sensor"
    assert "link.bytes_today" in comps["link_bytes_today"]["value_template"]


def test_alert_binary_sensors_and_zone_names() -> None:
    tasks = [TaskSettings(name="caption", zone="gate")]
    d = discovery_payload(Topics("edge", "cam-01"), tasks, alerts=["vehicle-at-gate"])
    check_keys(d)
    alert = d["components"]["alert_vehicle-at-gate"]
    assert (
        alert["platform"] == "binary_sensor" and alert["state_topic"] == "edge/cam-01/alert/vehicle-at-gate"
    )
    assert alert["name"] == "Vehicle at gate"
    assert d["components"]["main_caption_text"]["name"] == "Gate caption"
