"""Camera capture: sources, the latest-frame grabber, reconnection, frame validation, redaction.

The runtime needs only what is exported here; everything else is one module per source family.
"""

from edge.capture.base import Camera, CameraConfigError, CameraError, CameraInfo, StreamEnded
from edge.capture.factory import build_camera, grab_frame, open_camera, source_kind
from edge.capture.grabber import CaptureState, CaptureStats, Grabber
from edge.capture.redact import redact_source

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
