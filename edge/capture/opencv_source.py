"""Sources read through cv2.VideoCapture: V4L2 devices, RTSP streams, video files, GStreamer pipelines.

OpenCV's `read()` is a native call that cannot be interrupted, so network streams get FFmpeg's own
open/read timeouts (the grabber's stall detection is the backstop when a driver ignores them).
Everything that OpenCV prints is free of the URL; our own log lines use the redacted description.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence

import numpy as np

from edge.capture.base import CameraError, CameraInfo, Pacer, StreamEnded, valid_fps
from edge.core.errors import FrameError
from edge.imaging.imageio import decode_image_bytes
from edge.imaging.opencv import MAX_EDGE, cv2

log = logging.getLogger(__name__)


def fourcc_text(code: float) -> str | None:
    value = int(code)
    if value <= 0:
        return None
    text = "".join(chr((value >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() else None


def _videocapture(target: int | str, api: int, params: Sequence[int]) -> cv2.VideoCapture:
    if params:
        try:
            return cv2.VideoCapture(target, api, list(params))
        except TypeError:  # OpenCV < 4.5.2 has no params argument; timeouts then come from FFmpeg defaults
            log.debug("VideoCapture(params) unsupported by OpenCV %s", cv2.__version__)
    return cv2.VideoCapture(target, api)


def stream_timeout_params(open_timeout_s: float, read_timeout_s: float) -> list[int]:
    """FFmpeg open/read timeouts (OpenCV >= 4.6); an older OpenCV ignores what it lacks."""
    params: list[int] = []
    if hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC"):
        params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(1, int(open_timeout_s * 1000))]
    if hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):
        params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1, int(read_timeout_s * 1000))]
    return params


class OpenCVSource:
    """One cv2.VideoCapture. `kind` decides what a failed read means: end of file, or a lost stream."""

    def __init__(
        self,
        target: int | str,
        *,
        kind: str,
        description: str,
        api: int = cv2.CAP_ANY,
        params: Sequence[int] = (),
        request: tuple[int | None, int | None, float | None] = (None, None, None),
        realtime: bool = True,
        loop: bool = False,
        fallback_fps: float = 15.0,
        cancel: threading.Event | None = None,
    ) -> None:
        self.target = target
        self.kind = kind
        self.description = description
        self.api = api
        self.params = list(params)
        self.request = request
        self.loop = loop
        self.is_file = kind == "file"
        self.paced_by_consumer = self.is_file and not realtime
        self._realtime = realtime
        self._fallback_fps = fallback_fps
        self._cancel = cancel
        self._cap: cv2.VideoCapture | None = None
        self._pacer: Pacer | None = None
        self._jpeg_packets = False  # an MJPEG file: grab() takes the JPEG, retrieve() decodes it

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> CameraInfo:
        try:
            cap = _videocapture(self.target, self.api, self.params)
        except cv2.error as err:
            raise CameraError(f"camera {self.description}: OpenCV could not open it ({err.msg})") from None
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"camera {self.description}: could not open ({self._hint()})")
        if self.is_file:
            # What the container declares, before a frame is decoded: FFmpeg would otherwise
            # allocate whatever size a file claims, on every read.
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if w > MAX_EDGE or h > MAX_EDGE:
                cap.release()
                raise CameraError(
                    f"camera {self.description}: {w}x{h} pixels, over {MAX_EDGE} per edge: not decoded"
                )
        self._cap = cap
        if self.kind == "v4l2":
            self._configure_device(cap)
        fourcc = fourcc_text(cap.get(cv2.CAP_PROP_FOURCC))
        self._jpeg_packets = self.is_file and fourcc == "MJPG" and _packets(cap)
        fps = valid_fps(cap.get(cv2.CAP_PROP_FPS))
        if self.is_file and self._realtime:
            self._pacer = Pacer(fps or self._fallback_fps, self._cancel)
        info = CameraInfo(
            kind=self.kind,
            source=self.description,
            width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or None,
            height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or None,
            fps=fps,
            fourcc=fourcc,
            backend=cap.getBackendName(),
        )
        log.info(
            "camera opened kind=%s source=%s backend=%s size=%sx%s fps=%s fourcc=%s",
            info.kind,
            info.source,
            info.backend,
            info.width,
            info.height,
            info.fps,
            info.fourcc,
        )
        return info

    def _configure_device(self, cap: cv2.VideoCapture) -> None:
        """Ask for MJPG (USB bandwidth) at the requested size and rate; the driver may pick others."""
        width, height, fps = self.request
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        got = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if (width and got[0] != width) or (height and got[1] != height):
            log.warning(
                "camera %s: requested %sx%s, device gives %dx%d", self.description, width, height, *got
            )

    def _hint(self) -> str:
        if self.kind == "v4l2":
            return "no such device, busy, or no permission (is the user in group 'video'?)"
        if self.kind == "file":
            return "missing, unreadable or not a video OpenCV can decode"
        if self.kind == "gst":
            return "GStreamer could not start the pipeline; run it with gst-launch-1.0 to see why"
        return "unreachable, refused, wrong path, or wrong credentials"

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    # ------------------------------------------------------------------ frames

    def read(self) -> np.ndarray:
        self.grab()
        return self.retrieve()

    def grab(self) -> None:
        """The next frame, taken but not yet a BGR image. An MJPEG file's frame stays a JPEG until
        retrieve(); other streams are decoded here by FFmpeg (each frame depends on the last), so
        an idle camera saves the conversion to BGR and everything after it."""
        cap = self._cap
        if cap is None:
            raise CameraError(f"camera {self.description}: not open")
        if self._pacer is not None:
            self._pacer.wait()
        if cap.grab():
            return
        if not self.is_file:
            raise CameraError(f"camera {self.description}: no frame (stream ended, dropped or timed out)")
        if not self.loop:
            raise StreamEnded(f"{self.description}: end of file")
        # Seeking back is unreliable for some containers; reopening is not.
        self.close()
        cap = _videocapture(self.target, self.api, self.params)
        self._cap = cap
        if self._jpeg_packets and not _packets(cap):
            self._jpeg_packets = False
        if cap.isOpened() and cap.grab():
            log.debug("file source=%s looped", self.description)
            return
        raise StreamEnded(f"{self.description}: no frames after rewinding")

    def retrieve(self) -> np.ndarray:
        cap = self._cap
        if cap is None:
            raise CameraError(f"camera {self.description}: not open")
        ok, frame = cap.retrieve()
        if not ok or frame is None:
            raise FrameError(f"camera {self.description}: a grabbed frame could not be decoded")
        if self._jpeg_packets:
            return decode_image_bytes(frame.tobytes())  # FrameError for a damaged one
        return frame


def _packets(cap: cv2.VideoCapture) -> bool:
    """FFmpeg hands over each frame undecoded (an MJPEG file's frames are JPEGs): grab() then costs
    nothing and a frame that is not due is never decoded. False where this OpenCV cannot."""
    try:
        return bool(cap.set(cv2.CAP_PROP_FORMAT, -1)) and cap.get(cv2.CAP_PROP_FORMAT) == -1
    except cv2.error:
        return False


def v4l2_api() -> int:
    """V4L2 explicitly on Linux (CAP_ANY may pick GStreamer and ignore the requested format)."""
    return cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY


def ffmpeg_api() -> int:
    """OpenCV's FFmpeg backend (streams and video files), named here so callers need not import cv2."""
    return int(cv2.CAP_FFMPEG)
