"""A source whose open never returns (a GStreamer pipeline that cannot preroll) must not grow the
thread count: the grabber waits for its stuck reader instead of starting one more per retry.
The source is a stand-in at the Camera seam (the real hang needs a system OpenCV with GStreamer:
tests/integration/test_system_opencv.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge.capture import CameraInfo, Grabber
from edge.capture import grabber as grabber_module
from edge.config.settings import CameraSettings

RELEASE = threading.Event()


class HangingOpen:
    kind = "gst"
    description = "gst:nvarguscamerasrc ! appsink"
    paced_by_consumer = False

    def open(self) -> CameraInfo:
        RELEASE.wait()  # a native call nothing can interrupt
        return CameraInfo(kind=self.kind, source=self.description)

    def read(self) -> np.ndarray:
        time.sleep(0.02)
        return np.zeros((48, 64, 3), np.uint8)

    def close(self) -> None:
        pass


def test_retries_of_a_hanging_open_keep_the_thread_count_flat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grabber_module, "build_camera", lambda settings, cancel=None: HangingOpen())
    monkeypatch.setattr(grabber_module, "open_timeout_s", lambda settings: 0.2)
    monkeypatch.setattr(grabber_module, "RETIRE_GRACE_S", 0.1)
    RELEASE.clear()
    before = threading.active_count()
    grabber = Grabber(CameraSettings(source="testsrc", stall_s=1.0, reconnect_s=0.2), backoff_initial_s=0.05)
    grabber.start()
    counts = []
    for _ in range(8):
        time.sleep(0.5)
        counts.append(threading.active_count() - before)
    stats = grabber.stats()
    # before: one more stuck reader per retry (about 10 in 4 s)
    assert max(counts) <= 2, counts  # the supervisor and the one stuck reader
    assert stats.state == "lost" and stats.abandoned == 1, stats
    RELEASE.set()  # the native call returns at last: the next session opens and reads
    assert grabber.wait_frame(timeout=5.0) is not None
    assert grabber.stop(2.0)
