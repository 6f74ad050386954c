"""Motion crops: the gate's mask of changed pixels -> a padded box in full-frame pixels."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config.settings import GateSettings
from edge.core.messages import Frame
from edge.imaging.crops import crop, mask_bounds, motion_box
from edge.imaging.gate import Gate


def _mask(h: int, w: int, *boxes: tuple[int, int, int, int]) -> np.ndarray:
    m = np.zeros((h, w), bool)
    for x, y, bw, bh in boxes:
        m[y : y + bh, x : x + bw] = True
    return m


def _contains(outer: tuple[int, int, int, int], inner: tuple[int, int, int, int]) -> bool:
    ox, oy, ow, oh = outer
    ix, iy, iw, ih = inner
    return ox <= ix and oy <= iy and ix + iw <= ox + ow and iy + ih <= oy + oh


def test_no_motion_no_box() -> None:
    assert mask_bounds(np.zeros((90, 160), bool)) is None
    assert motion_box(np.zeros((90, 160), bool), 1280, 720) is None


def test_box_is_scaled_back_to_the_frame_and_padded() -> None:
    # a 10x10 blob at (100, 40) on the 160x90 gate copy of a 1280x720 frame: x8 scale
    box = motion_box(_mask(90, 160, (100, 40, 10, 10)), 1280, 720, min_size_px=0)
    assert box is not None
    assert _contains(box, (800, 320, 80, 80))
    x, y, w, h = box
    assert w == h == 80 + 2 * 20  # 25 % of 80 on each side


def test_minimum_size_around_the_centre() -> None:
    box = motion_box(_mask(90, 160, (80, 45, 1, 1)), 1280, 720)
    assert box is not None
    x, y, w, h = box
    assert w >= 336 and h >= 336
    assert abs((x + w / 2) - 644) <= 1 and abs((y + h / 2) - 364) <= 1


@pytest.mark.parametrize("blob", [(0, 0, 3, 3), (157, 87, 3, 3), (0, 80, 5, 10)])
def test_boxes_at_the_edges_stay_inside_the_frame_and_keep_their_size(
    blob: tuple[int, int, int, int],
) -> None:
    box = motion_box(_mask(90, 160, blob), 1280, 720)
    assert box is not None
    x, y, w, h = box
    assert x >= 0 and y >= 0 and x + w <= 1280 and y + h <= 720
    assert w >= 336 and h >= 336  # shifted inward, not cut
    bx, by, bw, bh = blob
    assert _contains(box, (bx * 8, by * 8, bw * 8, bh * 8))


def test_a_frame_smaller_than_the_minimum_is_the_whole_frame() -> None:
    assert motion_box(_mask(30, 40, (10, 10, 2, 2)), 160, 120) == (0, 0, 160, 120)


def test_crop_is_a_contiguous_copy_and_refuses_boxes_outside() -> None:
    img = np.arange(720 * 1280 * 3, dtype=np.uint32).astype(np.uint8).reshape(720, 1280, 3)
    out = crop(img, (10, 20, 30, 40))
    assert out.shape == (40, 30, 3) and out.flags.c_contiguous
    assert (out == img[20:60, 10:40]).all()
    with pytest.raises(ValueError):
        crop(img, (1270, 0, 20, 20))


def _frame(image: np.ndarray, seq: int) -> Frame:
    return Frame(image, 1000.0 + seq, float(seq), seq)


def test_gate_box_contains_a_small_moving_square_on_a_720p_frame() -> None:
    """At the seam: real gate scoring on real frames, the box in full-frame pixels."""
    gate = Gate(GateSettings(motion_threshold=0.0001, min_interval_s=0))
    bg = np.full((720, 1280, 3), 90, np.uint8)
    gate.decide(_frame(bg, 0), 0.0)
    img = bg.copy()
    img[500:540, 1000:1040] = 250  # a 40x40 object, far right, low
    d = gate.decide(_frame(img, 1), 0.1)
    assert d.run and 0 < d.score < 0.01
    box = gate.motion_box(_frame(img, 1))
    assert box is not None and _contains(box, (1000, 500, 40, 40))
    x, y, w, h = box
    assert x + w <= 1280 and y + h <= 720 and w * h < 1280 * 720 / 4
