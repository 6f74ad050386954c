"""`edge run` with an event task on the demo model: two frames of one motion event in one prompt, and
the published answer says what changed between them, in the order the camera saw them.

An image-folder camera alternates two pictures of one scene before and after an edit (a shape
appeared, disappeared or moved). Each switch is motion; the event takes the frame before it (pre-roll)
and the one after, so the right answer is `scenes.answer_changed(before, after)` for the pictures the
event published as its first and last key frames. A pipeline that reorders, drops or reuses frames of
an event answers differently. The scene pair is fixed by seed and answered right by the model (checked
with both frame orders); accuracy overall is in benchmarks/standin_accuracy.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.assets import package_file
from edge.capture import demo_world as S
from edge.core.messages import ResultPayload
from edge.imaging.opencv import cv2
from tests.e2e.harness import base_settings, start_daemon
from tests.plugins.mosquitto import Collector

ROOT = "edge/cam-e2e/main/changes"


def scene_pair(folder: Path) -> list[tuple[S.Scene, np.ndarray]]:
    """A scene and the same scene after an edit, 640x480 PNGs named so the folder alternates them."""
    rng = np.random.default_rng([779, 0])
    before = S.random_scene(rng, n_shapes=2, size=(640, 480))
    after = S.random_change(before, rng)
    while after == before:
        after = S.random_change(before, rng)
    out = []
    for name, scene in (("a", before), ("b", after)):
        image = S.draw(scene, rng, overlay=False, jpeg=False)
        assert cv2.imwrite(str(folder / f"{name}.png"), image)
        out.append((scene, image))
    return out


def which(jpeg: bytes, pair: list[tuple[S.Scene, np.ndarray]]) -> S.Scene:
    shown = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert shown is not None, "not a JPEG"
    diffs = [float(np.abs(shown.astype(int) - img.astype(int)).mean()) for _, img in pair]
    assert min(diffs) < 5 < max(diffs), diffs
    return pair[int(np.argmin(diffs))][0]


def test_an_event_of_two_frames_says_what_changed_between_them(tmp_path: Path, mosquitto) -> None:
    folder = tmp_path / "camera"
    folder.mkdir()
    pair = scene_pair(folder)
    assert S.answer_changed(pair[0][0], pair[1][0]) != S.answer_changed(pair[1][0], pair[0][0])
    cfg = base_settings(
        tmp_path,
        mosquitto,
        camera={"source": str(folder), "width": 640, "height": 480, "fps": 1},
        gate={"motion_threshold": 0.01, "min_interval_s": 0.2},
        model={"path": str(package_file("assets/models/demo-ort")), "max_new_tokens": 64},
        tasks=[
            {
                "name": "changes",
                "kind": "event",
                "prompt": S.CHANGE_PROMPTS[0],
                "frames": 2,
                "preroll": 1,
                "frame_interval_s": 0.2,
                "publish_image": True,
            }
        ],
    )
    sub = Collector(mosquitto, "#", persistent=True).start()
    d = start_daemon(tmp_path, cfg)
    try:
        sub.wait_topic(f"{ROOT}/result", count=3, timeout=60)
        sub.wait_topic(f"{ROOT}/image", count=6, timeout=20)
    finally:
        rc = d.stop(timeout=30)
        sub.stop()
    assert rc == 0, d.log()[-3000:]
    images: dict[str, dict[str, bytes]] = {}
    for m in sub.on(f"{ROOT}/image"):
        images.setdefault(m.user["id"], {})[m.user["frame"]] = m.payload
    answered = []
    for r in (ResultPayload.model_validate_json(m.payload) for m in sub.on(f"{ROOT}/result")):
        if r.id not in images:
            continue
        assert r.frames is not None and len(r.frames) == 2
        assert r.frames[0].captured_at < r.frames[1].captured_at
        first, last = which(images[r.id]["0"], pair), which(images[r.id]["1"], pair)
        assert first != last, "an event of one picture: no motion between its frames"
        assert r.text == S.answer_changed(first, last), (r.seq, first, last)
        answered.append(r.text)
    assert len(answered) >= 2, answered
