"""Camera capture: sources, the latest-frame grabber, reconnection, frame validation, redaction.

The runtime needs only what is exported here; everything else is one module per source family.
The names that need OpenCV load on first use (PEP 562), so importing the package (and the errors
and redaction it exports) works even where `import cv2` fails: `edge doctor` reports that failure
as its own line instead of dying on an import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edge.capture.base import Camera, CameraConfigError, CameraError, CameraInfo, StreamEnded
from edge.capture.redact import redact_source

if TYPE_CHECKING:
    from edge.capture.factory import build_camera, grab_frame, open_camera, source_kind
    from edge.capture.grabber import CaptureState, CaptureStats, Grabber

_LAZY = {
    "build_camera": "edge.capture.factory",
    "grab_frame": "edge.capture.factory",
    "open_camera": "edge.capture.factory",
    "source_kind": "edge.capture.factory",
    "CaptureState": "edge.capture.grabber",
    "CaptureStats": "edge.capture.grabber",
    "Grabber": "edge.capture.grabber",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Camera",
    "CameraConfigError",
    "CameraError",
    "CameraInfo",
    "CaptureState",
    "CaptureStats",
    "Grabber",
    "StreamEnded",
    "build_camera",
    "grab_frame",
    "open_camera",
    "redact_source",
    "source_kind",
]
