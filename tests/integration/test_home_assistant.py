"""A real Home Assistant through a device's whole lifecycle: `edge run` -> mosquitto -> HA 2025.4.4.

One Home Assistant (installed once into a cached venv on Python 3.13.0, see tests/helpers/
home_assistant.py) and one broker serve the whole module: HA is started, onboarded over REST, and
the MQTT integration added through its config flow. Each test runs its own daemon under its own
device_id, so the tests do not depend on each other's devices. Assertions read HA's device and
entity registries (websocket) and its states (REST), never the discovery document.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import REPO, DaemonProcess, base_settings, start_daemon, write_config
from tests.helpers.home_assistant import HomeAssistant, Install, ensure_installed, wait_until
from tests.plugins.mosquitto import Broker, Collector, free_port

# The first test also pays for the cached install when it is missing (about 9 minutes on a busy
# two-core machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

DEMO_MODEL = REPO / "edge" / "assets" / "models" / "demo-ort"
HA_WAIT_S = 60.0  # generous: HA and the daemon share two busy cores


# --------------------------------------------------------------------------- module rig


@pytest.fixture(scope="module")
def ha_install() -> Install:
    install = ensure_installed(log=print)
    if install.built_s is not None:
        print(f"Home Assistant venv built in {install.built_s:.0f}s")
    return install


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(directory=tmp_path_factory.mktemp("ha-broker"))
    b.start()
    yield b
    b.kill()


@pytest.fixture(scope="module")
def ha(
    ha_install: Install, broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HomeAssistant]:
    t0 = time.monotonic()
    hass = HomeAssistant(ha_install, tmp_path_factory.mktemp("ha-config"), free_port())
    try:
        hass.start()
        hass.onboard()
        hass.add_mqtt(broker.host, broker.port)
        print(f"Home Assistant started, onboarded and on MQTT in {time.monotonic() - t0:.1f}s")
        yield hass
    finally:
        hass.stop()
        print(f"Home Assistant start times: {', '.join(f'{s:.1f}s' for s in hass.starts)}")


@pytest.fixture
def collector(broker: Broker) -> Iterator[Callable[[str], Collector]]:
    made: list[Collector] = []

    def make(topics: str) -> Collector:
        c = Collector(broker, topics).start()
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def settings(tmp_path: Path, broker: Broker, device: str, **sections: Any) -> dict[str, Any]:
    """The e2e settings with the demo model (it captions the test pattern) and discovery on."""
    defaults: dict[str, Any] = {
        "device_id": device,
        "model": {"path": str(DEMO_MODEL), "max_new_tokens": 48},
        "mqtt": {"discovery": True},
        "tasks": [{"name": "caption", "kind": "caption", "trigger": "interval", "interval_s": 2}],
        "watchdog": {"first_token_s": 20, "token_s": 10, "generation_s": 30, "total_s": 40},
    }
    cfg = base_settings(tmp_path, broker, **{**defaults, **sections})
    if "cameras" in sections:
        del cfg["camera"]
    return cfg


def two_cameras(**extra: Any) -> list[dict[str, Any]]:
    cam = {"source": "testsrc", "width": 320, "height": 240, "fps": 5, "stall_s": 3, "reconnect_s": 1}
    return [{"name": "front", **cam, **extra}, {"name": "back", **cam, **extra}]


def registry(ha: HomeAssistant, device: str) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """HA's device entry and its entities by unique_id."""
    dev, entities = ha.device_entities(f"edge-{device}")
    return dev, {e["unique_id"]: e for e in entities}


def wait_entities(
    ha: HomeAssistant, device: str, want: Callable[[set[str]], bool], what: str
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        _, ents = registry(ha, device)
        return ents if want(set(ents)) else None

    return wait_until(what, probe, HA_WAIT_S, every=0.5)


def wait_state(ha: HomeAssistant, entity_id: str, want: Callable[[str], bool], what: str) -> dict[str, Any]:
    return wait_until(
        f"{entity_id} {what}",
        lambda: s if (s := ha.state(entity_id)) is not None and want(s["state"]) else None,
        HA_WAIT_S,
    )


def wait_quiet(results: Collector, quiet_s: float = 3.0) -> None:
    """Until no result came for `quiet_s`: a job already generating when the device paused has landed."""

    def quiet() -> bool:
        last = max((m.at for m in results.messages), default=0.0)
        return time.monotonic() - last >= quiet_s

    wait_until("the results to stop after the pause", quiet, HA_WAIT_S)


def stop(daemon: DaemonProcess) -> None:
    assert daemon.stop() == 0, daemon.log()[-3000:]


# --------------------------------------------------------------------------- first day


def test_first_day(
    ha: HomeAssistant, broker: Broker, collector: Callable[[str], Collector], tmp_path: Path
) -> None:
    """The demo device: 10 entities (7 + the board's temperature, throttling and link bytes) with names not doubled, the friendly device name, captions as state
    (the full text in an attribute when it is longer than HA's 255), pause/resume, describe now,
    and SIGKILL -> unavailable -> back with the same entity ids, without a warning in HA's log."""
    device = "ha-first"
    log_from = ha.log_lines()
    results = collector(f"edge/{device}/+/+/result")
    daemon = start_daemon(tmp_path, settings(tmp_path, broker, device, device_name="Porch camera"))
    try:
        ents = wait_entities(ha, device, lambda ids: len(ids) == 10, "the demo's 10 entities")
        dev, _ = registry(ha, device)
        assert dev is not None and dev["name"] == "Porch camera" and dev["model"] == "edge vision agent"
        assert set(ents) == {
            f"{device}_{k}"
            for k in (
                "main_caption_text",
                "main_caption_latency",
                "main_describe_now",
                "main_camera",
                "state",
                "ai_model",
                "captioning",
                "temperature",
                "throttled",
                "link_bytes_today",
            )
        }
        ids = {uid: e["entity_id"] for uid, e in ents.items()}
        caption = ids[f"{device}_main_caption_text"]
        assert caption == "sensor.porch_camera_caption"
        # the state is the newest result's text
        first = results.wait_topic(f"edge/{device}/main/caption/result", timeout=HA_WAIT_S)[-1].json()
        state = wait_state(ha, caption, lambda s: s not in ("unknown", "unavailable"), "has a caption")
        assert state["attributes"]["friendly_name"] == "Porch camera Caption"  # not "Porch camera Porch ..."
        assert state["attributes"]["camera"] == "main" and state["attributes"]["task"] == "caption"
        assert first["text"]  # the demo model names shapes
        latency = ha.state(ids[f"{device}_main_caption_latency"])
        assert latency is not None and latency["attributes"]["unit_of_measurement"] == "ms"

        # the Captioning switch pauses and resumes the device
        switch = ids[f"{device}_captioning"]
        wait_state(ha, switch, lambda s: s == "on", "is on")
        ha.rest("POST", "/api/services/switch/turn_off", {"entity_id": switch})
        wait_state(ha, ids[f"{device}_state"], lambda s: s == "paused", "says paused")
        wait_state(ha, switch, lambda s: s == "off", "is off")
        wait_quiet(results)
        results.clear()

        # a caption longer than HA's state limit: cut to 255 in the state, all of it in `text`
        long_text = ("A red circle on the left and a blue square on the right. " * 9)[:508]
        payload = {**first, "text": long_text}
        results.publish(f"edge/{device}/main/caption/last", json.dumps(payload), retain=True)
        long_state = wait_state(ha, caption, lambda s: s == long_text[:255], "shows the long caption cut")
        assert len(long_state["state"]) == 255 and long_state["attributes"]["text"] == long_text

        # paused: nothing published; "describe now" still answers (a command, not the schedule)
        assert results.on(f"edge/{device}/+/+/result") == []
        ha.rest("POST", "/api/services/button/press", {"entity_id": ids[f"{device}_main_describe_now"]})
        pressed = results.wait_topic(f"edge/{device}/main/caption/result", timeout=HA_WAIT_S)[-1].json()
        assert pressed["trigger"] != "interval"
        wait_state(ha, caption, lambda s: s == pressed["text"][:255], "shows the described frame")

        ha.rest("POST", "/api/services/switch/turn_on", {"entity_id": switch})
        wait_state(ha, ids[f"{device}_state"], lambda s: s != "paused", "runs again")

        # SIGKILL: the will marks every entity unavailable; a restart brings them back, same ids
        daemon.signal(signal.SIGKILL)
        daemon.proc.wait(10)
        wait_state(ha, caption, lambda s: s == "unavailable", "is unavailable after SIGKILL")
        daemon = start_daemon(
            tmp_path, settings(tmp_path, broker, device, device_name="Porch camera"), name="edge2"
        )
        wait_state(ha, caption, lambda s: s != "unavailable", "is available again")
        _, after = registry(ha, device)
        assert {uid: e["entity_id"] for uid, e in after.items()} == ids
        assert ha.problems(log_from) == []
    finally:
        stop(daemon)


# --------------------------------------------------------------------------- after the first day


def test_removed_camera_and_task_leave_home_assistant(
    ha: HomeAssistant, broker: Broker, tmp_path: Path
) -> None:
    """Two cameras and two tasks, then one camera and one task after a restart: the entities of what
    went away are deleted from HA's registry; the names of what stayed do not change."""
    log_from = ha.log_lines()
    device = "ha-shrink"
    tasks = [
        {"name": "caption", "kind": "caption", "trigger": "interval", "interval_s": 3},
        {
            "name": "count",
            "kind": "ask",
            "prompt": "How many shapes?",
            "trigger": "interval",
            "interval_s": 30,
        },
    ]
    cfg = settings(tmp_path, broker, device, cameras=two_cameras(), tasks=tasks)
    daemon = start_daemon(tmp_path, cfg)
    try:
        # per camera: caption text+latency, count text+latency, describe now, camera; and 6 device entities
        ents = wait_entities(ha, device, lambda ids: len(ids) == 18, "18 entities for two cameras, two tasks")
        names = {uid: ha.state(e["entity_id"]) for uid, e in ents.items()}
        front = f"{device}_front_caption_text"
        front_state = names[front]
        assert (
            front_state is not None
            and front_state["attributes"]["friendly_name"] == f"{device} Front caption"
        )
    finally:
        stop(daemon)

    cfg["cameras"] = two_cameras()[:1]
    cfg["tasks"] = tasks[:1]
    daemon = start_daemon(tmp_path, cfg, name="edge-one")
    try:
        kept = {
            f"{device}_{k}" for k in ("front_caption_text", "front_caption_latency", "front_describe_now")
        }
        kept |= {f"{device}_{k}" for k in ("front_camera", "state", "ai_model", "captioning")}
        kept |= {f"{device}_{k}" for k in ("temperature", "throttled", "link_bytes_today")}
        ents = wait_entities(ha, device, lambda ids: ids == kept, "back's and count's entities removed")
        # names do not depend on the number of cameras
        state = wait_state(ha, ents[front]["entity_id"], lambda s: s != "unavailable", "is available")
        assert state["attributes"]["friendly_name"] == f"{device} Front caption"
        assert ents[front]["entity_id"] == f"sensor.{device.replace('-', '_')}_front_caption"
    finally:
        stop(daemon)
    assert ha.problems(log_from) == []


def test_reload_updates_home_assistant(ha: HomeAssistant, broker: Broker, tmp_path: Path) -> None:
    """SIGHUP with a camera added and the device renamed: HA gets the new entities and name within
    seconds; SIGHUP with it removed again deletes them."""
    log_from = ha.log_lines()
    device = "ha-reload"
    cfg = settings(tmp_path, broker, device, cameras=two_cameras()[:1])
    daemon = start_daemon(tmp_path, cfg)
    try:
        wait_entities(ha, device, lambda ids: len(ids) == 10, "10 entities for one camera")
        cfg["cameras"] = two_cameras()
        cfg["device_name"] = "Garden"
        write_config(daemon.config, cfg)
        daemon.signal(signal.SIGHUP)
        ents = wait_entities(ha, device, lambda ids: len(ids) == 14, "the added camera's 4 entities")
        assert f"{device}_back_describe_now" in ents
        wait_until(
            "the device renamed", lambda: (registry(ha, device)[0] or {}).get("name") == "Garden", HA_WAIT_S
        )

        cfg["cameras"] = two_cameras()[:1]
        write_config(daemon.config, cfg)
        daemon.signal(signal.SIGHUP)
        ents = wait_entities(ha, device, lambda ids: len(ids) == 10, "the removed camera's entities gone")
        assert not any("back" in uid for uid in ents)
    finally:
        stop(daemon)
    assert ha.problems(log_from) == []


def test_home_assistant_restart_keeps_captions(
    ha: HomeAssistant, broker: Broker, collector: Callable[[str], Collector], tmp_path: Path
) -> None:
    """Paused (no new result will come), HA restarts: the caption and its latency are there again
    from the retained `last` topic, not `unknown`."""
    log_from = ha.log_lines()
    device = "ha-restart"
    results = collector(f"edge/{device}/+/+/result")
    daemon = start_daemon(tmp_path, settings(tmp_path, broker, device))
    try:
        ents = wait_entities(ha, device, lambda ids: len(ids) == 10, "the demo's 10 entities")
        caption = ents[f"{device}_main_caption_text"]["entity_id"]
        latency = ents[f"{device}_main_caption_latency"]["entity_id"]
        results.wait_topic(f"edge/{device}/main/caption/result", timeout=HA_WAIT_S)
        ha.rest(
            "POST", "/api/services/switch/turn_off", {"entity_id": ents[f"{device}_captioning"]["entity_id"]}
        )
        wait_state(ha, ents[f"{device}_state"]["entity_id"], lambda s: s == "paused", "says paused")
        wait_quiet(results)
        newest = results.on(f"edge/{device}/+/+/result")[-1].json()
        shown = wait_state(ha, caption, lambda s: s == newest["text"][:255], "shows the newest caption")
        ha.restart()
        count = len(results.on(f"edge/{device}/+/+/result"))
        # The entity comes back "unknown" until its state topic's retained message reaches it (a
        # moment on a quiet machine, seconds on a loaded one): wait for the caption, not a first state.
        restored = wait_state(
            ha, caption, lambda s: s == shown["state"], "shows the caption again after HA's restart"
        )
        assert restored["attributes"]["text"] == newest["text"]
        lat = wait_state(ha, latency, lambda s: s not in ("unavailable", "unknown", ""), "latency is back")
        assert float(lat["state"]) > 0
        assert len(results.on(f"edge/{device}/+/+/result")) == count  # from `last`, no new result
    finally:
        stop(daemon)
    assert ha.problems(log_from) == []


# --------------------------------------------------------------------------- alerts


def test_an_alert_is_a_binary_sensor_that_turns_on_and_off(
    ha: HomeAssistant, broker: Broker, collector: Callable[[str], Collector], tmp_path: Path
) -> None:
    """`[[alerts]]` on a structured task: HA gets a binary_sensor through discovery, and its state
    follows the alert's retained on/off as the camera alternates a picture with a red circle and one
    without (the demo model answers the shapes; tests/e2e/test_alerts.py checks the answers)."""
    from edge.capture import demo_world as S
    from tests.e2e.test_alerts import RED_CIRCLE, pictures

    device = "ha-alert"
    folder = tmp_path / "camera"
    folder.mkdir()
    pictures(folder)
    alert_states = collector(f"edge/{device}/alert/#")
    cfg = settings(
        tmp_path,
        broker,
        device,
        camera={"source": str(folder), "width": 640, "height": 480, "fps": 0.5},
        model={"path": str(DEMO_MODEL), "max_new_tokens": 64},
        tasks=[
            {
                "name": "shapes",
                "kind": "structured",
                "prompt": S.STRUCTURED_PROMPTS[0],
                "schema": S.SCHEMA,
                "trigger": "interval",
                "interval_s": 1,
            }
        ],  # fmt: skip
        alerts=[{"name": "red-circle", "task": "shapes", "when": RED_CIRCLE}],
    )
    daemon = start_daemon(tmp_path, cfg)
    try:
        uid = f"{device}_alert_red-circle"
        ents = wait_entities(ha, device, lambda ids: uid in ids, "the alert's binary_sensor")
        entity = ents[uid]["entity_id"]
        assert entity.startswith("binary_sensor."), entity
        seen: list[str] = []

        def transitions() -> bool:
            state = ha.state(entity)
            if (
                state is not None
                and state["state"] in ("on", "off")
                and (not seen or seen[-1] != state["state"])
            ):
                seen.append(state["state"])
            return "on" in seen and "off" in seen[seen.index("on") :]

        wait_until("the alert's binary_sensor on, then off", transitions, 2 * HA_WAIT_S, every=0.2)
    finally:
        stop(daemon)
    mqtt_states = [m.json()["state"] for m in alert_states.on(f"edge/{device}/alert/red-circle")]
    assert "on" in mqtt_states and "off" in mqtt_states[mqtt_states.index("on") :], mqtt_states
