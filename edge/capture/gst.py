"""`gst:<pipeline>` sources: only with an OpenCV built with GStreamer (the boards' system OpenCV).

The opencv-python(-headless) wheels from PyPI have no GStreamer, and without this check the pipeline
would fail with OpenCV's silent `isOpened() == False`.

A pipeline naming an element that is not installed (`nvarguscamerasrc` off a Jetson, `libcamerasrc`
without gstreamer1.0-libcamera) makes OpenCV's VideoCapture wait forever for a preroll that never
comes, in native code nothing can interrupt. So before a pipeline is opened, every element it names
is looked up in GStreamer's registry with `gst-inspect-1.0 --exists` (a child process with a time
limit; the answer is cached per process), and a missing one is a CameraConfigError naming the
element and the package that provides it. Without gst-inspect-1.0 (gstreamer1.0-tools) the check is
skipped with one warning; the grabber's bounded open is then the only wall.

The CSI camera pipelines are in the profiles: nvarguscamerasrc in devices/jetson-orin.toml, and a
libcamerasrc variant beside the picamera2 source in devices/rpi5.toml.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from functools import lru_cache
from typing import TYPE_CHECKING

from edge.capture.base import CameraConfigError
from edge.capture.redact import redact_source

if TYPE_CHECKING:
    from edge.capture.opencv_source import OpenCVSource

log = logging.getLogger(__name__)

PREFIX = "gst:"
APPSINK_TAIL = " ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
GST_INSPECT = "gst-inspect-1.0"
INSPECT_TIMEOUT_S = 10.0  # the first run after boot rebuilds the registry cache (seconds on a Pi)

INSTALL_HINT = (
    "this OpenCV (cv2 {version}) was built without GStreamer, so 'gst:' camera sources cannot work. "
    "Use the system OpenCV that has it: on Jetson the python3-opencv of JetPack (apt), on Raspberry Pi OS "
    "/ Debian / Ubuntu `apt install python3-opencv gstreamer1.0-tools gstreamer1.0-plugins-good`; "
    "then create the venv with `python3 -m venv --system-site-packages` and install edge without the "
    "[opencv] extra (`pip uninstall opencv-python-headless` if it is there), so that "
    "`import cv2` finds the system one. Or use a V4L2, RTSP or 'picamera2' source instead"
)

# Which package brings an element the profiles and the README use (Debian / Raspberry Pi OS names).
PLUGIN_PACKAGES = {
    "libcamerasrc": "gstreamer1.0-libcamera",
    "nvarguscamerasrc": "JetPack's nvidia-l4t-gstreamer (Jetson only)",
    "nvvidconv": "JetPack's nvidia-l4t-gstreamer (Jetson only)",
    "nvv4l2decoder": "JetPack's nvidia-l4t-gstreamer (Jetson only)",
    "v4l2src": "gstreamer1.0-plugins-good",
    "rtspsrc": "gstreamer1.0-plugins-good",
    "rtph264depay": "gstreamer1.0-plugins-good",
    "rtpjpegdepay": "gstreamer1.0-plugins-good",
    "jpegdec": "gstreamer1.0-plugins-good",
    "souphttpsrc": "gstreamer1.0-plugins-good",
    "h264parse": "gstreamer1.0-plugins-bad",
    "avdec_h264": "gstreamer1.0-libav",
}
_ELEMENT = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_warned_no_tools = False


def has_gstreamer() -> bool:
    """Whether cv2 was built with the GStreamer video I/O backend."""
    from edge.imaging.opencv import cv2  # a gst: source or `edge doctor` only: see edge.capture.factory

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


def element_names(pipeline: str) -> list[str]:
    """The element factories a gst-launch pipeline names, in order (caps, pad references and
    properties are not elements); only what is certainly an element name is returned."""
    names: list[str] = []
    for segment in re.sub(r'"[^"]*"', '""', pipeline).split("!"):
        words = segment.replace("(", " ").replace(")", " ").split()
        if not words:
            continue
        first = words[0]
        if "/" in first or "." in first or "=" in first or "," in first:
            continue  # caps (video/x-raw,...), a pad reference (t. / name.src_0), a bare property
        if _ELEMENT.match(first) and first not in names:
            names.append(first)
    return names


def missing_tools() -> str | None:
    """Why pipelines cannot be checked before opening, or None when they can."""
    if shutil.which(GST_INSPECT) is None:
        return f"{GST_INSPECT} not found: elements of 'gst:' pipelines are not checked before opening"
    return None


@lru_cache(maxsize=64)
def element_exists(name: str) -> bool | None:
    """Whether GStreamer's registry has the element; None when it cannot be asked."""
    try:
        proc = subprocess.run(
            [GST_INSPECT, "--exists", name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=INSPECT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("cannot ask GStreamer whether element %s exists: %s", name, err)
        return None
    return proc.returncode == 0


def check_elements(pipeline: str, description: str) -> None:
    """Refuse a pipeline that names an element GStreamer does not have (it would hang the open)."""
    global _warned_no_tools
    why = missing_tools()
    if why is not None:
        if not _warned_no_tools:
            _warned_no_tools = True
            log.warning("%s (apt install gstreamer1.0-tools)", why)
        return
    missing = [name for name in element_names(pipeline) if element_exists(name) is False]
    if missing:
        packages = sorted({PLUGIN_PACKAGES[n] for n in missing if n in PLUGIN_PACKAGES})
        where = f"; it comes with {', '.join(packages)}" if packages else ""
        raise CameraConfigError(
            f"camera source {description!r}: GStreamer has no element {', '.join(missing)} "
            f"(`{GST_INSPECT} {missing[0]}` says so too){where}"
        )


def gst_source(source: str, cancel: threading.Event | None = None) -> OpenCVSource:
    from edge.capture.opencv_source import OpenCVSource
    from edge.imaging.opencv import cv2

    pipeline = pipeline_of(source)
    if not has_gstreamer():
        raise CameraConfigError(INSTALL_HINT.format(version=cv2.__version__))
    description = redact_source(source)
    check_elements(pipeline, description)
    return OpenCVSource(pipeline, kind="gst", description=description, api=cv2.CAP_GSTREAMER, cancel=cancel)
