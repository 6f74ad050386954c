"""OpenCV, configured before its first import: every edge module takes `cv2` from here.

OpenCV reads these variables once, when the library loads, so they are set before `import cv2`
(a value already in the environment wins: `OPENCV_LOG_LEVEL=DEBUG edge run` still debugs):
- OPENCV_IO_MAX_IMAGE_*: its decoders refuse anything larger than our own frame limit, a second
  wall behind the header check in edge.imaging.header (OpenCV's default is 2^30 pixels).
- OPENCV_LOG_LEVEL=ERROR: no "[ WARN:0@…] global cap.cpp …" in the journal on every reconnect;
  our own log line already says what failed, with the source redacted.
- OPENCV_FFMPEG_LOGLEVEL=-8 (AV_LOG_QUIET): no "[tcp @ 0x…] Connection … refused" from FFmpeg.
"""

from __future__ import annotations

import os

MAX_EDGE = 8192  # pixels per edge; imageio.MAX_EDGE is this value

OPENCV_ENV = {
    "OPENCV_IO_MAX_IMAGE_WIDTH": str(MAX_EDGE),
    "OPENCV_IO_MAX_IMAGE_HEIGHT": str(MAX_EDGE),
    "OPENCV_IO_MAX_IMAGE_PIXELS": str(MAX_EDGE * MAX_EDGE),
    "OPENCV_LOG_LEVEL": "ERROR",
    "OPENCV_FFMPEG_LOGLEVEL": "-8",
}

for _key, _value in OPENCV_ENV.items():
    os.environ.setdefault(_key, _value)

import cv2 as cv2  # noqa: E402  (after the environment above, on purpose)

__all__ = ["OPENCV_ENV", "cv2"]
