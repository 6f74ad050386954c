"""Raspberry Pi CSI cameras through Picamera2 (libcamera), imported only when this source is chosen.

picamera2 is not on PyPI in a usable form: it comes from Raspberry Pi OS's apt repository, built
against the system libcamera, so the venv must see the system site-packages.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import numpy as np

from edge.capture.base import CameraConfigError, CameraError, CameraInfo

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "camera source 'picamera2' needs the picamera2 package, which is not importable here: "
    "install python3-picamera2 (apt, Raspberry Pi OS) and create the venv with "
    "`python3 -m venv --system-site-packages` so that it is visible"
)


def import_picamera2() -> Any:
    try:
        return importlib.import_module("picamera2")
    except ImportError as err:
        raise CameraConfigError(f"{INSTALL_HINT} ({err})") from err


class Picamera2Source:
    kind = "picamera2"
    paced_by_consumer = False

    def __init__(self, width: int | None, height: int | None, fps: float, camera_num: int = 0) -> None:
        self._module = import_picamera2()
        self.description = "picamera2" if camera_num == 0 else f"picamera2:{camera_num}"
        self.size = (width or 1280, height or 720)
        self.fps = fps
        self.camera_num = camera_num
        self._cam: Any = None

    def open(self) -> CameraInfo:
        try:
            cam = self._module.Picamera2(self.camera_num)
            # "RGB888" in libcamera's naming is B,G,R in memory: exactly OpenCV's BGR, no conversion.
            config = cam.create_video_configuration(
                main={"size": self.size, "format": "RGB888"},
                controls={"FrameRate": float(self.fps)},
                buffer_count=4,
            )
            cam.configure(config)
            cam.start()
        except Exception as err:  # libcamera raises RuntimeError/IndexError/OSError variously
            raise CameraError(
                f"camera {self.description}: could not start ({type(err).__name__}: {err})"
            ) from err
        self._cam = cam
        # configure() may align the size to what the sensor mode allows: report what it chose.
        width, height = (cam.camera_configuration() or config)["main"]["size"]
        log.info("camera opened kind=picamera2 size=%dx%d fps=%s", width, height, self.fps)
        return CameraInfo(self.kind, self.description, int(width), int(height), self.fps, "BGR3", "libcamera")

    def read(self) -> np.ndarray:
        if self._cam is None:
            raise CameraError(f"camera {self.description}: not open")
        try:
            frame = self._cam.capture_array("main")
        except Exception as err:
            raise CameraError(
                f"camera {self.description}: capture failed ({type(err).__name__}: {err})"
            ) from err
        if isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 4:
            frame = frame[:, :, :3]  # XRGB8888 configurations carry a padding channel
        image: np.ndarray = frame  # Picamera2 is untyped; the grabber validates what comes back
        return image

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is None:
            return
        try:
            cam.stop()
        finally:
            cam.close()
