"""The last check before a frame leaves capture: validated, contiguous, and no larger than max_edge.

Downscaling here (once, in the grabber thread) keeps 4K cameras from costing every later stage:
the gate, the JPEG for {camera}/{task}/image and the model's own preprocessing.
"""

from __future__ import annotations

import numpy as np

from edge.imaging.imageio import validate_array
from edge.imaging.opencv import cv2


def prepare_image(raw: object, max_edge: int | None) -> np.ndarray:
    """A valid uint8 HxWx3 BGR array, downscaled to `max_edge` if larger; FrameError otherwise."""
    image = validate_array(raw)
    if max_edge:
        h, w = image.shape[:2]
        longest = max(h, w)
        if longest > max_edge:
            scale = max_edge / longest
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = validate_array(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    return image
