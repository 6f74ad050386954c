"""Source selection, the synthetic scene, frame preparation, and the one-line errors for sources
that can never work here (no GStreamer in PyPI's OpenCV, no picamera2)."""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture import CameraConfigError, Grabber, build_camera, source_kind
from edge.capture.demo_world import COLOR_BGR, caption
from edge.capture.gst import APPSINK_TAIL, has_gstreamer, pipeline_of
from edge.capture.testsrc import SCENE_S, TestSource, render_frame, scene_of_frame
from edge.config.settings import CameraSettings
from edge.core.errors import EdgeError, FrameError
from edge.imaging.frames import prepare_image


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        (0, "v4l2"),
        ("2", "v4l2"),
        ("/dev/video0", "v4l2"),
        ("testsrc", "testsrc"),
        ("picamera2", "picamera2"),
        ("picamera2:1", "picamera2"),
        ("gst:videotestsrc ! appsink", "gst"),
        ("rtsp://u:p@cam/1", "rtsp"),
        ("RTSP://cam/1", "rtsp"),
        ("rtmp://cam/live", "stream"),
        ("http://cam/mjpg", "http-mjpeg"),
        ("https://cam/mjpg", "http-mjpeg"),
        ("/srv/clip.mp4", "file"),
        ("/srv/frames/*.jpg", "images"),
    ],
)
def test_source_kind(source: int | str, kind: str) -> None:
    assert source_kind(source) == kind


def test_directory_is_an_image_source(tmp_path: Path) -> None:
    assert source_kind(str(tmp_path)) == "images"
    assert source_kind(f"file://{tmp_path}") == "images"


def test_testsrc_is_deterministic_and_moves() -> None:
    a, b, c = render_frame(7, 320, 240, 15), render_frame(7, 320, 240, 15), render_frame(8, 320, 240, 15)
    assert a.shape == (240, 320, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert np.count_nonzero(cv2.absdiff(a, c)) > 100


def test_testsrc_draws_the_demo_models_world() -> None:
    """Grey background, 1-3 grammar shapes one per third in their nominal BGR colors; the scene changes."""
    fps = 5.0
    captions = []
    for k in range(6):
        n = int(k * SCENE_S * fps) + 3
        scene, frame = scene_of_frame(n, 640, 480, fps), render_frame(n, 640, 480, fps)
        assert 1 <= len(scene.shapes) <= 3 and 64 <= scene.background <= 192
        assert len({s.position for s in scene.shapes}) == len(scene.shapes)
        colors, counts = np.unique(frame.reshape(-1, 3), axis=0, return_counts=True)
        assert tuple(colors[counts.argmax()]) == (scene.background,) * 3  # most pixels: the grey
        for s in scene.shapes:  # each shape's exact color covers a real area (>= 1 % of the frame)
            assert counts[(colors == COLOR_BGR[s.color]).all(axis=1)].sum() > 0.01 * 640 * 480
        assert scene_of_frame(n + int(SCENE_S * fps) - 4, 640, 480, fps) == scene  # stays for SCENE_S
        captions.append(caption(scene))
    assert len(set(captions)) == 6


@pytest.mark.parametrize(("w", "h"), [(64, 48), (640, 480), (1920, 1080), (480, 640)])
def test_testsrc_sizes(w: int, h: int) -> None:
    src = TestSource(w, h, 30.0, realtime=False)
    info = src.open()
    frames = [src.read() for _ in range(3)]
    src.close()
    assert (info.width, info.height, info.fps) == (w, h, 30.0)
    assert all(f.shape == (h, w, 3) and f.flags["C_CONTIGUOUS"] for f in frames)
    assert src.paced_by_consumer


def test_testsrc_draws_only_the_frames_retrieved(monkeypatch: pytest.MonkeyPatch) -> None:
    """The idle rate skips frames by grabbing without retrieving: a skipped test-pattern frame is never
    drawn, and the one retrieved is the frame of its number, as if every frame had been drawn."""
    import edge.capture.testsrc as testsrc
    from edge.capture.base import TwoStepCamera

    drawn: list[int] = []
    real = testsrc.render_frame

    def counting(n: int, w: int, h: int, fps: float) -> np.ndarray:
        drawn.append(n)
        return real(n, w, h, fps)

    monkeypatch.setattr(testsrc, "render_frame", counting)
    src = TestSource(64, 48, 15.0, realtime=False)
    assert isinstance(src, TwoStepCamera)
    src.open()
    for _ in range(5):
        src.grab()
    frame = src.retrieve()
    assert drawn == [4]
    assert np.array_equal(frame, real(4, 64, 48, 15.0))
    assert np.array_equal(src.read(), real(5, 64, 48, 15.0))


def test_prepare_image_downscales_to_max_edge() -> None:
    img = np.zeros((1080, 1920, 3), np.uint8)
    out = prepare_image(img, 640)
    assert out.shape == (360, 640, 3)
    assert prepare_image(img, None) is not None and prepare_image(img, None).shape == img.shape
    small = np.zeros((100, 200, 3), np.uint8)
    assert prepare_image(small, 640).shape == (100, 200, 3)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((240, 320), np.uint8),  # grey
        np.zeros((3, 240, 320), np.uint8),  # CHW
        np.zeros((240, 320, 3), np.float32),
        np.zeros((240, 320, 4), np.uint8),
        np.zeros((8, 8, 3), np.uint8),
        None,
    ],
)
def test_prepare_image_refuses_invalid_frames(bad: object) -> None:
    with pytest.raises(FrameError):
        prepare_image(bad, None)


def test_gst_pipeline_gets_an_appsink() -> None:
    assert pipeline_of("gst:videotestsrc") == "videotestsrc" + APPSINK_TAIL
    assert pipeline_of("gst: v4l2src ! videoconvert ! appsink") == "v4l2src ! videoconvert ! appsink"
    with pytest.raises(CameraConfigError):
        pipeline_of("gst:")


@pytest.mark.skipif(has_gstreamer(), reason="this OpenCV has GStreamer")
def test_gst_without_gstreamer_says_what_to_install() -> None:
    settings = CameraSettings(source="gst:nvarguscamerasrc ! nvvidconv ! appsink")
    with pytest.raises(CameraConfigError) as err:
        Grabber(settings)
    text = str(err.value)
    assert "\n" not in text
    for needle in (
        "GStreamer",
        "python3-opencv",
        "JetPack",
        "--system-site-packages",
        "opencv-python-headless",
    ):
        assert needle in text
    assert isinstance(err.value, EdgeError) and err.value.exit_code == 2


@pytest.mark.skipif(importlib.util.find_spec("picamera2") is not None, reason="picamera2 is installed")
def test_picamera2_missing_says_what_to_install() -> None:
    with pytest.raises(CameraConfigError) as err:
        build_camera(CameraSettings(source="picamera2"))
    assert "python3-picamera2" in str(err.value) and "--system-site-packages" in str(err.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(CameraConfigError, match="no such file or directory"):
        Grabber(CameraSettings(source=str(tmp_path / "nope.mp4")))


def test_gst_pipeline_element_names() -> None:
    from edge.capture.gst import element_names

    jetson = (
        "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1920,height=1080 ! nvvidconv ! "
        "video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true"
    )
    assert element_names(jetson) == ["nvarguscamerasrc", "nvvidconv", "videoconvert", "appsink"]
    tee = 'videotestsrc ! tee name=t t. ! queue ! appsink caps="video/x-raw ! x"'
    assert element_names(tee) == ["videotestsrc", "tee", "queue", "appsink"]


@pytest.mark.skipif(shutil.which("gst-inspect-1.0") is None, reason="apt install gstreamer1.0-tools")
def test_gst_pipeline_with_a_missing_element_is_refused_at_once() -> None:
    from edge.capture.gst import check_elements, element_exists

    started = time.monotonic()
    with pytest.raises(CameraConfigError) as err:
        check_elements("nosuchelement ! libcamerasrc ! videoconvert ! appsink", "gst:nosuchelement")
    assert "GStreamer has no element nosuchelement" in str(err.value)
    if not element_exists("libcamerasrc"):
        assert "nosuchelement, libcamerasrc" in str(err.value)
        assert "it comes with gstreamer1.0-libcamera" in str(err.value)
    check_elements("videotestsrc ! videoconvert ! appsink", "gst:videotestsrc")  # all present
    assert time.monotonic() - started < 5
