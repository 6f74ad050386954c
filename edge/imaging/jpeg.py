"""JPEG in and out through simplejpeg (libjpeg-turbo's TurboJPEG API), the one module that imports it.

Nearly every frame the daemon handles is a JPEG: MJPEG parts, image folders, the picture published
with a result, the data URL sent to a remote model. OpenCV decodes them with the same libjpeg-turbo
(the same pixels, bit for bit), but loading it costs the main process ~33 MB of RSS, a third of
what it holds; simplejpeg costs ~1 MB. It also reports a damaged scan as an error instead of a
warning written to file descriptor 2 (`strict=True`), so no stderr capture is needed for JPEG, and
decodes without holding the GIL.

Colour order is OpenCV's (BGR) throughout: frames are BGR everywhere in the daemon. Chroma is
subsampled 4:2:0 on encode, as OpenCV's `imencode` does, so the byte budgets of a picture stay what
they were.
"""

from __future__ import annotations

import numpy as np
import simplejpeg

from edge.core.errors import FrameError

SOI = b"\xff\xd8"  # a JPEG starts with these two bytes


def is_jpeg(data: bytes) -> bool:
    return data[:2] == SOI


def decode(data: bytes) -> np.ndarray:
    """HxWx3 uint8 BGR; FrameError naming what the decoder said for damaged or unreadable data."""
    try:
        image = simplejpeg.decode_jpeg(data, colorspace="BGR", strict=True)
    except ValueError as err:
        said = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        if said.startswith(("Corrupt JPEG data", "Premature end of JPEG file")):
            raise FrameError(f"image is damaged: the decoder says {said!r}") from None
        raise FrameError(f"image refused by the decoder ({said})") from None
    return np.asarray(image)


def encode(image: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of an HxWx3 uint8 BGR array at `quality` (1-100), chroma 4:2:0."""
    try:
        return bytes(
            simplejpeg.encode_jpeg(
                np.ascontiguousarray(image), quality=int(quality), colorspace="BGR", colorsubsampling="420"
            )
        )
    except ValueError as err:
        raise FrameError(f"JPEG encoder refused the frame ({err})") from None
