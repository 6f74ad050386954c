"""Image dimensions from the file header, read before anything is decoded.

A 389 KB PNG can declare 20000x20000 pixels: decoding it first and checking the size afterwards
costs gigabytes (an OOM kill on a small board). So the width and height are read here from the
header bytes (PNG, JPEG, BMP, WebP, TIFF, PNM) and an image that is too large, or in a format whose
header we cannot read, is refused before OpenCV allocates anything. Pure bytes, no numpy, no cv2.
"""

from __future__ import annotations

import struct

from edge.core.errors import FrameError

FORMATS = "PNG, JPEG, BMP, WebP, TIFF, PNM"
MAX_EDGE = 8192
"""Pixels per edge, the largest frame accepted anywhere (OpenCV's decoders are told the same limit)."""

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (SOF0..SOF15 except DHT C4, JPG C8, DAC CC): they carry the size.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI, EOI: no length field


def _u16be(data: bytes, at: int) -> int:
    return int(struct.unpack_from(">H", data, at)[0])


def _png(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise FrameError("PNG without an IHDR header")
    w, h = struct.unpack_from(">II", data, 16)
    return int(w), int(h)


def _jpeg(data: bytes) -> tuple[int, int]:
    i, n = 2, len(data)
    while i < n:
        if data[i] != 0xFF:
            raise FrameError(f"JPEG header is corrupt (no marker at byte {i})")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker in _STANDALONE:
            continue
        if marker == 0xDA:  # start of scan before any frame header
            break
        if i + 2 > n:
            break
        length = _u16be(data, i)
        if length < 2:
            raise FrameError("JPEG header is corrupt (segment length < 2)")
        if marker in _SOF:
            if i + 7 > n:
                break
            h, w = _u16be(data, i + 3), _u16be(data, i + 5)
            if h == 0:
                raise FrameError("JPEG without a height in its frame header")
            return w, h
        i += length
    raise FrameError("JPEG without a frame header (SOF)")


def _bmp(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise FrameError("BMP header is truncated")
    (dib,) = struct.unpack_from("<I", data, 14)
    if dib == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        w, h = struct.unpack_from("<HH", data, 18)
    else:
        w, h = struct.unpack_from("<ii", data, 18)
    return abs(int(w)), abs(int(h))  # a negative height means top-down rows


def _webp(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack_from("<HH", data, 26)
        return int(w) & 0x3FFF, int(h) & 0x3FFF
    raise FrameError("WebP header is not readable")


def _tiff(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8 or struct.unpack_from(order + "H", data, 2)[0] != 42:
        raise FrameError("TIFF header is not readable (BigTIFF is not supported)")
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    if ifd + 2 > len(data):
        raise FrameError("TIFF header is truncated")
    (count,) = struct.unpack_from(order + "H", data, ifd)
    size: dict[int, int] = {}
    for k in range(count):
        at = ifd + 2 + 12 * k
        if at + 12 > len(data):
            break
        tag, typ = struct.unpack_from(order + "HH", data, at)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG, stored in the entry
            fmt = "H" if typ == 3 else "I"
            size[tag] = int(struct.unpack_from(order + fmt, data, at + 8)[0])
    if 256 not in size or 257 not in size:
        raise FrameError("TIFF without width and height tags")
    return size[256], size[257]


def _pnm(data: bytes) -> tuple[int, int]:
    """P1..P6: magic, then width and height as ASCII numbers; '#' starts a comment."""
    numbers: list[int] = []
    i, n = 2, min(len(data), 4096)
    while len(numbers) < 2 and i < n:
        c = data[i : i + 1]
        if c == b"#":
            while i < n and data[i : i + 1] not in (b"\n", b"\r"):
                i += 1
        elif c.isdigit():
            j = i
            while j < n and data[j : j + 1].isdigit():
                j += 1
            numbers.append(int(data[i:j]))
            i = j
            continue
        elif not c.isspace():
            break
        i += 1
    if len(numbers) < 2:
        raise FrameError("PNM header is not readable")
    return numbers[0], numbers[1]


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) as the header declares them; FrameError for an unknown or unreadable header."""
    if data.startswith(_PNG_SIG):
        return _png(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    if data.startswith(b"BM"):
        return _bmp(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff(data)
    if len(data) > 2 and data[:1] == b"P" and data[1:2] in b"123456" and data[2:3].isspace():
        return _pnm(data)
    raise FrameError(f"not a supported image format ({FORMATS})")
