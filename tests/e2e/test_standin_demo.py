"""`edge run` on the demo model with an image-folder camera of two scenes: every published caption
describes the very frame published beside it (each picture stays 2 s, a caption every 1 s) (no stale frame between the grabber, the job, the
worker's frame slot and the result), and the captions change as the camera's picture changes.

Scenes the model gets right are fixed by seed; accuracy overall is in the benchmark
(benchmarks/standin_accuracy.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.assets import package_file
from edge.capture import demo_world as S
from edge.core.messages import ResultPayload
from edge.imaging.opencv import cv2
from tests.e2e.harness import base_settings, start_daemon
from tests.plugins.mosquitto import Collector

ROOT = "edge/cam-e2e/main/caption"


def two_scenes(folder: Path) -> list[tuple[S.Scene, np.ndarray]]:
    """Two held-out scenes the model gets right (seeds [777, 2] and [777, 3], checked) at 640x480, as PNGs."""
    out = []
    for i in (2, 3):
        rng = np.random.default_rng([777, i])
        scene = S.random_scene(rng, n_shapes=1 + i % 3, size=(640, 480))
        image = S.draw(scene, rng, overlay=False, jpeg=False)
        assert cv2.imwrite(str(folder / f"scene{i}.png"), image)
        out.append((scene, image))
    return out


def test_captions_follow_the_camera_picture_through_edge_run(tmp_path: Path, mosquitto) -> None:
    folder = tmp_path / "camera"
    folder.mkdir()
    scenes = two_scenes(folder)
    assert S.caption(scenes[0][0]) != S.caption(scenes[1][0])
    cfg = base_settings(
        tmp_path,
        mosquitto,
        camera={"source": str(folder), "width": 640, "height": 480, "fps": 0.5},
        model={"path": str(package_file("assets/models/demo-ort")), "max_new_tokens": 48},
        tasks=[
            {
                "name": "caption",
                "kind": "caption",
                "prompt": S.CAPTION_PROMPTS[0],
                "trigger": "interval",
                "interval_s": 1,
                "publish_image": True,
            },
        ],  # fmt: skip
    )
    sub = Collector(mosquitto, "#", persistent=True).start()
    d = start_daemon(tmp_path, cfg)
    try:
        sub.wait_topic(f"{ROOT}/image", count=8, timeout=60)
    finally:
        rc = d.stop(timeout=30)
        sub.stop()
    assert rc == 0, d.log()[-3000:]
    results = {
        r.id: r for r in (ResultPayload.model_validate_json(m.payload) for m in sub.on(f"{ROOT}/result"))
    }
    seen = []
    for msg in sub.on(f"{ROOT}/image"):
        shown = cv2.imdecode(np.frombuffer(msg.payload, np.uint8), cv2.IMREAD_COLOR)
        assert shown is not None, "not a JPEG"
        # which of the two pictures this job took (the JPEG is close to one, far from the other)
        diffs = [float(np.abs(shown.astype(int) - img.astype(int)).mean()) for _, img in scenes]
        scene = scenes[int(np.argmin(diffs))][0]
        assert min(diffs) < 5 < max(diffs), diffs
        result = results[msg.user["id"]]
        assert result.text == S.caption(scene), (result.seq, diffs)
        seen.append(result.text)
    assert len(set(seen)) == 2, seen  # the picture changed under the running daemon, and so did the caption
    assert sum(a != b for a, b in zip(seen, seen[1:], strict=False)) >= 2, seen
