"""A camera that keeps dropping: the backoff grows until a session stays up, and flapping is one
event with a count, against a real HTTP MJPEG server whose streams end after 0.2 s."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from edge.capture import Grabber
from edge.config.settings import CameraSettings
from tests.plugins.streams import CameraEvents, MjpegServer


def test_a_stream_ending_every_0_2_s_is_one_flapping_event(
    mjpeg_server_factory: Callable[..., MjpegServer], camera_events: CameraEvents
) -> None:
    server = mjpeg_server_factory(close_after_s=0.2)
    server.start()
    grabber = Grabber(CameraSettings(source=server.url, stall_s=1.0, reconnect_s=8.0), camera_events)
    started = time.monotonic()
    grabber.start()
    try:
        deadline = started + 60
        while grabber.stats().losses < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        stats = grabber.stats()
    finally:
        assert grabber.stop(2.0)
    names = camera_events.names()
    # before: the backoff reset on every frame, ~14 camera_lost and ~14 camera_back in 10 s
    assert stats.losses >= 4, stats
    assert names == ["camera_lost", "camera_back", "camera_lost"], names
    first, flapping = (p for _, n, p in camera_events.events if n == "camera_lost")
    assert first["count"] == 1 and not first["flapping"]
    assert flapping["count"] == 2 and flapping["flapping"]
    # 0.5, 1, 2, 4 s between attempts: in `elapsed` seconds at most 1 + k connections, where the
    # first k waits fit in it. A slow machine only lengthens `elapsed`; a backoff that resets does not.
    k = int(math.log2(elapsed / 0.5 + 1))
    assert stats.losses == stats.reconnects + 1 <= k + 2, (stats, elapsed)


def test_flapping_ends_with_one_camera_back_once_stable(
    mjpeg_server_factory: Callable[..., MjpegServer], camera_events: CameraEvents
) -> None:
    server = mjpeg_server_factory(close_after_s=0.2)
    server.start()
    settings = CameraSettings(source=server.url, stall_s=1.0, reconnect_s=1.0)
    grabber = Grabber(settings, camera_events, stable_s=1.5)
    grabber.start()
    camera_events.wait_for("camera_lost", count=2, timeout=30)
    server.close_after_s = None  # the camera settles down
    _, back = camera_events.wait_for("camera_back", count=2, timeout=30)
    time.sleep(1.0)
    assert grabber.stop(2.0)
    assert camera_events.names() == ["camera_lost", "camera_back", "camera_lost", "camera_back"]
    assert back["flaps"] >= 2
