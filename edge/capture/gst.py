"""`gst:<pipeline>` sources: only with an OpenCV built with GStreamer (the boards' system OpenCV).

The opencv-python(-headless) wheels from PyPI have no GStreamer, and without this check the pipeline
would fail with OpenCV's silent `isOpened() == False`. The CSI camera pipelines (nvarguscamerasrc on
Jetson, libcamerasrc on a Pi) are in devices/*.toml.
"""

from __future__ import annotations

import re
import threading

from edge.capture.base import CameraConfigError
from edge.capture.opencv_source import OpenCVSource
from edge.capture.redact import redact_source
from edge.imaging.opencv import cv2

PREFIX = "gst:"
APPSINK_TAIL = " ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"

INSTALL_HINT = (
    "this OpenCV (cv2 {version}) was built without GStreamer, so 'gst:' camera sources cannot work. "
    "Use the system OpenCV that has it: on Jetson the python3-opencv of JetPack (apt), on Raspberry Pi OS "
    "/ Debian / Ubuntu `apt install python3-opencv gstreamer1.0-plugins-good gstreamer1.0-plugins-bad`; "
    "then create the venv with `python3 -m venv --system-site-packages` and do not install "
    "opencv-python / opencv-python-headless into it (`pip uninstall opencv-python-headless`), so that "
    "`import cv2` finds the system one. Or use a V4L2, RTSP or 'picamera2' source instead"
)


def has_gstreamer() -> bool:
    """Whether cv2 was built with the GStreamer video I/O backend."""
    for line in cv2.getBuildInformation().splitlines():
        if re.match(r"\s*GStreamer\s*:", line):
            return "YES" in line.upper()
    return False


def pipeline_of(source: str) -> str:
    """The pipeline text after `gst:`, ending in an appsink that delivers BGR (appended when missing)."""
    pipeline = source[len(PREFIX) :].strip()
    if not pipeline:
        raise CameraConfigError("camera source 'gst:' has no pipeline after the prefix")
    if "appsink" not in pipeline:
        pipeline += APPSINK_TAIL
    return pipeline


def gst_source(source: str, cancel: threading.Event | None = None) -> OpenCVSource:
    pipeline = pipeline_of(source)
    if not has_gstreamer():
        raise CameraConfigError(INSTALL_HINT.format(version=cv2.__version__))
    return OpenCVSource(
        pipeline, kind="gst", description=redact_source(source), api=cv2.CAP_GSTREAMER, cancel=cancel
    )
