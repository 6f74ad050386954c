"""Anti-aliased drawing of the demo world in numpy alone: the test pattern's shapes and clock label.

Why: `testsrc`, the demo camera, runs in the daemon's main process, and drawing its frames with
OpenCV loaded cv2 there (about 33 MB of RSS) for nothing else. This module draws the same
pictures as edge.capture.demo_world's OpenCV drawing (draw_shape with LINE_AA, clock_text) closely
enough that the demo model reads them the same, with numpy only.

How: each shape is drawn inside its bounding box only. A pixel's coverage comes from its centre's
signed distance to the shape's edge, clipped to [0, 1], and blends the colour into the BGR uint8
image (a full pixel takes the exact colour). The clock label is a small stroke font (polylines in
the units of OpenCV's Hershey simplex font, digit height 21) drawn the way cv2.putText draws: a
black outline pass, then white strokes, each stroke a round-capped line whose coverage comes from
the distance to its centre line.

What differs from OpenCV's rendering:
- Shapes keep sub-pixel centres and sizes (OpenCV rounds them to whole pixels), so they drift
  smoothly.
- The edge is a one-pixel linear ramp centred EDGE_GROW px outside the geometric edge, where
  OpenCV's LINE_AA edge lies (it fills every pixel whose centre is on the boundary and adds a faint
  fringe), so a shape covers about as many pixels as OpenCV's; the ramp's steps differ a little
  from OpenCV's, and the triangle's corners are sharp where OpenCV's are slightly rounded.
- The clock's glyphs are this module's own drawings of 0-9 : . # and space, with about Hershey
  simplex's advances and heights; their outlines differ in detail, and glyphs sit on whole pixels.
  Other characters are skipped (the label uses no others). OpenCV 4 draws Hershey strokes so, black
  outline visible; OpenCV 5 (the PyPI wheel) draws FONT_HERSHEY_SIMPLEX with a filled, bolder built-in
  font at the same advances and heights, whose white pass hides the black one.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

# How far (px) outside the geometric edge the drawn edge lies: coverage is 1/2 there and ramps
# linearly from 1 to 0 over the pixel around it. OpenCV's LINE_AA puts it about this far out: it
# fills every pixel whose centre is on the boundary (half a pixel) and gives the next ones about a
# fifth; this value matches its drawn area within 0.5 % for radii 20-96 px.
EDGE_GROW = 0.65
_SQRT5 = math.sqrt(5.0)
BAND = 8  # rows a shape's fully covered pixels are filled by at once (see _blend_convex)

Polyline = tuple[tuple[float, float], ...]


# ----------------------------------------------------------------------------- shapes


def _coverage(signed_distance: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] from the signed distance (px, negative inside) of pixel centres to an edge."""
    np.clip(0.5 + EDGE_GROW - signed_distance, 0.0, 1.0, out=signed_distance)
    return signed_distance


def _box(cx: float, cy: float, r: float, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1): the pixels a shape of radius / half side r at (cx, cy) can touch, clipped."""
    reach = r + 0.5 + EDGE_GROW + 1.0
    x0, x1 = max(0, math.floor(cx - reach)), min(width, math.ceil(cx + reach) + 1)
    y0, y1 = max(0, math.floor(cy - reach)), min(height, math.ceil(cy + reach) + 1)
    return x0, x1, y0, y1


def _blend_convex(img: np.ndarray, x0: int, y0: int, coverage: np.ndarray, color: tuple[int, ...]) -> None:
    """Blend `color` into `img` (C-contiguous HxWx3 uint8) by `coverage` (in [0, 1]) of a convex shape
    whose box starts at (x0, y0).

    Numpy pays per call, and per pixel when the innermost axis is the 3 channels: the fully covered
    pixels common to each band of BAND rows form one rectangle, filled with one slice of a row of
    colour (the image seen as H x 3W bytes); the rest of the shape (the staircase beside those
    rectangles and the anti-aliased edge) is blended pixel by pixel in one gather and one scatter
    (a fully covered pixel takes the exact colour there too)."""
    h, w = img.shape[:2]
    bh, bw = coverage.shape
    full = coverage >= 1.0
    # Per row, the run of full pixels [first, last) (empty rows: [bw, 0)); per band, the runs' overlap.
    has = full.any(axis=1)
    first = np.where(has, full.argmax(axis=1), bw)
    last = np.where(has, bw - full[:, ::-1].argmax(axis=1), 0)
    bands = -(-bh // BAND)
    a = np.full(bands * BAND, bw)
    a[:bh] = first
    a = a.reshape(bands, BAND).max(axis=1)
    b = np.zeros(bands * BAND, np.int64)
    b[:bh] = last
    b = b.reshape(bands, BAND).min(axis=1)
    bytes_ = img.reshape(h, w * 3)
    pixels_of_color = np.empty((bw, 3), np.uint8)
    pixels_of_color[:] = color
    run = pixels_of_color.reshape(-1)
    for k in np.flatnonzero(a < b).tolist():
        ya, xa, xb = y0 + k * BAND, x0 + int(a[k]), x0 + int(b[k])
        bytes_[ya : min(ya + BAND, y0 + bh), 3 * xa : 3 * xb] = run[: 3 * (xb - xa)]
    column = np.arange(bw)[None, :]
    painted = (column >= np.repeat(a, BAND)[:bh, None]) & (column < np.repeat(b, BAND)[:bh, None])
    flat = np.flatnonzero((coverage > 0.0) & ~painted)
    if flat.size:
        c = coverage.reshape(-1)[flat][:, None]
        ys, xs = np.divmod(flat, coverage.shape[1])
        at = (ys + y0) * w + (xs + x0)
        pixels = img.reshape(h * w, 3)
        px = np.take(pixels, at, axis=0).astype(np.float32)  # take: a faster gather than pixels[at]
        pixels[at] = np.rint(px + (np.asarray(color, np.float32) - px) * c).astype(np.uint8)


def shape_coverage(shape: str, cx: float, cy: float, r: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Coverage (len(ys) x len(xs), float32 in [0, 1]) of the pixels at columns xs and rows ys by a
    filled circle (radius r), axis-aligned square (half side r) or triangle with vertices (cx, cy-r),
    (cx+r, cy+r), (cx-r, cy+r)."""
    dx = xs.astype(np.float32)[None, :] - np.float32(cx)
    dy = ys.astype(np.float32)[:, None] - np.float32(cy)
    if shape == "circle":
        return _coverage(np.sqrt(dx * dx + dy * dy) - np.float32(r))
    if shape == "square":  # separable: the product of the two one-dimensional coverages
        product: np.ndarray = _coverage(np.abs(dy) - np.float32(r)) * _coverage(np.abs(dx) - np.float32(r))
        return product
    if shape == "triangle":
        # The most outside of the three edges' lines: the base (y = cy + r) and the two sides,
        # whose outward normals are (+-2, -1) / sqrt(5) through the apex (cx, cy - r).
        base = dy - np.float32(r)
        apex = dy + np.float32(r)
        sides = (2.0 * np.abs(dx) - apex) / np.float32(_SQRT5)
        return _coverage(np.maximum(base, sides))
    raise ValueError(f"unknown shape {shape!r}")


def draw_shape(img: np.ndarray, shape: str, cx: float, cy: float, r: float, color: tuple[int, ...]) -> None:
    """One filled anti-aliased shape centred at (cx, cy) of radius / half side `r`, in BGR `color`,
    into the C-contiguous HxWx3 uint8 `img` in place (what demo_world.draw_shape draws with cv2.LINE_AA)."""
    if not img.flags.c_contiguous:
        raise ValueError("draw_shape draws into a C-contiguous image")
    h, w = img.shape[:2]
    x0, x1, y0, y1 = _box(cx, cy, r, w, h)
    if x0 >= x1 or y0 >= y1:
        return
    coverage = shape_coverage(shape, cx, cy, r, np.arange(x0, x1), np.arange(y0, y1))
    _blend_convex(img, x0, y0, coverage, color)


# ----------------------------------------------------------------------------- the clock's stroke font


def _oval(
    cx: float, cy: float, rx: float, ry: float, start: float = 0.0, end: float = 360.0, n: int = 20
) -> Polyline:
    """Points of an elliptic arc (degrees counter-clockwise from +x, y up)."""
    steps = max(2, round(n * abs(end - start) / 360.0))
    return tuple(
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in np.linspace(start, end, steps + 1)
    )


def _turned(lines: tuple[Polyline, ...]) -> tuple[Polyline, ...]:
    """The glyph turned half a turn in the digit box (a 6 becomes a 9)."""
    return tuple(tuple((DIGIT_X0 + DIGIT_X1 - x, 21.0 - y) for x, y in line) for line in lines)


# Units: y up from the baseline, digits 21 high, x from the left of the character cell; the advance
# of each character and its strokes (centre lines). Hershey simplex in OpenCV: digits advance 18 and
# their ink spans x 1.5-16.25; ':' and '.' advance 7.5, '#' 20.25, ' ' 7.
DIGIT_X0, DIGIT_X1 = 2.0, 16.0
_SIX: tuple[Polyline, ...] = (
    ((15.0, 18.0), (13.5, 20.3), (11.0, 21.0), (8.5, 21.0), (5.5, 19.5), (3.5, 16.0), (2.4, 11.0))
    + _oval(9.0, 6.8, 6.6, 6.8, 180.0, 540.0, 22)[1:],
)
GLYPHS: dict[str, tuple[float, tuple[Polyline, ...]]] = {
    "0": (18.0, (_oval(9.0, 10.5, 7.0, 10.5, 90.0, 450.0, 24),)),
    "1": (18.0, (((5.0, 17.0), (7.5, 18.5), (10.5, 21.0), (10.5, 0.0)),)),
    "2": (
        18.0,
        (_oval(9.0, 15.5, 6.6, 5.5, 165.0, -20.0, 12) + ((13.0, 10.0), (2.5, 0.0), (16.0, 0.0)),),
    ),
    "3": (
        18.0,
        (
            ((3.5, 21.0), (15.0, 21.0), (8.5, 13.0), (10.0, 13.0))
            + _oval(9.3, 6.6, 6.8, 6.6, 80.0, -130.0, 16)[1:],
        ),
    ),
    "4": (18.0, (((12.0, 21.0), (2.0, 7.0), (17.0, 7.0)), ((12.0, 21.0), (12.0, 0.0)))),
    "5": (
        18.0,
        (
            ((14.5, 21.0), (4.5, 21.0), (3.5, 12.0), (6.0, 13.5), (9.0, 14.0))
            + _oval(9.3, 7.0, 6.8, 7.0, 90.0, -140.0, 16)[1:],
        ),
    ),
    "6": (18.0, _SIX),
    "7": (18.0, (((2.0, 21.0), (16.0, 21.0), (6.5, 0.0)),)),
    "8": (18.0, (_oval(9.0, 16.0, 5.6, 5.0, 270.0, 630.0, 18), _oval(9.0, 5.5, 6.6, 5.5, 90.0, 450.0, 20))),
    "9": (18.0, _turned(_SIX)),
    ":": (7.5, (_oval(3.5, 13.0, 0.9, 0.9, 0.0, 360.0, 6), _oval(3.5, 1.0, 0.9, 0.9, 0.0, 360.0, 6))),
    ".": (7.5, (_oval(3.5, 1.0, 0.9, 0.9, 0.0, 360.0, 6),)),
    "#": (
        20.25,
        (
            ((9.5, 19.0), (6.5, 1.5)),
            ((15.5, 19.0), (12.5, 1.5)),
            ((2.5, 12.5), (18.5, 12.5)),
            ((1.5, 6.5), (17.5, 6.5)),
        ),
    ),
    " ": (7.0, ()),
}


def label_layout(img_w: int, img_h: int) -> tuple[float, int, int, int]:
    """(scale, thickness, x, baseline): demo_world.clock_text's font scale, stroke width and origin."""
    s = min(img_w, img_h)
    scale = max(0.35, s / 600.0)
    thick = max(1, int(round(scale * 2)))
    return scale, thick, max(4, s // 40), img_h - max(6, s // 30)


@lru_cache(maxsize=128)  # 12 glyphs a frame size: several cameras' sizes stay cached
def _glyph_distance(char: str, scale: float, pad: int) -> tuple[np.ndarray, int, int]:
    """(distance map, left, top) of one glyph at `scale`, drawn with its cell's origin at pixel (0, 0)
    on the baseline: each pixel's distance (px) to the nearest stroke centre line, over the strokes'
    box widened by `pad` px; left and top are the map's offsets from the origin."""
    segments = [
        (ax * scale, -ay * scale, bx * scale, -by * scale)
        for line in GLYPHS[char][1]
        for (ax, ay), (bx, by) in zip(line[:-1], line[1:], strict=True)
    ]
    seg = np.asarray(segments, np.float32).reshape(-1, 4)
    left = math.floor(float(np.minimum(seg[:, 0], seg[:, 2]).min())) - pad
    right = math.ceil(float(np.maximum(seg[:, 0], seg[:, 2]).max())) + pad
    top = math.floor(float(np.minimum(seg[:, 1], seg[:, 3]).min())) - pad
    bottom = math.ceil(float(np.maximum(seg[:, 1], seg[:, 3]).max())) + pad
    px = np.arange(left, right + 1, dtype=np.float32)[None, None, :]
    py = np.arange(top, bottom + 1, dtype=np.float32)[None, :, None]
    ax, ay, bx, by = (seg[:, i, None, None] for i in range(4))
    ux, uy = bx - ax, by - ay
    length2 = np.maximum(ux * ux + uy * uy, np.float32(1e-12))
    t = np.clip(((px - ax) * ux + (py - ay) * uy) / length2, 0.0, 1.0)
    qx, qy = px - ax - t * ux, py - ay - t * uy
    dist = np.sqrt(qx * qx + qy * qy).min(axis=0)
    dist.setflags(write=False)
    return dist, left, top


def clock_text(img: np.ndarray, label: str) -> None:
    """The demo camera's clock label, bottom left, white strokes with a black outline, in place
    (where and how big demo_world.clock_text's cv2.putText puts it)."""
    h, w = img.shape[:2]
    scale, thick, x, baseline = label_layout(w, h)
    outline = thick + 2
    pad = outline // 2 + 2
    placed: list[tuple[np.ndarray, int, int]] = []
    pen = float(x)
    for char in label:
        advance, strokes = GLYPHS.get(char, (0.0, ()))
        if strokes:
            dist, left, top = _glyph_distance(char, scale, pad)
            placed.append((dist, round(pen) + left, baseline + top))
        pen += advance * scale
    if not placed:
        return
    x0 = max(0, min(px for _, px, _ in placed))
    y0 = max(0, min(py for _, _, py in placed))
    x1 = min(w, max(px + d.shape[1] for d, px, _ in placed))
    y1 = min(h, max(py + d.shape[0] for d, _, py in placed))
    if x0 >= x1 or y0 >= y1:
        return
    dist = np.full((y1 - y0, x1 - x0), np.inf, np.float32)
    for d, px, py in placed:  # the label's distance map: the nearest stroke of any glyph
        gx0, gy0 = max(px, x0), max(py, y0)
        gx1, gy1 = min(px + d.shape[1], x1), min(py + d.shape[0], y1)
        if gx0 < gx1 and gy0 < gy1:
            view = dist[gy0 - y0 : gy1 - y0, gx0 - x0 : gx1 - x0]
            np.minimum(view, d[gy0 - py : gy1 - py, gx0 - px : gx1 - px], out=view)
    # Round-capped strokes of width `outline` in black, then `thick` in white over them: coverage from
    # the distance to the centre line. The label is small: blended in float over its whole box.
    black = np.clip(outline / 2 + 0.5 - dist, 0.0, 1.0)[..., None]
    white = np.clip(thick / 2 + 0.5 - dist, 0.0, 1.0)[..., None]
    region = img[y0:y1, x0:x1]
    under = region * (1.0 - black)
    region[...] = np.rint(under + (255.0 - under) * white).astype(np.uint8)
