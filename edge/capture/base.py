"""The camera seam: what every source implements, and the errors that steer the grabber.

A source only opens, reads one raw frame, and closes; it never validates, times out on its own
schedule, or reconnects. That is the grabber's job, so every source gets the same stall detection,
backoff and events, whether it is a USB camera, an RTSP stream or a folder of JPEGs.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from edge.core.errors import EdgeError


class CameraError(EdgeError):
    """The source failed (could not open, connection dropped, read timed out): worth reconnecting."""


class CameraConfigError(CameraError):
    """The source can never work as configured (missing GStreamer, picamera2, directory): no retry."""

    exit_code = 2


class StreamEnded(CameraError):
    """A finite source (file, image directory with loop=false) has no more frames."""


@dataclass(frozen=True)
class CameraInfo:
    """What the device actually delivers, which may differ from what was requested."""

    kind: str  # "v4l2" | "rtsp" | "http-mjpeg" | "file" | "images" | "gst" | "picamera2" | "testsrc"
    source: str  # redacted
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    fourcc: str | None = None
    backend: str | None = None


@runtime_checkable
class Camera(Protocol):
    """One connection to one source. Not thread-safe: one reader thread owns it from open to close.

    `read()` returns a raw frame (the grabber validates it), or raises:
    - `edge.core.errors.FrameError` for one bad frame (dropped and counted; reading goes on),
    - `StreamEnded` at the end of a finite source,
    - `CameraError` when the connection is gone (the grabber reconnects with backoff).
    """

    kind: str
    description: str  # redacted; safe for logs and payloads
    paced_by_consumer: bool  # pace="asap" on a finite/synthetic source: read only when the last was taken

    def open(self) -> CameraInfo: ...

    def read(self) -> np.ndarray: ...

    def close(self) -> None: ...


@runtime_checkable
class TwoStepCamera(Protocol):
    """A source that can take a frame off the stream without decoding it, as cv2.VideoCapture does.

    `grab()` takes the next frame (raising like `read()`), `retrieve()` decodes the one grabbed
    (FrameError for a bad one). An idle camera's grabber gates only a few frames a second: the
    others are grabbed and never decoded, which is most of what an idle MJPEG camera costs.
    `read()` stays, and is `grab()` then `retrieve()`.
    """

    def grab(self) -> None: ...

    def retrieve(self) -> np.ndarray: ...


def valid_fps(value: float | None) -> float | None:
    """Devices and containers report 0, NaN or 90000 when they do not know their rate."""
    if value is None or not math.isfinite(value) or value <= 0 or value > 1000:
        return None
    return float(value)


class Pacer:
    """Spaces reads to a frame rate on a fixed schedule (no drift), sleeping interruptibly.

    A late reader does not try to catch up with a burst: the schedule restarts from now.
    """

    def __init__(self, fps: float, cancel: threading.Event | None = None) -> None:
        self.period = 1.0 / fps
        self._cancel = cancel or threading.Event()
        self._next: float | None = None

    def wait(self) -> None:
        now = time.monotonic()
        if self._next is None or now - self._next > self.period:
            self._next = now
        delay = self._next - now
        if delay > 0:
            self._cancel.wait(delay)
        self._next += self.period
