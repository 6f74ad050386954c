"""OpenCV and FFmpeg print nothing of their own on a failed open: the journal gets our one line only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_CHILD = """
import sys
from edge.capture.factory import build_camera
from edge.capture.base import CameraError
from edge.config.settings import CameraSettings
for source in sys.argv[1:]:
    for _ in range(2):  # a reconnect
        try:
            build_camera(CameraSettings(source=source, stall_s=2)).open()
        except CameraError as err:
            print("refused:", err)
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_refused_stream_leaves_no_opencv_or_ffmpeg_lines() -> None:
    port = _closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCV_", "CV_"))}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, f"rtsp://127.0.0.1:{port}/cam", "/dev/video97"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("refused:") == 4, proc.stdout
    for noise in ("[ WARN", "[tcp @", "global cap", "Connection to tcp"):
        assert noise not in proc.stderr, proc.stderr
        assert noise not in proc.stdout, proc.stdout
