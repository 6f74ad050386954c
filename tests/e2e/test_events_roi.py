"""Event tasks and motion crops end to end: `edge run` as a subprocess, a real broker."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.core.messages import ResultPayload
from edge.inference.phi3v_preprocess import tokens_for_frame
from tests.e2e.harness import base_settings, start_daemon
from tests.plugins.mosquitto import Collector

ROOT = "edge/cam-e2e"


def _results(sub: Collector, task: str) -> list[ResultPayload]:
    return [ResultPayload.model_validate_json(m.payload) for m in sub.on(f"{ROOT}/main/{task}/result")]


def test_event_task_publishes_one_result_from_n_frames_at_n_times_the_image_tokens(
    tmp_path: Path, mosquitto, sub
) -> None:
    settings = base_settings(
        tmp_path,
        mosquitto,
        gate={"motion_threshold": 0.005, "min_interval_s": 0.5},
        tasks=[
            {"name": "caption", "kind": "caption", "trigger": "interval", "interval_s": 2},
            {
                "name": "visit",
                "kind": "event",
                "prompt": "What happened?",
                "frames": 3,
                "frame_interval_s": 0.3,
                "preroll": 1,
                "max_event_s": 5,
                "num_crops": 1,
                "publish_image": True,
            },
        ],
    )
    d = start_daemon(tmp_path, settings)
    try:
        sub.wait_topic(f"{ROOT}/main/visit/result", count=1, timeout=60)
        sub.wait_topic(f"{ROOT}/main/caption/result", count=1, timeout=30)
        sub.wait_topic(f"{ROOT}/main/visit/image", count=2, timeout=10)
    finally:
        rc = d.stop()
    assert rc == 0, d.log()[-3000:]
    one = _results(sub, "caption")[0]
    ev = _results(sub, "visit")[0]
    per_frame = tokens_for_frame(240, 320, 1)
    assert one.stats.image_tokens == per_frame  # the model's num_crops (1 in the harness)
    assert ev.frames is not None and len(ev.frames) == 3
    assert ev.stats.image_tokens == 3 * per_frame == 3 * one.stats.image_tokens
    times = [f.captured_at for f in ev.frames]
    assert times == sorted(times) and len(set(times)) == 3 and ev.captured_at == times[0]
    assert ev.context is not None and ev.context["event"]["ended_by"] in ("frames", "max_event_s", "quiet")
    assert ev.context["event"]["started_at"] <= ev.context["event"]["ended_at"]
    assert ev.roi is None and one.frames is None
    images = [m for m in sub.on(f"{ROOT}/main/visit/image") if m.user.get("id") == ev.id]
    assert sorted(m.user.get("frame") for m in images) == ["0", "1"]  # first and last key frame


def _scene(i: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """640x480 textured background; a 30x30 square moving right 10 px per image inside x 380..500."""
    rng = np.random.default_rng(7)
    bg = cv2.resize(
        rng.integers(60, 120, (12, 16, 3), dtype=np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC
    )
    x, y = 380 + 10 * (i % 8), 330
    bg[y : y + 30, x : x + 30] = (40, 220, 250)
    return bg, (x, y, 30, 30)


def _square_in(jpeg: bytes) -> tuple[int, int, int, int]:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    ys, xs = np.nonzero((img[:, :, 2] > 200) & (img[:, :, 1] > 180) & (img[:, :, 0] < 110))
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def test_roi_task_reports_a_box_that_contains_the_moving_object(tmp_path: Path, mosquitto, sub) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(8):
        cv2.imwrite(str(frames / f"{i:03d}.png"), _scene(i)[0])
    settings = base_settings(
        tmp_path,
        mosquitto,
        camera={"source": str(frames), "width": 640, "height": 480, "fps": 5},
        gate={"motion_threshold": 0.0005, "min_interval_s": 0.5},
        tasks=[
            {"name": "crop", "kind": "caption", "trigger": "motion", "roi": "motion", "publish_image": True}
        ],
    )
    d = start_daemon(tmp_path, settings)
    try:
        sub.wait_for(lambda _: sum(r.roi is not None for r in _results(sub, "crop")) >= 2, timeout=60)
        sub.wait_topic(f"{ROOT}/main/crop/image", count=3, timeout=10)
    finally:
        rc = d.stop()
    assert rc == 0, d.log()[-3000:]
    images = {m.user.get("id"): m.payload for m in sub.on(f"{ROOT}/main/crop/image")}
    with_box = [r for r in _results(sub, "crop") if r.roi is not None and r.id in images]
    assert with_box
    full = tokens_for_frame(480, 640, 1)
    for r in with_box:
        assert r.roi is not None
        x, y, w, h = r.roi
        assert x >= 0 and y >= 0 and x + w <= 640 and y + h <= 480
        assert w * h < 640 * 480 / 2  # a region, not the frame
        sx, sy, sw, sh = _square_in(images[r.id])  # the object in the very frame the result describes
        assert x <= sx and y <= sy and sx + sw <= x + w and sy + sh <= y + h, (r.roi, (sx, sy, sw, sh))
        # the crop is what the model saw: its image tokens are the box's, not the whole frame's
        assert r.stats.image_tokens == tokens_for_frame(h, w, 1) and w < 640
    assert full == tokens_for_frame(480, 640, 1)
