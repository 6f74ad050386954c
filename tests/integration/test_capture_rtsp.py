"""RTSP through OpenCV's FFmpeg backend against Debian's gst-rtsp-server in a child process, which
the test kills (SIGKILL) and starts again on the same port. Skips only when its Debian packages
are missing (tests.plugins.streams.RTSP_PACKAGES)."""

from __future__ import annotations

import logging
import time

import pytest

from edge.capture import Grabber
from edge.config.settings import CameraSettings
from tests.plugins.streams import CameraEvents, RtspServer

# FFmpeg probes ~2 s of an RTSP stream while opening, even on loopback.
STALL_S = 1.5
RECONNECT_S = 1.0
OPEN_S = 6.0
MARGIN_S = 2.0


def test_rtsp_frames_then_kill_and_restart(rtsp_server: RtspServer, camera_events: CameraEvents) -> None:
    settings = CameraSettings(source=rtsp_server.url, stall_s=STALL_S, reconnect_s=RECONNECT_S)
    grabber = Grabber(settings, camera_events)
    grabber.start()
    first = grabber.wait_frame(-1, timeout=OPEN_S + MARGIN_S)
    assert first is not None, grabber.stats()
    assert first.image.shape == (240, 320, 3)
    time.sleep(0.5)
    stats = grabber.stats()
    assert stats.kind == "rtsp" and stats.state == "ok"
    assert (stats.width, stats.height) == (320, 240) and stats.device_fps == 10.0
    last = grabber.latest()
    assert last is not None

    killed = time.monotonic()
    rtsp_server.kill()
    lost_at, lost = camera_events.wait_for("camera_lost", timeout=STALL_S + MARGIN_S)
    assert lost_at - killed <= STALL_S + MARGIN_S
    assert lost["source"] == rtsp_server.url and lost["reason"]

    time.sleep(0.5)
    restarted = time.monotonic()
    rtsp_server.start()
    back_at, _ = camera_events.wait_for("camera_back", timeout=RECONNECT_S + OPEN_S + MARGIN_S)
    assert back_at - restarted <= RECONNECT_S + OPEN_S + MARGIN_S
    newer = grabber.wait_frame(last.seq, timeout=3.0)
    final = grabber.stats()
    started = time.monotonic()
    assert grabber.stop(3.0)
    assert time.monotonic() - started < 3.0
    assert newer is not None and newer.seq > last.seq
    assert camera_events.names() == ["camera_lost", "camera_back"]
    assert final.state == "ok" and final.losses == 1 and final.reconnects >= 1 and final.abandoned == 0


def test_rtsp_wrong_path_is_lost_without_leaking_credentials(
    rtsp_server: RtspServer,
    camera_events: CameraEvents,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    url = rtsp_server.url.replace("rtsp://", "rtsp://viewer:Pa55-w0rd@").replace("/cam", "/nope")
    settings = CameraSettings(source=url, stall_s=STALL_S, reconnect_s=RECONNECT_S)
    with caplog.at_level(logging.DEBUG, logger="edge"):
        grabber = Grabber(settings, camera_events)
        grabber.start()
        _, lost = camera_events.wait_for("camera_lost", timeout=OPEN_S + MARGIN_S)
        stats = grabber.stats()
        assert grabber.stop(3.0)
    native = capfd.readouterr()  # OpenCV / FFmpeg print straight to the file descriptors
    assert "could not open" in lost["reason"]
    assert stats.frames == 0 and stats.source == url.replace("Pa55-w0rd", "***")
    everything = caplog.text + native.out + native.err + repr(camera_events.events) + repr(stats)
    assert "Pa55-w0rd" not in everything
