"""An alert through the real `edge run` on the demo model: an image-folder camera alternating a
picture with a red circle and one without, a structured task every second, and an alert on "a red
circle": its retained state follows the pictures (on, off, on) naming the answers that changed it,
with an event per change, and a late subscriber gets the last state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.assets import package_file
from edge.capture import demo_world as S
from edge.core.messages import EventPayload, ResultPayload
from edge.imaging.opencv import cv2
from tests.e2e.harness import base_settings, start_daemon
from tests.helpers.webhook_receiver import Receiver
from tests.integration.mqtt_stack import wait_until
from tests.plugins.mosquitto import Collector, free_port

ROOT = "edge/cam-e2e"
RED_CIRCLE = "length(shapes[?shape=='circle' && color=='red']) > `0`"


def pictures(folder: Path) -> None:
    with_red = S.Scene(shapes=(S.Shape("circle", "red", "left"), S.Shape("square", "green", "right")))
    without = S.Scene(shapes=(S.Shape("triangle", "blue", "center"),))
    for i, scene in enumerate((with_red, without)):
        rng = np.random.default_rng([34, i])
        assert cv2.imwrite(str(folder / f"scene{i}.png"), S.draw(scene, rng, overlay=False, jpeg=False))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_alert_state_follows_the_pictures(tmp_path: Path, mosquitto) -> None:
    folder = tmp_path / "camera"
    folder.mkdir()
    pictures(folder)
    port = free_port()
    hook = f"http://127.0.0.1:{port}/alerts"  # nothing listens there until three changes were made
    cfg = base_settings(
        tmp_path,
        mosquitto,
        camera={"source": str(folder), "width": 640, "height": 480, "fps": 0.5},
        model={"path": str(package_file("assets/models/demo-ort")), "max_new_tokens": 64},
        tasks=[
            {
                "name": "shapes",
                "kind": "structured",
                "prompt": S.STRUCTURED_PROMPTS[0],
                "schema": S.SCHEMA,
                "trigger": "interval",
                "interval_s": 1,
            },
        ],  # fmt: skip
        alerts=[{"name": "red-circle", "task": "shapes", "when": RED_CIRCLE, "webhook": hook}],
    )
    sub = Collector(mosquitto, f"{ROOT}/#", persistent=True).start()
    d = start_daemon(tmp_path, cfg)
    try:
        sub.wait_topic(f"{ROOT}/alert/red-circle", count=3, timeout=120)
        receiver = Receiver(port)
        try:
            wait_until(lambda: len(receiver.got) >= 3, timeout=90, what="the webhook's three changes")
        finally:
            receiver.stop()
    finally:
        rc = d.stop(timeout=30)
        sub.stop()
    assert rc == 0, d.log()[-3000:]
    answers = (ResultPayload.model_validate_json(m.payload) for m in sub.on(f"{ROOT}/main/shapes/result"))
    results = {r.id: r for r in answers}
    states = [m.json() for m in sub.on(f"{ROOT}/alert/red-circle")]
    assert [s["state"] for s in states[:3]] == ["on", "off", "on"], states
    for s in states:
        data = results[s["result_id"]].data
        assert isinstance(data, dict)
        has_red = any(x["shape"] == "circle" and x["color"] == "red" for x in data["shapes"])
        assert has_red == (s["state"] == "on"), (s, data)
    events = [EventPayload.model_validate_json(m.payload) for m in sub.on(f"{ROOT}/event")]
    changes = [(e.event, e.detail["result_id"]) for e in events if e.event.startswith("alert_")]
    assert changes[:3] == [(f"alert_{s['state']}", s["result_id"]) for s in states[:3]]
    late = Collector(mosquitto, f"{ROOT}/alert/#").start()  # the retained state, for whoever comes later
    try:
        got = late.wait_topic(f"{ROOT}/alert/red-circle", 1, timeout=10)
    finally:
        late.stop()
    assert got[0].retain and got[0].json() == states[-1]
    # the webhook, down for the first changes, got each once, in order, with the same body
    assert [b for _, b in receiver.got[:3]] == states[:3]
    assert len({k for k, _ in receiver.got}) == len(receiver.got)
    print(f"\nalert states: {[s['state'] for s in states]}")
