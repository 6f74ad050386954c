"""HTTP MJPEG cameras: a local multipart/x-mixed-replace server that the tests kill, hang, restart
and feed broken parts. Short stall_s / reconnect_s keep it quick; time bounds have wide margins."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from edge.capture import Grabber
from edge.config.settings import CameraSettings
from tests.plugins.streams import CameraEvents, MjpegServer

STALL_S = 1.0
RECONNECT_S = 1.0
MARGIN_S = 2.0


def settings(url: str, **kw: Any) -> CameraSettings:
    return CameraSettings(source=url, stall_s=STALL_S, reconnect_s=RECONNECT_S, **kw)


def wait_frames(grabber: Grabber, count: int, timeout: float = 10.0) -> int:
    """Wait until the grabber has published `count` more frames; returns the last seq seen."""
    deadline = time.monotonic() + timeout
    seen, last = 0, -1
    while seen < count:
        frame = grabber.wait_frame(last, timeout=max(0.0, deadline - time.monotonic()))
        assert frame is not None, f"only {seen}/{count} frames within {timeout}s: {grabber.stats()}"
        seen, last = seen + 1, frame.seq
    return last


def test_mjpeg_stream_delivers_frames(mjpeg_server: MjpegServer, camera_events: CameraEvents) -> None:
    grabber = Grabber(settings(mjpeg_server.url), camera_events)
    grabber.start()
    wait_frames(grabber, 10)
    frame = grabber.latest()
    stats = grabber.stats()
    assert grabber.stop(2.0)
    assert frame is not None and frame.image.shape == (240, 320, 3)
    assert stats.state == "ok" and stats.kind == "http-mjpeg" and stats.invalid == 0
    assert (stats.width, stats.height) == (320, 240)
    assert stats.fps > 5
    assert camera_events.names() == []


@pytest.mark.parametrize("content_length", [True, False])
def test_truncated_and_garbage_parts_are_dropped_and_counted(
    mjpeg_server_factory: Callable[..., MjpegServer], content_length: bool
) -> None:
    server = mjpeg_server_factory(content_length=content_length)
    server.start()
    grabber = Grabber(settings(server.url))
    grabber.start()
    wait_frames(grabber, 3)
    server.inject("truncated", 2)
    server.inject("garbage", 2)
    deadline = time.monotonic() + 5
    while server.injected_sent < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    wait_frames(grabber, 5)  # capture goes on after the broken parts
    stats = grabber.stats()
    assert grabber.stop(2.0)
    assert server.injected_sent == 4
    assert stats.invalid == 4
    assert stats.state == "ok" and stats.losses == 0 and stats.reconnects == 0


def test_server_killed_and_restarted(mjpeg_server: MjpegServer, camera_events: CameraEvents) -> None:
    grabber = Grabber(settings(mjpeg_server.url), camera_events)
    grabber.start()
    last = wait_frames(grabber, 5)
    killed = time.monotonic()
    mjpeg_server.stop()
    lost_at, lost = camera_events.wait_for("camera_lost", timeout=STALL_S + MARGIN_S)
    assert lost_at - killed <= STALL_S + MARGIN_S
    assert grabber.stats().state == "lost"
    # While the camera is gone nothing blocks: latest() answers at once, wait_frame() on its timeout.
    started = time.monotonic()
    assert grabber.latest(last) is None
    assert grabber.wait_frame(last, timeout=0.3) is None
    assert time.monotonic() - started < 1.0
    time.sleep(1.0)
    restarted = time.monotonic()
    mjpeg_server.start()
    back_at, back = camera_events.wait_for("camera_back", timeout=RECONNECT_S + MARGIN_S)
    assert back_at - restarted <= RECONNECT_S + MARGIN_S
    newer = grabber.wait_frame(last, timeout=2.0)
    stats = grabber.stats()
    assert grabber.stop(2.0)
    assert newer is not None and newer.seq > last
    assert camera_events.names() == ["camera_lost", "camera_back"]
    assert back["down_s"] >= 1.0 and back["attempts"] >= 1
    assert stats.state == "ok" and stats.losses == 1 and stats.reconnects >= 1


def test_hung_server_is_detected_by_stall(mjpeg_server: MjpegServer, camera_events: CameraEvents) -> None:
    grabber = Grabber(settings(mjpeg_server.url), camera_events)
    grabber.start()
    wait_frames(grabber, 3)
    paused = time.monotonic()
    mjpeg_server.pause()  # connection stays open, no data: only the stall clock can tell
    lost_at, lost = camera_events.wait_for("camera_lost", timeout=STALL_S + MARGIN_S)
    assert lost_at - paused <= STALL_S + MARGIN_S
    mjpeg_server.resume()
    camera_events.wait_for("camera_back", timeout=RECONNECT_S + MARGIN_S)
    wait_frames(grabber, 3)
    assert grabber.stop(2.0)
    assert "no frame" in lost["reason"] or "no data" in lost["reason"]


def test_credentials_work_and_never_leak(
    mjpeg_server_factory: Callable[..., MjpegServer],
    camera_events: CameraEvents,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = mjpeg_server_factory(credentials=("admin", "s3cr3t-pw"))
    server.start()
    with caplog.at_level(logging.DEBUG, logger="edge"):
        grabber = Grabber(settings(server.url), camera_events)
        grabber.start()
        wait_frames(grabber, 3)
        server.stop()
        camera_events.wait_for("camera_lost", timeout=STALL_S + MARGIN_S)
        server.start()
        camera_events.wait_for("camera_back", timeout=RECONNECT_S + MARGIN_S)
        stats = grabber.stats()
        assert grabber.stop(2.0)
        wrong_url = server.url_for("/stream", with_credentials=False).replace("://", "://admin:nope@")
        wrong_events = CameraEvents()
        wrong = Grabber(settings(wrong_url), wrong_events)
        wrong.start()
        _, refused = wrong_events.wait_for("camera_lost", timeout=STALL_S + MARGIN_S)
        assert wrong.stop(2.0)
    assert "401" in refused["reason"]
    everything = caplog.text + repr(camera_events.events) + repr(stats) + repr(refused)
    assert "s3cr3t-pw" not in everything and "nope" not in everything
    assert "admin:***@" in stats.source


def test_snapshot_url_is_polled_at_fps(mjpeg_server: MjpegServer) -> None:
    grabber = Grabber(settings(mjpeg_server.url_for("/snap.jpg"), fps=10))
    grabber.start()
    wait_frames(grabber, 3)
    time.sleep(1.0)
    stats = grabber.stats()
    assert grabber.stop(2.0)
    assert stats.state == "ok" and 5 <= stats.fps <= 15


def test_not_a_camera_url_is_reported(mjpeg_server: MjpegServer, camera_events: CameraEvents) -> None:
    grabber = Grabber(settings(mjpeg_server.url_for("/missing")), camera_events)
    grabber.start()
    _, lost = camera_events.wait_for("camera_lost", timeout=STALL_S + MARGIN_S)
    assert grabber.stop(2.0)
    assert "404" in lost["reason"]
