"""A frame made fit for its consumers: validated, contiguous, and no larger than max_edge.

Capture calls it once per frame, in the grabber thread, so 4K cameras do not cost every later stage
(the gate, the JPEG for {camera}/{task}/image, the model's own preprocessing); the http backend calls
it again with its own `image_max_edge` before a frame leaves the device. It lives in imaging, beside
the validation it builds on, so both can use it without inference depending on capture.
"""

from __future__ import annotations

import numpy as np

from edge.imaging.imageio import validate_array
from edge.imaging.resize import shrink


def prepare_image(raw: object, max_edge: int | None) -> np.ndarray:
    """A valid uint8 HxWx3 BGR array, downscaled to `max_edge` if larger; FrameError otherwise."""
    image = validate_array(raw)
    if max_edge:
        h, w = image.shape[:2]
        longest = max(h, w)
        if longest > max_edge:
            scale = max_edge / longest
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = validate_array(shrink(image, size))
    return image
