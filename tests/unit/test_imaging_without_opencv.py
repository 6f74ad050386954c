"""JPEG, shrinking and the gate's picture without OpenCV, checked against OpenCV as the oracle.

The main process no longer loads OpenCV for these (edge.imaging.jpeg, edge.imaging.resize,
edge.imaging.gate.small_gray); the tests hold that the numbers they produce are OpenCV's, to the
stated tolerance, so no threshold or byte budget changed meaning with the library.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.core.errors import FrameError
from edge.imaging import jpeg
from edge.imaging.gate import PIXEL_DELTA, MotionScorer, small_gray
from edge.imaging.imageio import decode_image_bytes, encode_jpeg
from edge.imaging.opencv import cv2
from edge.imaging.resize import shrink, whole_factor


def scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Noise with a few flat blocks and a gradient: edges, texture and smooth areas."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[h // 4 : h // 2, w // 4 : w // 2] = (30, 200, 90)
    img[h // 2 :, : w // 3] = np.linspace(0, 255, w // 3, dtype=np.uint8)[None, :, None]
    return img


def opencv_small_gray(image: np.ndarray, width: int = 160) -> np.ndarray:
    """The gate's picture as it was computed with OpenCV."""
    h, w = image.shape[:2]
    width = min(width, w)
    height = max(1, round(h * width / w))
    if w > 4 * width:
        image = cv2.resize(image, (4 * width, 4 * height), interpolation=cv2.INTER_NEAREST)
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return cv2.GaussianBlur(gray, (5, 5), 0).astype(np.float32)


@pytest.mark.parametrize("size", [(480, 640), (720, 1280), (1080, 1920), (240, 320)])
def test_the_gate_picture_is_opencvs_within_one_grey_level(size: tuple[int, int]) -> None:
    img = scene(*size)
    ours, theirs = small_gray(img), opencv_small_gray(img)
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    assert float(np.abs(ours - theirs).max()) <= 1.0
    assert float(np.median(np.abs(ours - theirs))) < 0.5


def test_at_a_factor_opencv_did_not_sample_alike_the_picture_still_agrees_on_content() -> None:
    # 800x600: OpenCV first took every 1.25th pixel (to 640x480), we average 3x3 of each 5x5 block;
    # on pixel noise the two differ, on what a camera sees (flat areas and edges) they agree.
    img = np.full((600, 800, 3), 90, np.uint8)
    img[150:300, 200:400] = (30, 200, 90)
    img[300:, :266] = np.linspace(0, 255, 266, dtype=np.uint8)[None, :, None]
    ours, theirs = small_gray(img), opencv_small_gray(img)
    assert ours.shape == theirs.shape == (120, 160)
    assert float(np.percentile(np.abs(ours - theirs), 99)) < PIXEL_DELTA / 4


def test_the_gate_picture_of_a_frame_narrower_than_the_gate_keeps_its_width() -> None:
    img = scene(90, 120)
    assert small_gray(img).shape == (90, 120)
    assert small_gray(scene(16, 16)).shape == (16, 16)


def test_the_scorer_sees_a_moved_block_and_not_noise() -> None:
    rng = np.random.default_rng(1)
    base = np.full((480, 640, 3), 120, np.uint8)
    scorer = MotionScorer()
    assert scorer.score(base, 0.0) == 0.0
    noisy = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
    assert scorer.score(noisy, 0.1) == 0.0  # sensor noise stays under PIXEL_DELTA after averaging
    moved = noisy.copy()
    moved[100:200, 300:400] = 120 + 3 * PIXEL_DELTA
    score = scorer.score(moved, 0.2)
    # a 100x100 block of 640x480 is 3.3 % of the picture; the blur spreads its edge a little
    assert 0.025 < score < 0.05
    assert scorer.last_mask is not None and scorer.last_mask[25:50, 75:100].all()


def test_jpeg_decodes_to_opencvs_pixels_and_encodes_to_its_size() -> None:
    img = scene(480, 640)
    data = jpeg.encode(img, 80)
    ok, reference = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok and abs(len(data) - len(reference)) <= 0.01 * len(reference)  # 4:2:0 like OpenCV
    ours = decode_image_bytes(data)
    assert ours.shape == (480, 640, 3) and ours.flags["C_CONTIGUOUS"]
    reference_pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert reference_pixels is not None and np.array_equal(ours, reference_pixels)
    assert float(np.abs(ours.astype(int) - img).mean()) < 40  # it is the picture (noise compresses badly)


def test_a_grey_jpeg_decodes_to_three_channels() -> None:
    ok, buf = cv2.imencode(".jpg", scene(64, 80)[:, :, 0])
    assert ok
    image = decode_image_bytes(buf.tobytes())
    assert image.shape == (64, 80, 3)
    assert np.array_equal(image[:, :, 0], image[:, :, 2])


def test_a_damaged_jpeg_is_refused_with_the_decoders_words() -> None:
    data = jpeg.encode(scene(240, 320), 85)
    with pytest.raises(FrameError, match=r"image is damaged: the decoder says 'Corrupt JPEG data"):
        decode_image_bytes(data[: len(data) // 2] + b"\xff\xd9")
    with pytest.raises(FrameError, match="truncated"):
        decode_image_bytes(data[: len(data) // 2])
    with pytest.raises(FrameError, match="refused by the decoder"):
        jpeg.decode(data[:200] + b"\x00" * 50 + b"\xff\xd9")


def test_png_still_decodes_through_opencv() -> None:
    img = scene(48, 64)
    ok, buf = cv2.imencode(".png", img)
    assert ok and np.array_equal(decode_image_bytes(buf.tobytes()), img)


def test_a_picture_over_budget_is_halved_until_it_fits() -> None:
    img = scene(480, 640, seed=3)
    data = encode_jpeg(img, max_bytes=20_000)
    assert len(data) <= 20_000
    smaller = jpeg.decode(data)
    assert smaller.shape[0] < 480 and smaller.shape[1] < 640
    assert smaller.shape[1] * 480 == smaller.shape[0] * 640  # halved, same aspect ratio


@pytest.mark.parametrize(("size", "k"), [((640, 480), 2), ((3840, 2160), 2), ((1280, 720), 4), ((40, 30), 5)])
def test_whole_factor_shrink_is_opencvs_area_average(size: tuple[int, int], k: int) -> None:
    w, h = size
    img = scene(h, w, seed=k)
    assert whole_factor((w, h), (w // k, h // k)) == k
    ours = shrink(img, (w // k, h // k))
    theirs = cv2.resize(img, (w // k, h // k), interpolation=cv2.INTER_AREA)
    assert ours.shape == theirs.shape and ours.dtype == np.uint8
    assert int(np.abs(ours.astype(int) - theirs).max()) <= (0 if k in (2, 5) else 1)


def test_another_factor_shrinks_with_opencv() -> None:
    img = scene(600, 800)
    assert whole_factor((800, 600), (533, 400)) is None
    assert np.array_equal(shrink(img, (533, 400)), cv2.resize(img, (533, 400), interpolation=cv2.INTER_AREA))
    assert whole_factor((640, 480), (320, 160)) is None  # not the same factor on both axes
