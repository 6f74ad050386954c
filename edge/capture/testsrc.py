"""`testsrc`: a synthetic moving scene with a clock, for the demo and for tests without a camera.

It draws the demo model's world (edge.capture.demo_world): a uniform grey background with one to three
circles / squares / triangles in red, green, blue, yellow, white or black, at most one per horizontal
third, each 8-20 % of the image height, and the digital clock text bottom left. The shapes drift
inside their thirds all the time (the motion gate always has something to see), and every
SCENE_S seconds of stream time the scene changes to another one, so the demo model's captions name
what is on screen and change as it changes. `scene_at(frame_number(...))` says what is on screen.

Frame n depends only on n, the size and the fps (the clock shows stream time n/fps, not the wall
clock), so tests and benchmarks are reproducible. It is drawn with numpy (edge.capture.raster), not
OpenCV: the demo camera runs in the daemon's main process, which then never loads cv2 for it.
"""

from __future__ import annotations

import math
import threading
from typing import NamedTuple

import numpy as np

from edge.capture import raster
from edge.capture.base import CameraInfo, Pacer
from edge.capture.demo_world import COLOR_BGR, Scene, centre_range, clock_label, random_scene, size_range

SCENE_S = 8.0  # stream seconds each scene stays on screen
SEED = 20240915  # the test pattern's scene sequence
MIN_CONTRAST = 40  # grey levels between a shape and the background (the motion gate sees it)


def _grey(bgr: tuple[int, int, int]) -> float:
    b, g, r = bgr
    return 0.114 * b + 0.587 * g + 0.299 * r


def scene_index(n: int, fps: float) -> int:
    """Which scene frame n shows."""
    return int((n / fps) // SCENE_S)


def scene_at(k: int, width: int, height: int) -> tuple[Scene, np.random.Generator]:
    """Scene k of the sequence at this size (1-3 shapes, each clearly off the background) and its motion rng."""
    rng = np.random.default_rng([SEED, k])
    while True:
        scene = random_scene(rng, n_shapes=int(rng.integers(1, 4)), size=(width, height))
        if all(abs(_grey(COLOR_BGR[s.color]) - scene.background) >= MIN_CONTRAST for s in scene.shapes):
            return scene, rng


class Placed(NamedTuple):
    """One shape of a frame where it is drawn: centre (cx, cy), radius / half side r, BGR colour."""

    shape: str
    cx: float
    cy: float
    r: float
    color: tuple[int, int, int]


class FrameLayout(NamedTuple):
    """What frame n shows and where: the scene, its shapes placed, the clock's text."""

    scene: Scene
    placed: tuple[Placed, ...]
    label: str


def frame_layout(n: int, width: int, height: int, fps: float) -> FrameLayout:
    """Where frame `n`'s shapes are and what its clock says (depends only on n, the size and the fps)."""
    t = n / fps
    scene, rng = scene_at(scene_index(n, fps), width, height)
    r_min, r_max = size_range(width, height)
    placed = []
    for s in scene.shapes:
        # Size and path are fixed per scene: a Lissajous drift inside the shape's third.
        r = rng.uniform(r_min + 0.15 * (r_max - r_min), r_max - 0.15 * (r_max - r_min))
        wx, wy = rng.uniform(1.2, 2.0), rng.uniform(0.8, 1.4)
        px, py = rng.uniform(0, 2 * math.pi, 2)
        (x0, x1), (y0, y1) = centre_range(width, height, s.position, r)
        cx = x0 + (x1 - x0) * (0.5 + 0.5 * math.sin(wx * t + px))
        cy = y0 + (y1 - y0) * (0.5 + 0.5 * math.sin(wy * t + py))
        placed.append(Placed(s.shape, cx, cy, r, COLOR_BGR[s.color]))
    return FrameLayout(scene, tuple(placed), clock_label(t, n))


def render_frame(n: int, width: int, height: int, fps: float) -> np.ndarray:
    """Frame `n` of the synthetic scene (uint8 HxWx3 BGR)."""
    layout = frame_layout(n, width, height, fps)
    img = np.full((height, width, 3), layout.scene.background, np.uint8)
    for p in layout.placed:
        raster.draw_shape(img, p.shape, p.cx, p.cy, p.r, p.color)
    raster.clock_text(img, layout.label)
    return img


def scene_of_frame(n: int, width: int, height: int, fps: float) -> Scene:
    """What frame n shows (the truth the demo model's caption is checked against)."""
    return scene_at(scene_index(n, fps), width, height)[0]


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
        self._n = 0

    def open(self) -> CameraInfo:
        self._n = 0
        return CameraInfo(self.kind, self.description, self.width, self.height, self.fps, backend="synthetic")

    def grab(self) -> None:
        """The next frame's turn: a frame the idle rate skips is never drawn."""
        if self._pacer is not None:
            self._pacer.wait()
        self._n += 1

    def retrieve(self) -> np.ndarray:
        """The frame last grabbed, drawn now (it depends only on its number)."""
        return render_frame(self._n - 1, self.width, self.height, self.fps)

    def read(self) -> np.ndarray:
        self.grab()
        return self.retrieve()

    def close(self) -> None:
        pass
