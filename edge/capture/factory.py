"""Choosing the source for `camera.source`: the one place that knows every source family.

Constructing a source does no I/O beyond import checks, so a configuration that can never work
(no GStreamer in this OpenCV, no picamera2, a missing directory) fails at startup as one clear line,
while a camera that is merely unreachable is left to the grabber to retry.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from edge.capture.base import Camera, CameraConfigError, CameraError
from edge.capture.gst import PREFIX as GST_PREFIX
from edge.capture.gst import gst_source
from edge.capture.images_dir import ImagesDirSource, is_glob, is_still_image
from edge.capture.redact import redact_source
from edge.config.settings import CameraSettings
from edge.core.errors import FrameError
from edge.core.messages import Frame
from edge.imaging.frames import prepare_image

log = logging.getLogger(__name__)

OPEN_TIMEOUT_FLOOR_S = 5.0  # RTSP DESCRIBE/SETUP plus FFmpeg's stream probing takes ~2 s even on loopback
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_PICAMERA2 = re.compile(r"^picamera2(?::(\d+))?$")


def open_timeout_s(settings: CameraSettings) -> float:
    """How long connecting may take before it counts as a failure (then: backoff and retry)."""
    return max(settings.stall_s, OPEN_TIMEOUT_FLOOR_S)


def source_kind(source: int | str) -> str:
    """The source family: v4l2, testsrc, picamera2, gst, rtsp, stream, http-mjpeg, images or file."""
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        return "v4l2"
    text = source.strip()
    if text.startswith("/dev/"):
        return "v4l2"
    if text == "testsrc":
        return "testsrc"
    if _PICAMERA2.match(text):
        return "picamera2"
    if text.startswith(GST_PREFIX):
        return "gst"
    scheme = _SCHEME.match(text)
    if scheme:
        name = scheme.group(1).lower()
        if name in ("http", "https"):
            return "http-mjpeg"
        if name == "file":
            return "images" if Path(text[7:]).is_dir() else "file"
        return "rtsp" if name in ("rtsp", "rtsps") else "stream"
    if is_glob(text) or Path(text).expanduser().is_dir():
        return "images"
    return "file"


def needs_opencv(source: int | str) -> bool:
    """Whether this source is read through cv2.VideoCapture (see build_camera): V4L2, streams,
    video files and GStreamer pipelines do; testsrc, picamera2, MJPEG and still images do not."""
    kind = source_kind(source)
    if kind in ("v4l2", "rtsp", "stream", "gst"):
        return True
    if kind != "file":
        return False
    path = _local_path(str(source).strip())
    return not (path.is_file() and is_still_image(path))


def _local_path(text: str) -> Path:
    """A file or folder source as a path: `file://` taken off, `~` expanded."""
    return Path(text[7:] if text.startswith("file://") else text).expanduser()


def require_libraries(cameras: Sequence[CameraSettings]) -> None:
    """Import OpenCV now if a configured source needs it, so that a missing or broken OpenCV is one
    line at start (OpenCVUnavailable, exit 1) rather than a camera that fails and retries forever."""
    if any(needs_opencv(camera.source) for camera in cameras):
        import edge.imaging.opencv  # noqa: F401  (raises OpenCVUnavailable, naming the cause)


def describe_source(source: int | str) -> str:
    """The source as logs and payloads show it: redacted, and a device index as its /dev path."""
    if source_kind(source) == "v4l2" and str(source).strip().isdigit():
        return f"/dev/video{int(source)}"
    return redact_source(source)


def build_camera(settings: CameraSettings, cancel: threading.Event | None = None) -> Camera:
    """A new, unopened source for `settings.source`; raises CameraConfigError if it can never work.

    `cancel` interrupts a paced source's sleep when the grabber abandons or stops it. OpenCV is
    imported only for the sources read through cv2.VideoCapture (V4L2, RTSP and other streams,
    video files, GStreamer pipelines): testsrc, picamera2, MJPEG over HTTP and still images never
    load it, which keeps ~33 MB of RSS out of the main process.
    """
    source = settings.source
    kind = source_kind(source)
    realtime = settings.pace == "realtime"
    fps = settings.fps
    text = str(source).strip()
    if kind == "v4l2":
        from edge.capture.opencv_source import OpenCVSource, v4l2_api

        target: int | str = int(source) if not str(source).startswith("/dev/") else text
        return OpenCVSource(
            target,
            kind="v4l2",
            description=describe_source(source),
            api=v4l2_api(),
            request=(settings.width, settings.height, fps),
        )
    if kind == "testsrc":
        from edge.capture.testsrc import TestSource  # each source's module loads with its first camera

        return TestSource(
            settings.width or 640, settings.height or 480, fps, realtime=realtime, cancel=cancel
        )
    if kind == "picamera2":
        match = _PICAMERA2.match(text)
        num = int(match.group(1)) if match and match.group(1) else 0
        from edge.capture.picamera2_source import Picamera2Source

        return Picamera2Source(settings.width, settings.height, fps, camera_num=num)
    if kind == "gst":
        return gst_source(text, cancel=cancel)
    if kind == "http-mjpeg":
        from edge.capture.http_mjpeg import MjpegHttpSource

        return MjpegHttpSource(text, timeout_s=settings.stall_s, snapshot_fps=fps, cancel=cancel)
    if kind in ("rtsp", "stream"):
        from edge.capture.opencv_source import OpenCVSource, ffmpeg_api, stream_timeout_params

        return OpenCVSource(
            text,
            kind=kind,
            description=redact_source(text),
            api=ffmpeg_api(),
            params=stream_timeout_params(open_timeout_s(settings), settings.stall_s),
        )
    path = text[7:] if text.startswith("file://") else text
    if kind == "images":
        return ImagesDirSource(path, fps=fps, realtime=realtime, loop=settings.loop, cancel=cancel)
    local = _local_path(text)
    if not local.is_file():
        what = "not a regular file" if local.exists() else "no such file or directory"
        raise CameraConfigError(
            f"camera source {redact_source(text)!r}: {what} (a source is a device, file, directory, "
            "URL, 'gst:<pipeline>', 'picamera2' or 'testsrc')"
        )
    if is_still_image(local):
        # Not through FFmpeg: it would decode whatever size the file declares on every read.
        return ImagesDirSource(path, fps=fps, realtime=realtime, loop=settings.loop, cancel=cancel)
    from edge.capture.opencv_source import OpenCVSource, ffmpeg_api

    return OpenCVSource(
        str(local),
        kind="file",
        description=redact_source(path),
        api=ffmpeg_api(),
        realtime=realtime,
        loop=settings.loop,
        fallback_fps=fps,
        cancel=cancel,
    )


def check_source(settings: CameraSettings) -> None:
    """Refuse a source that cannot work here, from a stat (no device is opened): `config check`
    and one-shots. A missing device and a missing file are both CameraConfigError (exit 2), named
    accurately. The daemon's grabber does not call this: a USB camera may be plugged in later."""
    build_camera(settings)  # gst, picamera2, directories, files
    if source_kind(settings.source) != "v4l2" or not sys.platform.startswith("linux"):
        return
    device = describe_source(settings.source)
    if not os.path.exists(device):
        found = ", ".join(sorted(glob.glob("/dev/video*"))[:6]) or "none"
        raise CameraConfigError(f"camera source {device!r}: no such device (video devices here: {found})")


def open_camera(settings: CameraSettings) -> Camera:
    """Build and open the configured source (for one-shot use; the daemon uses a Grabber).

    The open is bounded by open_timeout_s: a native open that never returns (a GStreamer pipeline
    that cannot preroll) is left on a daemon thread and reported as one CameraError; a one-shot
    process exits soon after, and the daemon's grabber never calls this."""
    check_source(settings)
    camera = build_camera(settings)
    limit = open_timeout_s(settings)
    box: dict[str, BaseException] = {}

    def run_open() -> None:
        try:
            camera.open()
        except BaseException as err:  # handed to the caller's thread
            box["error"] = err

    opener = threading.Thread(target=run_open, name="camera-open", daemon=True)
    opener.start()
    opener.join(limit)
    if opener.is_alive():
        raise CameraError(
            f"camera {camera.description}: not open after {limit:.0f} s (the source never answered)"
        )
    if "error" in box:
        raise box["error"]
    return camera


def grab_frame(settings: CameraSettings, timeout_s: float | None = None) -> Frame:
    """One validated frame from the configured camera, for `edge caption --camera` and `edge doctor`.

    Skips invalid frames until `timeout_s` (default stall_s) runs out; raises CameraError then.
    """
    deadline = time.monotonic() + (settings.stall_s if timeout_s is None else timeout_s)
    camera = open_camera(settings)
    try:
        last_error = "no frame"
        while time.monotonic() < deadline:
            try:
                image = prepare_image(camera.read(), settings.max_edge)
            except FrameError as err:
                last_error = str(err)
                continue
            return Frame(image, time.time(), time.monotonic(), 0, settings.name)
        raise CameraError(f"camera {camera.description}: no valid frame in time ({last_error})")
    finally:
        camera.close()
