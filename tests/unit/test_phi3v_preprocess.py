"""Phi-3.5-vision HD transform in numpy: sizes, token formula, resampling maths, tensor layout.

Pixel parity with ORT GenAI's own processor is checked against the runtime in
tests/integration/test_backend_ort.py; these tests pin the arithmetic without a runtime.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.inference.phi3v_preprocess import (
    CROP,
    MEAN,
    STD,
    build_input_ids,
    hd_size,
    hd_transform,
    image_token_count,
    prepare,
    resize_bicubic_f32,
    resize_bilinear_u8,
    tokens_for_frame,
)


@pytest.mark.parametrize(
    ("h", "w", "tokens"),
    [(336, 336, 313), (672, 672, 757), (1008, 1344, 1921), (1344, 1008, 1933), (336, 1344, 745)],
)
def test_token_formula(h: int, w: int, tokens: int) -> None:
    # ((h/336)(w/336)+1)*144 + 1 + (h/336+1)*12
    assert image_token_count(h, w) == tokens


@pytest.mark.parametrize("num_crops", [1, 4, 16])
@pytest.mark.parametrize(
    "size", [(480, 640), (640, 480), (720, 1280), (1080, 1920), (100, 900), (900, 100), (64, 64)]
)
def test_hd_size_fits_the_crop_budget(num_crops: int, size: tuple[int, int]) -> None:
    h, w = size
    new_h, new_w, pad_h, pad_w = hd_size(h, w, num_crops)
    assert pad_h % CROP == 0 and pad_w % CROP == 0
    assert new_h <= pad_h < new_h + CROP and new_w <= pad_w < new_w + CROP
    assert (pad_h // CROP) * (pad_w // CROP) <= num_crops
    assert max(new_h, new_w) % CROP == 0  # the long side is a whole number of crops
    assert abs(new_w / new_h - w / h) < 0.05 * (w / h) + 1 / min(new_h, new_w)


def test_known_sizes_for_a_vga_frame() -> None:
    assert hd_size(480, 640, 1)[2:] == (336, 336)
    assert hd_size(480, 640, 4)[2:] == (672, 672)
    assert hd_size(480, 640, 16)[2:] == (1008, 1344)
    assert [tokens_for_frame(480, 640, n) for n in (1, 4, 16)] == [313, 757, 1921]


def test_num_crops_outside_range_is_refused() -> None:
    for bad in (0, 17):
        with pytest.raises(ValueError):
            hd_size(480, 640, bad)


def test_sliver_frames_keep_at_least_one_row() -> None:
    new_h, new_w, pad_h, pad_w = hd_size(16, 8192, 1)
    assert new_h >= 1 and (pad_h, pad_w) == (336, 336)


def test_bilinear_matches_pillow_on_a_known_ramp() -> None:
    # Pillow: Image.resize((4, 1), BILINEAR) of the 2-pixel row [0, 255] gives [0, 64, 191, 255]
    row = np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)
    out = resize_bilinear_u8(row, 1, 4)
    assert out[0, :, 0].tolist() == [0, 64, 191, 255]


def test_bilinear_same_size_is_identity_and_flat_stays_flat() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert np.array_equal(resize_bilinear_u8(img, 37, 53), img)
    flat = np.full((50, 70, 3), 77, np.uint8)
    for shape in ((25, 35), (100, 140), (13, 200)):
        assert np.all(resize_bilinear_u8(flat, *shape) == 77)


def test_bicubic_preserves_constants_and_shrinks_by_averaging() -> None:
    plane = np.full((672, 1008), -1.25, np.float32)
    out = resize_bicubic_f32(plane, 336, 336)
    assert out.shape == (336, 336) and out.dtype == np.float32
    assert np.allclose(out, -1.25, atol=1e-6)
    stripes = np.tile(np.array([0.0, 1.0], np.float32), (8, 32))  # 8x64 alternating columns
    shrunk = resize_bicubic_f32(stripes, 8, 16)  # 4:1, the antialiasing filter averages them out
    assert np.allclose(shrunk[:, 2:-2], 0.5, atol=0.02)


def test_hd_transform_layout() -> None:
    bgr = np.zeros((480, 640, 3), np.uint8)
    bgr[..., 0] = 255  # pure blue in OpenCV's BGR order
    hd = hd_transform(bgr, 4)
    assert hd.pixel_values.shape == (5, 3, CROP, CROP) and hd.pixel_values.dtype == np.float32
    assert hd.size == (672, 672) and hd.num_tokens == 757
    blue = (1.0 - MEAN[2]) / STD[2]
    red_zero = (0.0 - MEAN[0]) / STD[0]
    white = (1.0 - MEAN) / STD
    # crops 1..4: RGB channel order, and white padding above/below the 504-row resized frame
    crop = hd.pixel_values[1]
    assert np.isclose(crop[2, 200, 100], blue) and np.isclose(crop[0, 200, 100], red_zero)
    assert np.allclose(crop[:, 0, 0], white)  # top padding row of the top-left crop
    # global view at index 0 is the whole padded image shrunk to 336x336
    assert np.isclose(hd.pixel_values[0, 2, 168, 168], blue, atol=1e-5)


def test_unused_crops_are_zero() -> None:
    hd = hd_transform(np.full((100, 100, 3), 128, np.uint8), 16)
    assert hd.size == (1344, 1344)  # a square frame fills the 4x4 grid
    hd = hd_transform(np.full((100, 900, 3), 128, np.uint8), 16)
    used = (hd.size[0] // CROP) * (hd.size[1] // CROP)
    assert used < 16
    assert not hd.pixel_values[1 + used :].any()
    assert hd.pixel_values[1 : 1 + used].any()


def test_build_input_ids_splices_negative_image_ids() -> None:
    def encode(text: str) -> list[int]:
        return [ord(c) for c in text]

    ids = build_input_ids(["ab", 0, "c", 1, "d"], encode, [3, 2])
    assert ids.shape == (1, 9) and ids.dtype == np.int32
    assert ids[0].tolist() == [97, 98, -1, -1, -1, 99, -2, -2, 100]


def test_build_input_ids_refuses_a_slot_without_image() -> None:
    with pytest.raises(ValueError, match="image slot 2"):
        build_input_ids(["a", 1], lambda t: [1], [5])


def test_prepare_stacks_images_and_counts() -> None:
    frames = [np.zeros((480, 640, 3), np.uint8), np.zeros((640, 480, 3), np.uint8)]
    vi = prepare(frames, 4, ["x", 0, 1, "y"], lambda t: [7] * len(t))
    assert vi.pixel_values.shape == (2, 5, 3, CROP, CROP)
    assert vi.image_sizes.tolist() == [[672, 672], [672, 672]]
    assert vi.num_image_tokens.tolist() == [[757], [757]]
    assert vi.image_tokens == 1514
    assert vi.input_ids.shape == (1, 1 + 1514 + 1)
    assert int((vi.input_ids < 0).sum()) == vi.image_tokens
