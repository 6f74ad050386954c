"""Frame validation and decoding: the only gate between untrusted bytes/arrays and a model runtime.

The runtimes' own image decoders can kill the process (garbage, BMP) or spin forever (a truncated
JPEG), and silently accept CHW or 1-channel arrays as garbage. So every image is decoded here (JPEG
by edge.imaging.jpeg, any other format by OpenCV) and checked to be a contiguous uint8 HxWx3 array
of sane size before anything else sees it.
Bytes are checked before they are decoded: the header's width and height (edge.imaging.header) must
be within the frame limits, so a small file that declares 20000x20000 pixels never allocates them.

Through OpenCV, libjpeg reports a damaged scan only as a warning written straight to file descriptor
2 ("Corrupt JPEG data: premature end of data segment") and fills the rest of the picture with grey: a
truncated JPEG with an end marker appended decodes "fine". edge.imaging.jpeg raises instead; for
the other formats OpenCV decodes, the decoder's stderr is captured around each decode (one decode at a time, a process-wide file descriptor): libjpeg's corruption warnings refuse
the image, the decoders' other lines go to the debug log, and anything else another thread wrote in
that window is passed on to the real stderr. None of it reaches the journal on its own.

OpenCV is imported by the first decode of a format other than JPEG (a PNG in an image folder), not
with this module: it costs a process ~33 MB of RSS, and the main process of a daemon whose cameras
send JPEG, or are drawn, never loads it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator

import numpy as np

from edge.core.errors import FrameError
from edge.imaging import jpeg
from edge.imaging.header import MAX_EDGE, image_size
from edge.imaging.resize import shrink

MIN_EDGE = 16
MAX_FILE_BYTES = 256 * 1024 * 1024  # an uncompressed 8192x8192 BMP is 192 MB
_JPEG_EOI = b"\xff\xd9"
# libjpeg's warnings that mean the picture is not what the camera took (jerror.h: JWRN_JPEG_EOF,
# JWRN_HIT_MARKER, JWRN_MUST_RESYNC, JWRN_NOT_SEQUENTIAL, JWRN_EXTRANEOUS_DATA ...)
_CORRUPT = (
    "Corrupt JPEG data",
    "Premature end of JPEG file",
    "Invalid SOS parameters",
    "Inconsistent progression",
)
# Lines our decoders write on their own: kept out of the journal (debug log instead).
_DECODER_PREFIXES = (*_CORRUPT, "libpng warning", "libpng error", "Warning:", "JPEG", "TIFF", "WebP")
log = logging.getLogger(__name__)
_stderr_lock = threading.Lock()
_stderr_file: list[int] = []  # one scratch file per process, reused


@contextlib.contextmanager
def _decoder_stderr() -> Iterator[list[str]]:
    """File descriptor 2 points at a scratch file while the body runs; the lines it got are yielded
    (filled in on exit). One at a time: the descriptor is the process's."""
    lines: list[str] = []
    with _stderr_lock:
        if not _stderr_file:
            fd, name = tempfile.mkstemp(prefix="edge-decoder-stderr-")
            os.unlink(name)
            _stderr_file.append(fd)
        scratch = _stderr_file[0]
        os.ftruncate(scratch, 0)
        os.lseek(scratch, 0, os.SEEK_SET)
        saved = os.dup(2)
        os.dup2(scratch, 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            size = os.lseek(scratch, 0, os.SEEK_CUR)
            os.lseek(scratch, 0, os.SEEK_SET)
            text = os.read(scratch, size).decode(errors="replace") if size else ""
            other: list[str] = []
            for line in text.splitlines(keepends=True):
                (lines if line.startswith(_DECODER_PREFIXES) else other).append(line)
            if other:  # another thread's output, written while we held the descriptor
                os.write(2, "".join(other).encode())


def validate_array(image: object) -> np.ndarray:
    """Return `image` as a contiguous uint8 HxWx3 array or raise FrameError saying what is wrong."""
    if not isinstance(image, np.ndarray):
        raise FrameError(f"frame is {type(image).__name__}, not a numpy array")
    if image.dtype != np.uint8:
        raise FrameError(f"frame dtype is {image.dtype}, expected uint8")
    if image.ndim != 3 or image.shape[2] != 3:
        raise FrameError(f"frame shape is {tuple(image.shape)}, expected HxWx3 (BGR, channels last)")
    h, w = int(image.shape[0]), int(image.shape[1])
    if not (MIN_EDGE <= h <= MAX_EDGE and MIN_EDGE <= w <= MAX_EDGE):
        raise FrameError(f"frame size {w}x{h} is outside {MIN_EDGE}..{MAX_EDGE} pixels per edge")
    return np.ascontiguousarray(image)


def check_declared_size(data: bytes) -> tuple[int, int]:
    """The header's (width, height) if within the frame limits; FrameError before any decoding."""
    w, h = image_size(data)
    if not (MIN_EDGE <= h <= MAX_EDGE and MIN_EDGE <= w <= MAX_EDGE):
        raise FrameError(
            f"image declares {w}x{h} pixels, outside {MIN_EDGE}..{MAX_EDGE} per edge: not decoded"
        )
    return w, h


def decode_image_bytes(data: bytes) -> np.ndarray:
    """Decode image bytes (JPEG here, other formats by OpenCV) and validate; damage is refused.

    The declared size is checked first (a decompression bomb is refused unread). A JPEG without
    its end-of-image marker is refused before decoding, and a damaged scan by the decoder.
    """
    if not data:
        raise FrameError("image is empty")
    check_declared_size(data)
    if jpeg.is_jpeg(data):
        if not data.rstrip(b"\x00").endswith(_JPEG_EOI):
            raise FrameError("JPEG is truncated (no end-of-image marker)")
        return validate_array(jpeg.decode(data))
    return _decode_other(data)


def _decode_other(data: bytes) -> np.ndarray:
    """PNG, BMP, WebP, TIFF ... through OpenCV, its warnings captured (see the module docstring)."""
    from edge.imaging.opencv import cv2  # on first use: see the module docstring

    buf = np.frombuffer(data, dtype=np.uint8)
    refused: str | None = None
    with _decoder_stderr() as said:
        try:
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        except cv2.error as err:  # e.g. OpenCV's own size limit, when a header lied to ours
            image, refused = None, str(err).strip().splitlines()[-1]
    if refused is not None:
        raise FrameError(f"image refused by the decoder ({refused})")
    corrupt = [line.strip() for line in said if line.startswith(_CORRUPT)]
    if corrupt:
        raise FrameError(f"image is damaged: the decoder says {corrupt[0]!r}")
    for line in said:
        log.debug("image decoder: %s", line.strip())
    if image is None:
        raise FrameError(f"image could not be decoded ({len(data)} bytes, not a supported image format)")
    return validate_array(image)


def read_image_file(path: str) -> np.ndarray:
    """Read and validate an image file (never via the runtime's decoder)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise FrameError(f"cannot read image {path}: {err.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise FrameError(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MB, not read")
    try:
        return decode_image_bytes(data)
    except FrameError as err:
        raise FrameError(f"{path}: {err}") from None


def encode_jpeg(image: np.ndarray, max_bytes: int, quality: int = 85) -> bytes:
    """JPEG for {camera}/{task}/image, lowering quality then size until it fits `max_bytes`."""
    img = image
    while True:
        for q in (quality, *(x for x in (70, 55, 40) if x < quality)):
            data = jpeg.encode(img, q)
            if len(data) <= max_bytes:
                return data
        if min(img.shape[:2]) <= MIN_EDGE * 2:
            raise FrameError(f"frame does not fit in {max_bytes} bytes as JPEG")
        h, w = img.shape[:2]
        img = shrink(img[: h - h % 2, : w - w % 2], (w // 2, h // 2))
