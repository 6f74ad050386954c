"""The real daemon's wiring at its edges: serial trigger, GNSS and sink over ptys, and
pixels through the real worker and frame slot on both backends, via `edge run` as a subprocess."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.serial.nmea import checksum
from tests.e2e.harness import MODELS, base_settings, start_daemon
from tests.e2e.wiring import ROOT, results
from tests.plugins.mosquitto import Received
from tests.plugins.ptys import PtyLink

SUB_TOPICS = f"{ROOT}/#"  # what the `sub` fixture (tests/e2e/conftest.py) subscribes to


@pytest.fixture
def ptys(tmp_path: Path) -> Iterator[dict[str, PtyLink]]:
    links = {name: PtyLink(tmp_path / f"tty{name}") for name in ("gnss", "trigger", "sink")}
    yield links
    for link in links.values():
        link.close()


def gga(lat: str, lon: str) -> bytes:
    body = f"GNGGA,123519.00,{lat},N,{lon},E,1,08,0.9,545.4,M,46.9,M,,"
    return f"${body}*{checksum(body):02X}\r\n".encode()


def test_serial_trigger_runs_its_task_with_the_gnss_position_and_the_sink_gets_its_line(
    tmp_path: Path, mosquitto, sub, ptys: dict[str, PtyLink]
) -> None:
    cfg = base_settings(
        tmp_path,
        mosquitto,
        tasks=[
            {"name": "caption", "kind": "caption", "trigger": "interval", "interval_s": 600},
            {"name": "door", "kind": "caption", "trigger": "serial", "prompt": "Who is at the door?"},
        ],
        serial={
            "gnss_port": ptys["gnss"].path,
            "trigger_port": ptys["trigger"].path,
            "trigger_pattern": "^MOTION",
            "sink_port": ptys["sink"].path,
            "sink_min_interval_s": 0,
        },
    )
    d = start_daemon(tmp_path, cfg)
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 60)
        ptys["gnss"].write(gga("4807.038", "01131.000"))
        sub.wait_topic(f"{ROOT}/main/caption/result", count=1, timeout=30)  # the first interval job is done
        ptys["sink"].read_lines(1, timeout=5)  # its sink line
        ptys["gnss"].write(gga("4807.038", "01131.000"))  # a fresh fix
        ptys["trigger"].write(b"noise 1\r\nMOTION zone=3\r\n")
        (msg,) = sub.wait_topic(f"{ROOT}/main/door/result", timeout=30)
        lines = ptys["sink"].read_lines(1, timeout=10)
    finally:
        assert d.stop() == 0, d.log()[-3000:]
    (door,) = results(sub, "door")
    assert door.trigger == "serial" and door.context and door.context["serial_line"] == "MOTION zone=3"
    assert door.position is not None and door.position.fix >= 1
    assert door.position.lat == pytest.approx(48 + 7.038 / 60, abs=1e-6)
    assert door.position.lon == pytest.approx(11 + 31.0 / 60, abs=1e-6)
    assert [line.decode().split("|", 2)[:2] for line in lines] == [[str(door.seq), "door"]], lines
    assert lines[0].endswith(b"\n")


def _images(folder: Path) -> dict[str, np.ndarray]:
    """Two distinct images: smooth gradients (JPEG keeps them apart) with different colours and shapes."""
    folder.mkdir()
    y, x = np.mgrid[0:240, 0:320]
    a = np.stack([x * 255 // 319, y * 255 // 239, np.full_like(x, 40)], axis=-1).astype(np.uint8)
    b = np.zeros((240, 320, 3), np.uint8)
    b[:, :] = (200, 60, 220)
    cv2.circle(b, (160, 120), 80, (20, 240, 30), -1)
    imgs = {"a": a, "b": b}
    for name, img in imgs.items():
        cv2.imwrite(str(folder / f"{name}.png"), img)
    return imgs


@pytest.mark.parametrize(("model", "backend"), [("ort-phi3v-fp32", "ort-genai"), ("ov-phi3v", "openvino")])
def test_different_pixels_give_different_output_and_the_same_pixels_the_same(
    tmp_path: Path, mosquitto, sub, model: str, backend: str
) -> None:
    """An image-directory camera alternating two pictures, greedy decoding: every result is paired with
    the frame it describes (its published image) and the output must follow the pixels. A stale frame
    (the same picture every time) or a zeroed one gives one output for both and fails."""
    imgs = _images(tmp_path / "frames")
    cfg = base_settings(
        tmp_path,
        mosquitto,
        camera={"source": str(tmp_path / "frames"), "fps": 2},
        model={
            "path": str(MODELS / model),
            "backend": backend,
            "providers": ["cpu"] if backend == "ort-genai" else ["CPU"],
            "temperature": 0.0,
            "max_new_tokens": 12,
        },
        tasks=[
            {
                "name": "caption",
                "kind": "caption",
                "trigger": "interval",
                # below the camera's 0.5 s frame period: the trigger fires on frame arrival, so an
                # interval of about one period (or more) can lock onto one phase of the a/b cycle
                # and see one picture only (0.5 s did, 2 runs in 3 on a loaded 2-core machine)
                "interval_s": 0.3,
                "publish_image": True,
            }
        ],
        gate={"min_interval_s": 0.2, "max_interval_s": 600},
    )
    d = start_daemon(tmp_path, cfg)
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 90)

        def seen() -> dict[str, set[str]]:
            by_id = {r.id: r for r in results(sub)}
            texts: dict[str, set[str]] = defaultdict(set)
            for m in sub.on(f"{ROOT}/main/caption/image"):
                r = by_id.get(m.user["id"])
                if r is None:
                    continue
                texts[_name_of(m, imgs)].add(f"{r.stats.new_tokens}:{r.text}")
            return texts

        sub.wait_for(
            lambda _ms: sum(len(v) >= 1 for v in seen().values()) == 2, 60, "results for both images"
        )
        # at least two results of each picture: "the same pixels, the same output"
        sub.wait_for(
            lambda ms: (
                min(
                    (
                        sum(1 for m in ms if m.topic.endswith("/image") and _name_of(m, imgs) == k)
                        for k in imgs
                    ),
                )
                >= 2
            ),
            60,
            "two results per image",
        )
        texts = seen()
    finally:
        assert d.stop() == 0, d.log()[-3000:]
    assert all(r.model.backend == backend for r in results(sub))
    assert len(texts["a"]) == 1 and len(texts["b"]) == 1, dict(texts)
    assert texts["a"] != texts["b"], dict(texts)


def _name_of(m: Received, imgs: dict[str, np.ndarray]) -> str:
    """Which of the pictures a published frame (JPEG) is: the nearest in pixels."""
    decoded = cv2.imdecode(np.frombuffer(m.payload, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None, "not a JPEG"
    frame = cv2.resize(decoded, (320, 240))
    return min(imgs, key=lambda k: float(np.abs(frame.astype(int) - imgs[k]).mean()))
