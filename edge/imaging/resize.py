"""Shrinking a frame by area averaging, in numpy where the factor is whole, with OpenCV otherwise.

Frames are made smaller in three places: capture's `max_edge`, the remote backend's
`image_max_edge`, and a picture halved until it fits its byte budget. The common cases are whole
factors (a 4K camera to 1920, a picture halved): there a block mean is OpenCV's INTER_AREA (the same
pixels at 2x, within one grey level at 4x) and needs no OpenCV, which the main process then does not load at all (~33 MB of RSS). Another factor
(2592x1944 to 1920x1440) takes OpenCV's INTER_AREA, imported on first use: a numpy resampler for
arbitrary factors costs ~10x OpenCV's time per frame, and such a camera can be asked for the size
wanted instead (V4L2 and picamera2 scale in hardware).
"""

from __future__ import annotations

import numpy as np


def whole_factor(src: tuple[int, int], dst: tuple[int, int]) -> int | None:
    """The integer k with src == k * dst on both axes (width, height), or None."""
    (sw, sh), (dw, dh) = src, dst
    if dw <= 0 or dh <= 0 or sw % dw or sh % dh:
        return None
    k = sw // dw
    return k if k == sh // dh else None


def shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` (HxWxC uint8) averaged down to `size` = (width, height), C-contiguous (`image` itself
    when it is contiguous and already that size)."""
    h, w = image.shape[:2]
    k = whole_factor((w, h), size)
    if k == 1:
        return np.ascontiguousarray(image)
    if k is not None:
        dw, dh = size
        blocks = image.reshape(dh, k, dw, k, -1)
        total = np.zeros((dh, dw, blocks.shape[-1]), np.uint32)
        for dy in range(k):
            for dx in range(k):
                total += blocks[:, dy, :, dx]
        # Round half up, as OpenCV's fixed-point INTER_AREA does for whole factors.
        mean = (total + (k * k) // 2) // (k * k)
        return mean.astype(np.uint8).reshape(dh, dw, *image.shape[2:])
    from edge.imaging.opencv import cv2  # another factor: see the module docstring

    return np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
