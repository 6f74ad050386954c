"""OpenCV, configured before its first import: every edge module takes `cv2` from here.

OpenCV reads these variables once, when the library loads, so they are set before `import cv2`
(a value already in the environment wins: `OPENCV_LOG_LEVEL=DEBUG edge run` still debugs):
- OPENCV_IO_MAX_IMAGE_*: its decoders refuse anything larger than our own frame limit, a second
  wall behind the header check in edge.imaging.header (OpenCV's default is 2^30 pixels).
- OPENCV_LOG_LEVEL=ERROR: no "[ WARN:0@…] global cap.cpp …" in the journal on every reconnect
  (nor GStreamer's "Cannot query video position" on every `gst:` open);
  our own log line already says what failed, with the source redacted.
- OPENCV_FFMPEG_LOGLEVEL=-8 (AV_LOG_QUIET): no "[tcp @ 0x…] Connection … refused" from FFmpeg.
- OPENCV_FOR_THREADS_NUM=1: OpenCV's own thread pool off. The daemon already runs one thread per
  camera, its operations are small (a decode, a gate-sized resize), and the cores belong to the
  model's runtime: a pool that wakes every core for each small call only adds CPU (an idle 720p15
  MJPEG camera: 0.95 -> 0.88 % of a core, benchmarks/README.md).

OpenCV is not a core dependency: the `[opencv]` extra installs PyPI's wheel (no GStreamer), a board
uses its system OpenCV (`python3-opencv` through a `--system-site-packages` venv). When `import cv2`
fails, OpenCVUnavailable says which of the two usual causes it is (none installed, or a system
OpenCV built against numpy 1.x beside a numpy 2 in the venv): one line, exit 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys

from edge.core.errors import EdgeError
from edge.imaging.header import MAX_EDGE

OPENCV_ENV = {
    "OPENCV_IO_MAX_IMAGE_WIDTH": str(MAX_EDGE),
    "OPENCV_IO_MAX_IMAGE_HEIGHT": str(MAX_EDGE),
    "OPENCV_IO_MAX_IMAGE_PIXELS": str(MAX_EDGE * MAX_EDGE),
    "OPENCV_LOG_LEVEL": "ERROR",
    "OPENCV_FFMPEG_LOGLEVEL": "-8",
    "OPENCV_FOR_THREADS_NUM": "1",
}


class OpenCVUnavailable(EdgeError, ImportError):
    """`import cv2` failed; the message names the cause and the fix (an ImportError too)."""


def import_failure(err: BaseException) -> str:
    """One line for a failed `import cv2`: what is wrong and what to install."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, ModuleNotFoundError) and getattr(err, "name", None) == "cv2":
        return (
            "OpenCV is not installed: `pip install 'edge-vlm-agent[opencv]'` (PyPI's wheel), or on a board "
            "`apt install python3-opencv` and a venv made with `python3 -m venv --system-site-packages`"
        )
    try:
        import numpy

        numpy_version = numpy.__version__
    except Exception:  # numpy itself is broken: that is the cause
        return f"OpenCV cannot be imported because numpy cannot ({text}): reinstall numpy"
    if "numpy" in text.lower() or "_ARRAY_API" in text or "multiarray" in text:
        return (
            f"OpenCV (cv2) cannot be imported with numpy {numpy_version}: it was built against another "
            f"numpy ({text}). A system python3-opencv needs the system's numpy 1.x: "
            "`pip uninstall numpy` in the venv (or `pip install 'numpy<2'`), and do not install the "
            "[opencv] extra there"
        )
    return f"OpenCV (cv2) cannot be imported: {text} (numpy {numpy_version})"


for _key, _value in OPENCV_ENV.items():
    os.environ.setdefault(_key, _value)

# numpy 2 prints a page (with a traceback) to sys.stderr when a module built for numpy 1.x loads;
# our one line says the same, so that page is kept only if the import succeeds after all.
_said = io.StringIO()
try:
    with contextlib.redirect_stderr(_said):
        import cv2 as cv2  # noqa: E402  (after the environment above, on purpose)
except ImportError as _err:
    raise OpenCVUnavailable(import_failure(_err)) from None
if _said.getvalue():
    sys.stderr.write(_said.getvalue())

__all__ = ["MAX_EDGE", "OPENCV_ENV", "OpenCVUnavailable", "cv2", "import_failure"]
