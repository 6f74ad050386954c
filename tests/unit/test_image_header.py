"""Decompression bombs: image sizes are read from the header and refused before anything is decoded."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.core.errors import FrameError
from edge.imaging import imageio
from edge.imaging.header import image_size

REPO = Path(__file__).resolve().parents[2]


def bomb_png(side: int = 20000) -> bytes:
    """An 8-bit grey PNG of side x side zero pixels: ~389 KB for 20000, 400 MB once decoded (1.2 GB BGR)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + one row
    idat = b"".join([comp.compress(row) for _ in range(side)] + [comp.flush()])
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(bomb_png())
    return path


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tiff", ".ppm", ".pgm"])
@pytest.mark.parametrize("size", [(17, 16), (640, 480), (1000, 3001)])
def test_header_size_matches_what_opencv_decodes(ext: str, size: tuple[int, int]) -> None:
    w, h = size
    img = np.random.default_rng(w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    if ext == ".pgm":
        img = img[:, :, 0]
    ok, buf = cv2.imencode(ext, img)
    assert ok
    assert image_size(buf.tobytes()) == (w, h)


def test_lossless_webp_and_progressive_jpeg_headers() -> None:
    img = np.zeros((123, 321, 3), np.uint8)
    webp = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    assert webp[12:16] == b"VP8L" and image_size(webp) == (321, 123)
    jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert image_size(jpeg) == (321, 123)


@pytest.mark.parametrize(
    "data",
    [b"not an image", b"\x89PNG\r\n\x1a\n" + b"garbage", b"\xff\xd8\xff\xda\x00\x02", b"GIF89a" + bytes(20)],
)
def test_unreadable_headers_are_refused(data: bytes) -> None:
    with pytest.raises(FrameError):
        image_size(data)


def test_a_png_bomb_is_refused_before_decoding(bomb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert bomb.stat().st_size < 400_000

    def no_decode(*_a: object) -> None:
        raise AssertionError("decoded a bomb")

    monkeypatch.setattr(cv2, "imdecode", no_decode)  # the very module imageio decodes with
    with pytest.raises(FrameError, match="20000x20000"):
        imageio.read_image_file(str(bomb))
    with pytest.raises(FrameError, match="not decoded"):
        imageio.decode_image_bytes(bomb.read_bytes())


_PEAK_CHILD = """
import resource, sys
from edge.core.errors import FrameError
from edge.imaging.imageio import read_image_file
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(3):  # an image dir comes round to it again and again
    try:
        read_image_file(sys.argv[1])
    except FrameError:
        pass
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_the_bomb_costs_no_memory(bomb: Path) -> None:
    """Measured in a fresh process: the peak RSS grows by less than 50 MB (before the fix: +2.3 GB)."""
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_CHILD, str(bomb)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(REPO),
        check=True,
    )
    assert int(out.stdout.strip()) < 50, out.stdout


def test_opencv_refuses_oversized_images_itself(tmp_path: Path) -> None:
    """The second wall: OpenCV's own limit, set before cv2 loads, refuses what a lying header let by."""
    code = (
        "import numpy as np\n"
        "from edge.imaging.opencv import cv2\n"
        "import sys\n"
        "data = np.frombuffer(open(sys.argv[1], 'rb').read(), np.uint8)\n"
        "try:\n"
        "    cv2.imdecode(data, cv2.IMREAD_GRAYSCALE); print('decoded')\n"
        "except cv2.error:\n"
        "    print('refused')\n"
    )
    path = tmp_path / "bomb9000.png"
    path.write_bytes(bomb_png(9000))
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60, cwd=str(REPO)
    )
    assert out.stdout.strip() == "refused", out.stderr[-500:]


_TRUNCATED_CHILD = """
import sys
import numpy as np
from edge.core.errors import FrameError
from edge.imaging.imageio import decode_image_bytes
from edge.imaging.opencv import cv2
rng = np.random.default_rng(7)
ok, buf = cv2.imencode(".jpg", rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
whole = buf.tobytes()
cut = whole[: len(whole) // 2] + b"\\xff\\xd9"  # truncated, with an end marker appended
print("whole", decode_image_bytes(whole).shape, flush=True)
sys.stderr.write("a line of our own\\n"); sys.stderr.flush()
for _ in range(3):
    try:
        decode_image_bytes(cut)
        print("accepted", flush=True)
    except FrameError as err:
        print("refused", err, flush=True)
"""


def test_a_truncated_jpeg_with_an_end_marker_is_refused_and_libjpeg_stays_quiet() -> None:
    """Before: libjpeg wrote "Corrupt JPEG data: premature end of data segment" to stderr (the
    journal, outside the logger) and the grey-filled picture was accepted."""
    proc = subprocess.run(
        [sys.executable, "-c", _TRUNCATED_CHILD], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "whole (480, 640, 3)"
    assert len(lines) == 4 and all(
        line.startswith("refused") and "Corrupt JPEG" in line for line in lines[1:]
    )
    assert "Corrupt JPEG" not in proc.stderr and "a line of our own" in proc.stderr
