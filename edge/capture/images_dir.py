"""A directory (or glob) of still images, or one still image, played as a camera.

Files are decoded by OpenCV through edge.imaging.imageio, never by a model runtime: a corrupt or truncated
file becomes one counted invalid frame, not a crash. The listing is refreshed at every wrap-around,
so images dropped into the folder while the daemon runs are picked up.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
from pathlib import Path

import numpy as np

from edge.capture.base import CameraConfigError, CameraError, CameraInfo, Pacer, StreamEnded
from edge.imaging.imageio import read_image_file

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
_GLOB_CHARS = frozenset("*?[")


def is_glob(source: str) -> bool:
    return any(c in source for c in _GLOB_CHARS)


_MAGIC = (
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"P1",
    b"P2",
    b"P3",
    b"P4",
    b"P5",
    b"P6",
)


def is_still_image(path: Path) -> bool:
    """A file that is one still image (by its suffix or its first bytes), not a video."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def list_images(source: str) -> list[str]:
    """Image files of a directory or glob pattern, in name order."""
    if is_glob(source):
        paths = glob.glob(os.path.expanduser(source))
    else:
        root = Path(source).expanduser()
        if root.is_file():  # one still image: read like the folder's, its header checked first
            return [str(root)]
        paths = [str(p) for p in root.iterdir()] if root.is_dir() else []
    return sorted(p for p in paths if Path(p).suffix.lower() in IMAGE_SUFFIXES and os.path.isfile(p))


class ImagesDirSource:
    kind = "images"

    def __init__(
        self,
        source: str,
        fps: float = 1.0,
        realtime: bool = True,
        loop: bool = True,
        cancel: threading.Event | None = None,
    ) -> None:
        self.source = source
        self.description = source
        self.loop = loop
        self.paced_by_consumer = not realtime
        self._pacer = Pacer(fps, cancel) if realtime else None
        self._fps = fps
        self._files: list[str] = []
        self._index = 0
        self._grabbed: str | None = None
        where = Path(source).expanduser()
        if not is_glob(source) and not where.is_dir() and not where.is_file():
            raise CameraConfigError(f"camera source {source!r}: no such directory")

    def open(self) -> CameraInfo:
        self._files = list_images(self.source)
        self._index = 0
        if not self._files:
            raise CameraError(
                f"camera source {self.source!r}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        log.info("images source=%s files=%d", self.description, len(self._files))
        return CameraInfo(self.kind, self.description, fps=self._fps, backend="imageio")

    def read(self) -> np.ndarray:
        self.grab()
        return self.retrieve()

    def grab(self) -> None:
        """The next file's name (an idle camera reads only some of the files it passes)."""
        if self._index >= len(self._files):
            if not self.loop:
                raise StreamEnded(f"{self.description}: all {len(self._files)} images played")
            self._files = list_images(self.source)
            self._index = 0
            if not self._files:
                raise CameraError(f"camera source {self.source!r}: no image files left")
        if self._pacer is not None:
            self._pacer.wait()
        self._grabbed = self._files[self._index]
        self._index += 1

    def retrieve(self) -> np.ndarray:
        path, self._grabbed = self._grabbed, None
        if path is None:
            raise CameraError(f"camera source {self.source!r}: retrieve() without grab()")
        return read_image_file(path)  # FrameError for a bad file: counted, and the next one is read

    def close(self) -> None:
        self._files = []
