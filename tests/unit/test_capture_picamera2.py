"""The Picamera2 adapter against a stand-in module at the SDK seam (no Pi here): configuration it
asks for, BGR frames through the real grabber, and a capture failure turning into a reconnect."""

from __future__ import annotations

import sys
import threading
import time
import types
from typing import Any

import numpy as np
import pytest

from edge.capture import Grabber
from edge.config.settings import CameraSettings


class FakePicamera2:
    instances: list[FakePicamera2] = []
    fail_after: int | None = None

    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num = camera_num
        self.config: dict[str, Any] = {}
        self.started = self.closed = False
        self.captured = 0
        FakePicamera2.instances.append(self)

    def create_video_configuration(
        self, main: dict[str, Any], controls: dict[str, Any], buffer_count: int
    ) -> dict:
        return {"main": dict(main), "controls": dict(controls), "buffer_count": buffer_count}

    def configure(self, config: dict[str, Any]) -> None:
        w, h = config["main"]["size"]
        self.config = {**config, "main": {**config["main"], "size": (w - w % 32, h - h % 2)}}

    def camera_configuration(self) -> dict[str, Any]:
        return self.config

    def start(self) -> None:
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        time.sleep(0.02)
        self.captured += 1
        if FakePicamera2.fail_after is not None and self.captured > FakePicamera2.fail_after:
            raise RuntimeError("Camera frontend has timed out!")
        w, h = self.config["main"]["size"]
        return np.full((h, w, 3), self.captured % 256, np.uint8)

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> type[FakePicamera2]:
    FakePicamera2.instances = []
    FakePicamera2.fail_after = None
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return FakePicamera2


def test_picamera2_frames_through_the_grabber(fake_picamera2: type[FakePicamera2]) -> None:
    grabber = Grabber(CameraSettings(source="picamera2:1", width=1000, height=750, fps=25))
    grabber.start()
    frame = grabber.wait_frame(-1, timeout=5)
    stats = grabber.stats()
    assert grabber.stop(2.0)
    cam = fake_picamera2.instances[-1]
    assert cam.camera_num == 1 and cam.closed and not cam.started
    assert cam.config["main"]["format"] == "RGB888" and cam.config["controls"]["FrameRate"] == 25.0
    assert frame is not None and frame.image.shape == (750, 992, 3)
    assert (stats.width, stats.height, stats.kind) == (992, 750, "picamera2")


def test_picamera2_capture_failure_reconnects(fake_picamera2: type[FakePicamera2]) -> None:
    fake_picamera2.fail_after = 3
    events: list[str] = []
    done = threading.Event()

    def on_event(name: str, payload: dict) -> None:
        events.append(name)
        if events.count("camera_back") >= 1:
            done.set()

    grabber = Grabber(CameraSettings(source="picamera2", stall_s=1.0, reconnect_s=0.2), on_event)
    grabber.start()
    assert done.wait(5), events
    assert grabber.stop(2.0)
    assert events[:2] == ["camera_lost", "camera_back"]
    assert len(fake_picamera2.instances) >= 2 and all(c.closed for c in fake_picamera2.instances)
