"""`testsrc`: a synthetic moving scene with a clock, for the demo and for tests without a camera.

Frame n depends only on n and the size (the clock shows stream time n/fps, not the wall clock), so
tests and benchmarks are reproducible; the moving ball and the sweeping hand give the motion gate
something to see at any resolution.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from edge.capture.base import CameraInfo, Pacer
from edge.imaging.opencv import cv2


def _background(width: int, height: int) -> np.ndarray:
    """A static gradient with a grid and a few fixed shapes: texture for the gate, cheap to copy."""
    x = np.linspace(40, 120, width, dtype=np.float32)
    y = np.linspace(30, 90, height, dtype=np.float32)[:, None]
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[..., 0] = (x + y).clip(0, 255).astype(np.uint8)
    img[..., 1] = (x * 0.6 + y * 0.8).clip(0, 255).astype(np.uint8)
    img[..., 2] = (y * 1.5).clip(0, 255).astype(np.uint8)
    step = max(16, min(width, height) // 8)
    for gx in range(0, width, step):
        cv2.line(img, (gx, 0), (gx, height - 1), (70, 70, 70), 1)
    for gy in range(0, height, step):
        cv2.line(img, (0, gy), (width - 1, gy), (70, 70, 70), 1)
    s = min(width, height)
    cv2.rectangle(
        img, (width // 10, height // 2), (width // 10 + s // 6, height // 2 + s // 5), (40, 90, 160), -1
    )
    cv2.circle(img, (width * 8 // 10, height * 3 // 4), max(4, s // 12), (150, 60, 60), -1)
    return img


def render_frame(
    n: int, width: int, height: int, fps: float, background: np.ndarray | None = None
) -> np.ndarray:
    """Frame `n` of the synthetic scene (uint8 HxWx3 BGR)."""
    img = (background if background is not None else _background(width, height)).copy()
    t = n / fps
    s = min(width, height)
    # A ball bouncing on a Lissajous path: always moving, crosses most of the frame.
    r = max(4, s // 10)
    cx = int(r + (width - 2 * r) * (0.5 + 0.5 * math.sin(t * 0.9)))
    cy = int(r + (height - 2 * r) * (0.5 + 0.5 * math.sin(t * 1.3 + 1.0)))
    cv2.circle(img, (cx, cy), r, (30, 200, 240), -1, cv2.LINE_AA)
    # An analog clock face with a seconds hand, top right.
    cr = max(8, s // 8)
    cc = (width - cr - max(4, s // 40), cr + max(4, s // 40))
    cv2.circle(img, cc, cr, (235, 235, 235), -1, cv2.LINE_AA)
    cv2.circle(img, cc, cr, (20, 20, 20), max(1, s // 240), cv2.LINE_AA)
    angle = (t % 60.0) / 60.0 * 2 * math.pi
    tip = (int(cc[0] + 0.9 * cr * math.sin(angle)), int(cc[1] - 0.9 * cr * math.cos(angle)))
    cv2.line(img, cc, tip, (0, 0, 200), max(1, s // 160), cv2.LINE_AA)
    # The digital clock and frame number, bottom left.
    hours, rem = divmod(t, 3600.0)
    minutes, seconds = divmod(rem, 60.0)
    label = f"{int(hours):02d}:{int(minutes):02d}:{seconds:06.3f}  #{n}"
    scale = max(0.35, s / 600.0)
    thickness = max(1, int(round(scale * 2)))
    org = (max(4, s // 40), height - max(6, s // 30))
    cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return img


class TestSource:
    """Renders the scene at the requested size; realtime at `fps`, or as fast as it is consumed."""

    kind = "testsrc"
    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        fps: float = 15.0,
        realtime: bool = True,
        cancel: threading.Event | None = None,
    ) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.description = "testsrc"
        self.paced_by_consumer = not realtime
        self._pacer = Pacer(fps, cancel) if realtime else None
        self._background: np.ndarray | None = None
        self._n = 0

    def open(self) -> CameraInfo:
        self._background = _background(self.width, self.height)
        self._n = 0
        return CameraInfo(self.kind, self.description, self.width, self.height, self.fps, backend="synthetic")

    def read(self) -> np.ndarray:
        if self._pacer is not None:
            self._pacer.wait()
        frame = render_frame(self._n, self.width, self.height, self.fps, self._background)
        self._n += 1
        return frame

    def close(self) -> None:
        self._background = None
