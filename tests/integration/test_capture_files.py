"""The grabber on real OpenCV sources without a network: video files, an image folder, testsrc,
and a V4L2 device that does not exist (the reconnect path every USB camera takes)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest

from edge.capture import CameraError, Grabber, grab_frame
from edge.config.settings import CameraSettings
from edge.core.messages import Frame
from tests.plugins.streams import CameraEvents, ImageDir, Videos


def drain(grabber: Grabber, timeout: float = 10.0) -> list[Frame]:
    """Every frame of a consumer-paced source until it ends."""
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = grabber.wait_frame(frames[-1].seq if frames else -1, timeout=2.0)
        if frame is None:
            break
        frames.append(frame)
    return frames


def test_video_file_asap_delivers_every_frame_then_ends(
    stream_videos: Videos, camera_events: CameraEvents
) -> None:
    settings = CameraSettings(source=str(stream_videos.cut), pace="asap", loop=False, stall_s=2.0)
    grabber = Grabber(settings, camera_events)
    grabber.start()
    frames = drain(grabber)
    assert grabber.stop(2.0)
    stats = grabber.stats()
    assert [f.seq for f in frames] == list(range(stream_videos.cut_frames))
    assert all(f.image.shape == (240, 320, 3) and f.image.dtype == np.uint8 for f in frames)
    assert stats.frames == stream_videos.cut_frames and stats.dropped == 0 and stats.invalid == 0
    assert stats.ended and stats.state == "lost"
    assert (stats.width, stats.height, stats.device_fps) == (320, 240, stream_videos.fps)
    _, lost = camera_events.wait_for("camera_lost", timeout=1)
    assert lost["ended"] is True and lost["frames"] == stream_videos.cut_frames
    assert camera_events.names() == ["camera_lost"]


def test_frames_are_read_only_and_timestamped(stream_videos: Videos) -> None:
    grabber = Grabber(CameraSettings(source=str(stream_videos.moving), pace="asap", loop=False))
    grabber.start()
    before = time.time()
    frame = grabber.wait_frame(-1, timeout=5)
    grabber.stop(2.0)
    assert frame is not None
    assert before - 5 <= frame.captured_at <= time.time()
    assert frame.camera == "main"
    with pytest.raises(ValueError):
        frame.image[0, 0, 0] = 1


def test_video_file_loops(stream_videos: Videos) -> None:
    settings = CameraSettings(source=str(stream_videos.cut), pace="asap", loop=True)
    grabber = Grabber(settings)
    grabber.start()
    seen: list[Frame] = []
    while len(seen) < stream_videos.cut_frames + 20:
        frame = grabber.wait_frame(seen[-1].seq if seen else -1, timeout=5)
        assert frame is not None, "looping file stopped delivering"
        seen.append(frame)
    assert grabber.stop(2.0)
    assert grabber.stats().state == "ok" and not grabber.stats().ended
    # Frame 0 again after the wrap: the first scene, identical pixels.
    assert np.array_equal(seen[0].image, seen[stream_videos.cut_frames].image)


def test_video_file_realtime_is_paced_at_its_frame_rate(stream_videos: Videos) -> None:
    grabber = Grabber(CameraSettings(source=str(stream_videos.constant), pace="realtime"))
    grabber.start()
    assert grabber.wait_frame(-1, timeout=5) is not None
    time.sleep(1.5)
    stats = grabber.stats()
    assert grabber.stop(2.0)
    # 10 fps file: about 15 frames in 1.5 s, certainly not the hundreds an unpaced decode gives.
    assert 6 <= stats.frames <= 30
    assert 6 <= stats.fps <= 14


def test_image_dir_counts_broken_files(image_dir: ImageDir, camera_events: CameraEvents) -> None:
    settings = CameraSettings(source=str(image_dir.path), pace="asap", loop=False, stall_s=2.0)
    grabber = Grabber(settings, camera_events)
    grabber.start()
    frames = drain(grabber)
    assert grabber.stop(2.0)
    stats = grabber.stats()
    assert len(frames) == image_dir.valid
    assert stats.invalid == image_dir.broken
    assert all(f.image.shape == (120, 160, 3) for f in frames)
    assert stats.ended


def test_image_glob_loops_and_paces(image_dir: ImageDir) -> None:
    settings = CameraSettings(source=str(image_dir.path / "*.png"), fps=20, pace="realtime", loop=True)
    grabber = Grabber(settings)
    grabber.start()
    time.sleep(1.0)
    stats = grabber.stats()
    assert grabber.stop(2.0)
    # 2 valid PNGs and 1 garbage .png at 20 files/s: both counted over several loops.
    assert stats.frames >= 6 and stats.invalid >= 3
    assert stats.state == "ok"


def test_testsrc_keeps_only_the_newest_frame(camera_events: CameraEvents) -> None:
    grabber = Grabber(CameraSettings(source="testsrc", width=320, height=240, fps=30), camera_events)
    grabber.start()
    first = grabber.wait_frame(-1, timeout=5)
    assert first is not None
    time.sleep(0.6)  # a slow consumer: the grabber keeps draining meanwhile
    newest = grabber.latest(first.seq)
    assert newest is not None and newest.seq > first.seq + 5
    assert grabber.latest(newest.seq) is None  # nothing newer yet: None at once, no waiting
    stats = grabber.stats()
    assert stats.dropped >= newest.seq - first.seq - 1
    assert 20 <= stats.fps <= 40
    assert stats.state == "ok" and camera_events.names() == []
    started = time.monotonic()
    assert grabber.stop(2.0)
    assert time.monotonic() - started < 2.0
    assert grabber.wait_frame(newest.seq, timeout=5) is None  # returns at once after stop


def test_max_edge_downscales() -> None:
    grabber = Grabber(CameraSettings(source="testsrc", width=1280, height=720, max_edge=320, fps=30))
    grabber.start()
    frame = grabber.wait_frame(-1, timeout=5)
    grabber.stop(2.0)
    assert frame is not None and frame.image.shape == (180, 320, 3)
    assert grabber.stats().width == 1280  # what the device delivers, before the downscale


@pytest.mark.parametrize("source", [42, "/dev/video42"])
def test_missing_v4l2_device_is_lost_and_retried(source: int | str, camera_events: CameraEvents) -> None:
    grabber = Grabber(CameraSettings(source=source, stall_s=1.0, reconnect_s=0.4), camera_events)
    grabber.start()
    _, lost = camera_events.wait_for("camera_lost", timeout=5)
    time.sleep(1.0)
    stats = grabber.stats()
    started = time.monotonic()
    assert grabber.stop(2.0)
    assert time.monotonic() - started < 2.0
    assert "video42" in lost["source"] and lost["reason"]
    assert stats.state == "lost" and stats.reconnects >= 2 and stats.frames == 0
    assert camera_events.names() == ["camera_lost"]  # one event per outage, not one per attempt


def test_failing_event_handler_does_not_stop_capture(
    stream_videos: Videos, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(name: str, payload: dict) -> None:
        raise RuntimeError("handler bug")

    settings = CameraSettings(source=str(stream_videos.cut), pace="asap", loop=False)
    grabber = Grabber(settings, handler)
    with caplog.at_level(logging.ERROR, logger="edge.capture"):
        grabber.start()
        frames = drain(grabber)
        assert grabber.stop(2.0)
    assert len(frames) == stream_videos.cut_frames
    assert "on_event handler failed" in caplog.text


def test_grab_frame_one_shot(stream_videos: Videos, image_dir: ImageDir) -> None:
    frame = grab_frame(CameraSettings(source=str(stream_videos.moving), max_edge=160))
    assert frame.image.shape == (120, 160, 3) and frame.camera == "main"
    # The folder's first file in name order is valid; a folder of only broken files is not.
    assert grab_frame(CameraSettings(source=str(image_dir.path), pace="asap")).image.shape == (120, 160, 3)
    with pytest.raises(CameraError, match="no valid frame"):
        grab_frame(CameraSettings(source=str(image_dir.path / "*b_*"), pace="asap"), timeout_s=0.5)


def _declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is patched to declare `width` x `height`."""
    from edge.imaging.opencv import cv2

    ok, buf = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))
    data = bytearray(buf.tobytes())
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("name", ["huge.jpg", "huge-without-suffix"])
def test_a_single_image_file_is_header_checked_like_a_folder(tmp_path: Path, name: str) -> None:
    """Before: a still image as `camera.source` went to FFmpeg, which decoded whatever size it declared
    (12000x12000: 432 MB per read) and looped through camera_lost/reconnect. Now it is read like an
    image folder's file: refused from its header, counted as invalid, never decoded."""
    from edge.capture.factory import build_camera

    path = tmp_path / name
    path.write_bytes(_declaring(12000, 12000))
    settings = CameraSettings(source=str(path), fps=20, stall_s=2.0)
    assert build_camera(settings).kind == "images"
    grabber = Grabber(settings)
    grabber.start()
    try:
        deadline = time.monotonic() + 20
        while grabber.stats().invalid < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = grabber.stats()
    finally:
        assert grabber.stop(2.0)
    assert stats.invalid >= 3 and stats.frames == 0


def test_a_single_image_file_is_downscaled_by_the_default_max_edge(tmp_path: Path) -> None:
    from edge.imaging.opencv import cv2

    path = tmp_path / "wide.png"
    assert cv2.imwrite(str(path), np.zeros((100, 4000, 3), np.uint8))
    settings = CameraSettings(source=str(path), pace="asap", loop=False)
    assert settings.max_edge == 1920
    grabber = Grabber(settings)
    grabber.start()
    try:
        frame = grabber.wait_frame(-1, timeout=10)
    finally:
        grabber.stop(2.0)
    assert frame is not None and frame.image.shape[1] == 1920
