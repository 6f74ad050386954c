"""The demo world drawn with numpy (edge.capture.raster): what the shapes and the clock label look like,
held by structure (areas, exact colours, edges, where ink may fall), and that the test pattern drawn
with it leaves OpenCV out of the process. Whether the demo model still reads the frames is measured
against the model (the daemon and bench tests caption testsrc frames), not here."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from edge.capture import raster
from edge.capture.demo_world import clock_label
from edge.capture.testsrc import frame_layout, render_frame

GREY = 100
G = raster.EDGE_GROW


def grown_area(shape: str, r: float) -> float:
    """The analytic area of the shape with its edge moved out by EDGE_GROW (where coverage is 1/2)."""
    if shape == "circle":
        return math.pi * (r + G) ** 2
    if shape == "square":
        return (2 * (r + G)) ** 2
    inradius = 2 * r / (1 + math.sqrt(5))  # base 2r, height 2r: area 2r^2, perimeter (2 + 2 sqrt 5) r
    return 2 * r * r * ((inradius + G) / inradius) ** 2


def signed_distance(shape: str, cx: float, cy: float, r: float, w: int, h: int) -> np.ndarray:
    """Each pixel centre's signed distance (px, < 0 inside) to the shape's edge; the triangle's is the
    largest of its three edges' lines' (exact inside, along its sides and below its base)."""
    dx = np.arange(w)[None, :] - cx
    dy = np.arange(h)[:, None] - cy
    if shape == "circle":
        return np.asarray(np.hypot(dx, dy) - r)
    if shape == "square":
        return np.asarray(np.maximum(np.abs(dx), np.abs(dy)) - r)
    base = dy - r + 0 * dx
    right = (2 * dx - (dy + r)) / math.sqrt(5)
    left = (-2 * dx - (dy + r)) / math.sqrt(5)
    return np.asarray(np.maximum(base, np.maximum(left, right)))


def drawn(
    shape: str, cx: float, cy: float, r: float, color: tuple[int, int, int] = (255, 255, 255)
) -> np.ndarray:
    img = np.full((240, 320, 3), GREY, np.uint8)
    raster.draw_shape(img, shape, cx, cy, r, color)
    return img


@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
@pytest.mark.parametrize(
    ("cx", "cy", "r"), [(160.0, 120.0, 20.0), (101.3, 97.8, 37.4), (200.5, 110.25, 70.0)]
)
def test_the_coverage_adds_up_to_the_shapes_area(shape: str, cx: float, cy: float, r: float) -> None:
    img = np.zeros((240, 320, 3), np.uint8)
    raster.draw_shape(img, shape, cx, cy, r, (255, 255, 255))
    area = img[..., 0].astype(np.float64).sum() / 255
    assert area == pytest.approx(grown_area(shape, r), rel=0.01)
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()


@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
@pytest.mark.parametrize("color", [(255, 0, 0), (0, 0, 255), (0, 200, 0), (0, 255, 255), (0, 0, 0)])
def test_the_inside_is_the_exact_colour_and_the_edge_lies_between(
    shape: str, color: tuple[int, int, int]
) -> None:
    cx, cy, r = 150.4, 118.7, 40.0
    img = drawn(shape, cx, cy, r, color)
    assert tuple(img[round(cy), round(cx)]) == color
    assert tuple(img[round(cy + r / 2), round(cx)]) == color
    # Every pixel is the background, the colour or a blend of the two: channel by channel in between.
    lo, hi = np.minimum(GREY, color), np.maximum(GREY, color)
    assert ((img >= lo) & (img <= hi)).all()
    exact = (img == color).all(axis=2)
    background = (img == GREY).all(axis=2)
    edge = ~exact & ~background
    # An anti-aliased edge: about one pixel per pixel of perimeter (triangle: 2r + 2 sqrt(5) r).
    perimeter = {"circle": 2 * math.pi * r, "square": 8 * r, "triangle": (2 + 2 * math.sqrt(5)) * r}[shape]
    assert 0.6 * perimeter < edge.sum() < 2.5 * perimeter
    # The blends lie in the one-pixel band around the edge moved out by EDGE_GROW, the exact colour
    # inside it (a coverage within half a grey level of 0 or 1 rounds to the background or the colour).
    sd = signed_distance(shape, cx, cy, r, img.shape[1], img.shape[0])
    assert (np.abs(sd[edge] - G) < 0.5 + 1e-3).all()
    assert (sd[exact] < G - 0.5 + 1e-2).all()


@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
def test_nothing_is_drawn_outside_the_shapes_box(shape: str) -> None:
    cx, cy, r = 170.6, 100.2, 33.3
    img = drawn(shape, cx, cy, r)
    ys, xs = np.nonzero((img != GREY).any(axis=2))
    reach = r + G + 0.5
    assert xs.min() >= math.floor(cx - reach) and xs.max() <= math.ceil(cx + reach)
    assert ys.min() >= math.floor(cy - reach) and ys.max() <= math.ceil(cy + reach)


@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
def test_a_shape_over_the_border_is_clipped(shape: str) -> None:
    for cx, cy in [(-10.0, 5.0), (315.0, 235.0), (-200.0, -200.0)]:
        img = drawn(shape, cx, cy, 30.0, (0, 0, 255))
        assert img.shape == (240, 320, 3)
    assert tuple(drawn(shape, 2.0, 2.0, 30.0, (0, 0, 255))[0, 0]) == (0, 0, 255)


def test_an_unknown_shape_or_a_strided_image_is_refused() -> None:
    with pytest.raises(ValueError, match="hexagon"):
        raster.draw_shape(np.zeros((10, 10, 3), np.uint8), "hexagon", 5, 5, 3, (1, 2, 3))
    with pytest.raises(ValueError, match="contiguous"):
        raster.draw_shape(np.zeros((10, 20, 3), np.uint8)[:, ::2], "circle", 5, 5, 3, (1, 2, 3))


@pytest.mark.parametrize(("w", "h"), [(320, 240), (640, 480), (1280, 720), (1920, 1080), (480, 640)])
def test_the_clock_is_white_on_black_bottom_left_and_nowhere_else(w: int, h: int) -> None:
    img = np.full((h, w, 3), GREY, np.uint8)
    label = clock_label(3723.456, 98765)
    raster.clock_text(img, label)
    scale, thick, x, baseline = raster.label_layout(w, h)
    changed = (img != GREY).any(axis=2)
    ys, xs = np.nonzero(changed)
    # Where cv2.putText puts it: from x, digits 21 units high standing on the baseline, about 18
    # units a digit (Hershey simplex's metrics), plus the outline.
    margin = (thick + 2) / 2 + 1.5
    assert xs.min() >= x - margin and ys.max() <= baseline + margin
    assert ys.min() >= baseline - 21 * scale - margin
    assert ys.min() <= baseline - 21 * scale + margin  # as tall as the digits
    width = sum(raster.GLYPHS[c][0] for c in label) * scale
    assert 0.85 * width < xs.max() - xs.min() < 1.05 * width
    # White text, black outline, blends between (at 320x240 strokes are 1 px: mostly blends);
    # all of it in the bottom-left region.
    inked = len(label.replace(" ", "")) * scale
    assert (img >= 200).all(axis=2).sum() > 8 * inked and (img <= 40).all(axis=2).sum() > 4 * inked
    assert not changed[: h - int(0.15 * h)].any() and not changed[:, w // 2 + w // 8 :].any()
    grey = img.astype(int).max(axis=2) - img.astype(int).min(axis=2)
    assert (grey == 0).all()  # neutral: black, white and greys only


def test_the_clock_skips_characters_it_has_no_glyph_for() -> None:
    a = np.full((240, 320, 3), GREY, np.uint8)
    b = a.copy()
    raster.clock_text(a, "12")
    raster.clock_text(b, "1@2")  # '@' takes no room either
    assert np.array_equal(a, b)
    c = np.full((240, 320, 3), GREY, np.uint8)
    raster.clock_text(c, "")
    assert (c == GREY).all()


def test_frames_depend_only_on_their_number_size_and_fps() -> None:
    a = render_frame(40, 640, 480, 15.0)
    for n, w, h in [
        (3, 320, 240),
        (41, 640, 480),
        (7, 1280, 720),
    ]:  # other frames first: caches hold no state
        render_frame(n, w, h, 15.0)
    assert np.array_equal(a, render_frame(40, 640, 480, 15.0))
    assert not np.array_equal(a, render_frame(41, 640, 480, 15.0))
    assert not np.array_equal(a, render_frame(40, 640, 480, 10.0))


def test_a_frame_is_its_layout_drawn() -> None:
    """render_frame = the background, each placed shape and the clock, in that order."""
    layout = frame_layout(123, 640, 480, 15.0)
    img = np.full((480, 640, 3), layout.scene.background, np.uint8)
    for p in layout.placed:
        raster.draw_shape(img, p.shape, p.cx, p.cy, p.r, p.color)
    raster.clock_text(img, layout.label)
    assert np.array_equal(img, render_frame(123, 640, 480, 15.0))
    assert [p.shape for p in layout.placed] == [s.shape for s in layout.scene.shapes]


def test_the_test_pattern_loads_no_opencv() -> None:
    """The demo camera runs in the daemon's main process: importing it and drawing frames keeps cv2 out
    (a fresh interpreter, so no other test's import can hide or fake a load)."""
    code = (
        "import json, sys\n"
        "from edge.capture.testsrc import TestSource, render_frame\n"
        "from edge.capture import demo_world\n"
        "src = TestSource(640, 480, 15.0, realtime=False); src.open(); [src.read() for _ in range(3)]\n"
        "render_frame(500, 1280, 720, 15.0)\n"
        "print(json.dumps('cv2' in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) is False
