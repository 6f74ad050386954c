"""Several cameras, end to end: `edge run` as a subprocess with a real broker and three cameras of
different kinds (test pattern, image folder, HTTP MJPEG), one worker serving all of them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edge.core.messages import EventPayload, HealthPayload, ResultPayload, StatePayload
from tests.e2e.harness import base_settings, start_daemon, write_config
from tests.plugins.mosquitto import Collector

ROOT = "edge/cam-e2e"


def results(sub: Collector, camera: str, task: str = "caption") -> list[ResultPayload]:
    return [ResultPayload.model_validate_json(m.payload) for m in sub.on(f"{ROOT}/{camera}/{task}/result")]


def events(sub: Collector, kind: str) -> list[EventPayload]:
    evs = [EventPayload.model_validate_json(m.payload) for m in sub.on(f"{ROOT}/event")]
    return [e for e in evs if e.event == kind]


def wait_event(sub: Collector, kind: str, camera: str, timeout: float) -> EventPayload:
    def found(_: Any) -> bool:
        return any(e.camera == camera for e in events(sub, kind))

    sub.wait_for(found, timeout, f"{kind} of {camera}")
    return next(e for e in events(sub, kind) if e.camera == camera)


def cameras(mjpeg_url: str, images: Path) -> list[dict[str, Any]]:
    common = {"width": 320, "height": 240, "fps": 10, "stall_s": 2, "reconnect_s": 1}
    return [
        {"name": "gate", "source": "testsrc", **common},
        {"name": "yard", "source": mjpeg_url, **common},
        {"name": "shed", "source": str(images), **common},
    ]


def test_three_cameras_one_lost_and_back_while_the_others_publish(
    tmp_path: Path, mosquitto, sub, mjpeg_server, image_dir
) -> None:
    cfg = base_settings(tmp_path, mosquitto)
    del cfg["camera"]
    cfg["cameras"] = cameras(mjpeg_server.url, image_dir.path)
    cfg["tasks"] = [
        {"name": "caption", "kind": "caption", "trigger": "interval", "interval_s": 1},
        {"name": "plates", "kind": "caption", "trigger": "interval", "interval_s": 1, "cameras": ["gate"]},
    ]
    d = start_daemon(tmp_path, cfg)
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 60)
        for camera in ("gate", "yard", "shed"):
            sub.wait_topic(f"{ROOT}/{camera}/caption/result", count=2, timeout=30)
        sub.wait_topic(f"{ROOT}/gate/plates/result", count=1, timeout=10)
        assert all(r.camera == "yard" for r in results(sub, "yard"))
        (state,) = sub.wait_topic(f"{ROOT}/state", count=1, timeout=5)[-1:]
        assert StatePayload.model_validate_json(state.payload).cameras == ["gate", "yard", "shed"]
        health = HealthPayload.model_validate_json(sub.wait_topic(f"{ROOT}/health", 1, 5)[-1].payload)
        assert set(health.cameras) == {"gate", "yard", "shed"}
        assert all(c.frames > 0 for c in health.cameras.values())

        # the MJPEG camera goes away: the other two keep publishing, and the watchdog keeps pinging
        mjpeg_server.stop()
        lost = wait_event(sub, "camera_lost", "yard", 15)
        assert lost.detail["camera"] == "yard"
        t_lost = time.monotonic()
        counts = {c: len(results(sub, c)) for c in ("gate", "shed")}
        for camera in ("gate", "shed"):
            sub.wait_topic(f"{ROOT}/{camera}/caption/result", count=counts[camera] + 3, timeout=30)
        pings = [t for t in d.notify.times_of("WATCHDOG", "1") if t > t_lost]
        assert len(pings) >= 2, "the watchdog stopped while one camera was lost"
        sub.wait_for(
            lambda ms: any(
                m.topic == f"{ROOT}/health" and json.loads(m.payload)["cameras"]["yard"]["state"] == "lost"
                for m in ms
            ),
            10,
            "health saying yard is lost",
        )
        assert not [e for e in events(sub, "camera_lost") if e.camera != "yard"]

        # back: its results resume
        n_yard = len(results(sub, "yard"))
        mjpeg_server.start()
        wait_event(sub, "camera_back", "yard", 20)
        sub.wait_topic(f"{ROOT}/yard/caption/result", count=n_yard + 1, timeout=30)

        # commands name a camera (default: the first); a capture reply says where the result went
        reply_to = "test/replies"
        sub.publish(f"{ROOT}/cmd/capture", json.dumps({"camera": "shed"}), response_topic=reply_to)
        sub.publish(f"{ROOT}/cmd/capture", json.dumps({"camera": "barn"}), response_topic=reply_to)
        sub.publish(
            f"{ROOT}/cmd/ask", json.dumps({"prompt": "who?", "camera": "yard"}), response_topic=reply_to
        )
        replies = [json.loads(m.payload) for m in sub.wait_topic(reply_to, count=3, timeout=30)]
        ok = [r["result"] for r in replies if r["ok"]]
        assert {"id", "topic"} == set(next(r for r in ok if "topic" in r))
        assert any(r.get("topic") == f"{ROOT}/shed/caption/result" for r in ok)
        assert any(r.get("camera") == "yard" and r.get("task") == "ask" for r in ok)
        assert any(not r["ok"] and "unknown camera 'barn'" in r["error"] for r in replies)

        # reload: shed removed, barn added; gate and yard keep their grabbers
        cfg["cameras"] = [c for c in cfg["cameras"] if c["name"] != "shed"]
        cfg["cameras"].append({"name": "barn", "source": "testsrc", "width": 160, "height": 120, "fps": 5})
        write_config(d.config, cfg)
        d.signal(signal.SIGHUP)
        reloaded = wait_reloaded(sub)
        assert reloaded.detail["cameras"] == {"added": ["barn"], "removed": ["shed"], "restarted": []}
        sub.wait_topic(f"{ROOT}/barn/caption/result", count=1, timeout=30)
        assert d.alive()
    finally:
        assert d.stop() == 0, d.log()[-3000:]
    assert d.log().count("camera lost camera=") == 1  # only yard, once


def wait_reloaded(sub: Collector) -> EventPayload:
    sub.wait_for(lambda _: bool(events(sub, "config_reloaded")), 20, "config_reloaded")
    return events(sub, "config_reloaded")[-1]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"tasks": [{"name": "caption", "cameras": ["barn"]}]},
            "tasks.0.cameras: task 'caption': no camera named 'barn'",
        ),
        ({"duplicate": True}, "cameras: duplicate camera names: gate"),
        ({"camera": {"source": "testsrc"}}, "camera: camera (from "),
    ],
)
def test_camera_config_errors_stop_the_daemon_with_one_line(
    tmp_path: Path, mosquitto, change: dict[str, Any], expected: str
) -> None:
    cfg = base_settings(tmp_path, mosquitto)
    del cfg["camera"]
    cfg["cameras"] = [{"name": "gate", "source": "testsrc"}, {"name": "yard", "source": "testsrc"}]
    if change.pop("duplicate", False):
        cfg["cameras"][1]["name"] = "gate"
    cfg.update(change)
    config = write_config(tmp_path / "bad.toml", cfg)
    run = subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 2, run.stderr
    assert expected in run.stderr and str(config) in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_an_unreadable_file_camera_is_not_reported_as_a_30_s_timeout(tmp_path: Path, mosquitto) -> None:
    """Before: "no frame from camera main within 30s", logged one second after start."""
    broken = tmp_path / "broken.png"  # one unreadable still image, played once: the source ends at once
    broken.write_bytes(b"\x00not an image\x00" * 100)
    cfg = base_settings(tmp_path, mosquitto, camera={"source": str(broken), "loop": False})
    d = start_daemon(tmp_path, cfg)
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 90)
        log = d.log()
    finally:
        d.stop()
    (line,) = [x for x in log.splitlines() if "no frame from camera main" in x]
    assert "within 30s" not in line and "source ended: main" in line, line
