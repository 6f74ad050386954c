"""Motion crops: the region of a frame that changed, as a box in full-frame pixels.

The gate scores a small grey copy (`gate.GATE_WIDTH` px wide); its last mask of changed pixels says
where the motion was. `motion_box` turns that mask into a box on the full frame: the bounding box of
the changed pixels, scaled back up, padded (context around the object helps the model), grown to a
minimum size around its centre (a tiny box is mostly blur after the HD resize), shifted and clipped
to stay inside the frame. A small object far from the camera then gets the detail of a full crop at
the token cost of one (num_crops counts crops of whatever image the model is given).

Boxes are (x, y, w, h) integers, the form results carry (`roi`).
"""

from __future__ import annotations

import math

import numpy as np

Box = tuple[int, int, int, int]

PAD_FRACTION = 0.25  # of the box's longer side, on every side
PAD_MIN_PX = 16
MIN_SIZE_PX = 336  # one Phi-3.5-vision crop: smaller boxes are upscaled anyway


def mask_bounds(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), exclusive ends, of the true pixels of a 2-D mask; None when none is set."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _grow(lo: float, hi: float, size: int, limit: int) -> tuple[int, int]:
    """[lo, hi) grown to at least `size` around its centre, moved inside [0, limit), then clipped."""
    if hi - lo < size:
        centre = (lo + hi) / 2.0
        lo, hi = centre - size / 2.0, centre + size / 2.0
    if lo < 0:
        hi, lo = hi - lo, 0.0
    if hi > limit:
        lo, hi = lo - (hi - limit), float(limit)
    a, b = max(0, math.floor(lo)), min(limit, math.ceil(hi))
    return a, b


def motion_box(
    mask: np.ndarray,
    frame_width: int,
    frame_height: int,
    *,
    pad_fraction: float = PAD_FRACTION,
    pad_min_px: int = PAD_MIN_PX,
    min_size_px: int = MIN_SIZE_PX,
) -> Box | None:
    """The padded box around the changed pixels of the gate's `mask`, in frame pixels; None: no motion.

    `mask` may be any size (the gate's copy keeps the frame's aspect ratio): its pixels are scaled by
    frame_width / mask width and frame_height / mask height.
    """
    if frame_width <= 0 or frame_height <= 0:
        raise ValueError("frame size must be positive")
    bounds = mask_bounds(mask)
    if bounds is None:
        return None
    sx = frame_width / mask.shape[1]
    sy = frame_height / mask.shape[0]
    x0, y0, x1, y1 = bounds[0] * sx, bounds[1] * sy, bounds[2] * sx, bounds[3] * sy
    pad = max(float(pad_min_px), pad_fraction * max(x1 - x0, y1 - y0))
    x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    ax, bx = _grow(x0, x1, min(min_size_px, frame_width), frame_width)
    ay, by = _grow(y0, y1, min(min_size_px, frame_height), frame_height)
    return ax, ay, bx - ax, by - ay


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The box's pixels of an HxWxC frame, as a contiguous copy (the frame itself is shared, read-only)."""
    x, y, w, h = box
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > image.shape[1] or y + h > image.shape[0]:
        raise ValueError(f"box {box} is not inside a {image.shape[1]}x{image.shape[0]} frame")
    return np.ascontiguousarray(image[y : y + h, x : x + w])
