"""Real camera streams for capture tests: generated video files, an image folder, a local HTTP MJPEG
server and a GStreamer RTSP server, each of which a test can kill and start again on the same port.

The RTSP server runs under Debian's /usr/bin/python3 (python3-gi is built for it, not for a venv);
its tests skip only when those Debian packages are missing (see RTSP_PACKAGES).
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.capture.testsrc import render_frame

VIDEO_SIZE = (320, 240)
VIDEO_FPS = 10.0
RTSP_PACKAGES = "gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good gstreamer1.0-plugins-base"
SYSTEM_PYTHON = "/usr/bin/python3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- camera events


class CameraEvents:
    """Collects a grabber's on_event calls (thread-safe) so a test can wait for them in order."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self._cond = threading.Condition()

    def __call__(self, name: str, payload: dict[str, Any]) -> None:
        with self._cond:
            self.events.append((time.monotonic(), name, dict(payload)))
            self._cond.notify_all()

    def names(self) -> list[str]:
        with self._cond:
            return [name for _, name, _ in self.events]

    def wait_for(self, name: str, count: int = 1, timeout: float = 10.0) -> tuple[float, dict[str, Any]]:
        """(monotonic time, payload) of the count-th event called `name`; fails the test on timeout."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self.names().count(name) >= count, timeout)
            if not ok:
                pytest.fail(f"no {name} #{count} within {timeout}s; events: {self.names()}")
            matches = [(t, p) for t, n, p in self.events if n == name]
            return matches[count - 1]


@pytest.fixture
def camera_events() -> CameraEvents:
    return CameraEvents()


# --------------------------------------------------------------------------- video files


@dataclass(frozen=True)
class Videos:
    """Generated MJPEG/AVI clips at VIDEO_FPS; `cut_frame` is the first frame of the second scene."""

    constant: Path  # a static scene with sensor noise, 20 s
    moving: Path  # the same scene with a box crossing it, 10 s
    cut: Path  # scene A, then from cut_frame on a different scene B, 10 s
    fps: float
    size: tuple[int, int]
    constant_frames: int
    moving_frames: int
    cut_frames: int
    cut_frame: int


def _scene(width: int, height: int, variant: int) -> np.ndarray:
    rng = np.random.default_rng(100 + variant)
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = (60, 90, 120) if variant == 0 else (200, 210, 190)
    for _ in range(12):
        x, y = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(15, 60)), y + int(rng.integers(15, 60))), color, -1)
    return img


def _noisy(img: np.ndarray, n: int) -> np.ndarray:
    """Deterministic sensor noise (+-4 grey levels): the gate must not call this motion."""
    noise = np.random.default_rng(n).integers(-4, 5, img.shape, dtype=np.int16)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: Iterator[np.ndarray], fps: float, size: tuple[int, int]) -> int:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MJPG/AVI to {path}")
    count = 0
    try:
        for frame in frames:
            writer.write(frame)
            count += 1
    finally:
        writer.release()
    return count


def make_videos(folder: Path, fps: float = VIDEO_FPS, size: tuple[int, int] = VIDEO_SIZE) -> Videos:
    w, h = size
    a, b = _scene(w, h, 0), _scene(w, h, 1)
    n_const, n_move, n_cut = int(20 * fps), int(10 * fps), int(10 * fps)
    cut_at = int(5 * fps)
    box = min(w, h) // 4  # a 60x60 box on 320x240: ~4.7% of the pixels

    def moving() -> Iterator[np.ndarray]:
        for i in range(n_move):
            img = a.copy()
            x = int((w - box) * i / (n_move - 1))
            y = h // 2 - box // 2 + int(h / 6 * np.sin(i / 5))
            cv2.rectangle(img, (x, y), (x + box, y + box), (250, 250, 250), -1)
            yield _noisy(img, i)

    videos = Videos(
        constant=folder / "constant.avi",
        moving=folder / "moving.avi",
        cut=folder / "cut.avi",
        fps=fps,
        size=size,
        constant_frames=n_const,
        moving_frames=n_move,
        cut_frames=n_cut,
        cut_frame=cut_at,
    )
    write_video(videos.constant, (_noisy(a, i) for i in range(n_const)), fps, size)
    write_video(videos.moving, moving(), fps, size)
    write_video(videos.cut, (_noisy(a if i < cut_at else b, i) for i in range(n_cut)), fps, size)
    return videos


@pytest.fixture(scope="session")
def stream_videos(tmp_path_factory: pytest.TempPathFactory) -> Videos:
    return make_videos(tmp_path_factory.mktemp("videos"))


# --------------------------------------------------------------------------- image folder


@dataclass(frozen=True)
class ImageDir:
    path: Path
    valid: int  # decodable images, in name order
    broken: int  # image-named files that are not valid images (truncated JPEG, garbage)


@pytest.fixture
def image_dir(tmp_path: Path) -> ImageDir:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        frame = render_frame(i * 10, 160, 120, 10.0)
        ext = ".png" if i % 2 else ".jpg"
        assert cv2.imwrite(str(folder / f"img{i:02d}{ext}"), frame)
    ok, jpeg = cv2.imencode(".jpg", render_frame(99, 160, 120, 10.0))
    assert ok
    (folder / "img02b_truncated.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    (folder / "img03b_garbage.png").write_bytes(os.urandom(2000))
    (folder / "readme.txt").write_text("not an image, ignored by extension")
    return ImageDir(folder, valid=4, broken=2)


# --------------------------------------------------------------------------- HTTP MJPEG server


class MjpegServer:
    """A local IP camera: multipart/x-mixed-replace MJPEG at /stream, a JPEG snapshot at /snap.jpg.

    `stop()` kills it (client sockets are cut, like a crashed camera); `start()` brings it back on the
    same port. `pause()` keeps connections open but stops sending (a hung camera). `inject(kind)`
    replaces the next frame by a "truncated" JPEG or a "garbage" part.
    """

    def __init__(
        self,
        fps: float = 25.0,
        size: tuple[int, int] = (320, 240),
        credentials: tuple[str, str] | None = None,
        content_length: bool = True,
        close_after_s: float | None = None,
    ) -> None:
        self.fps = fps
        self.size = size
        self.credentials = credentials
        self.content_length = content_length
        self.close_after_s = close_after_s  # a flapping camera: each stream ends after this long
        self.port = free_port()
        self.parts_sent = 0
        self.injected_sent = 0
        self.requests = 0
        self._inject: list[str] = []
        self._lock = threading.Lock()
        self._paused = threading.Event()
        self._running = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return self.url_for("/stream")

    def url_for(self, path: str, with_credentials: bool = True) -> str:
        auth = ""
        if self.credentials and with_credentials:
            auth = f"{self.credentials[0]}:{self.credentials[1]}@"
        return f"http://{auth}127.0.0.1:{self.port}{path}"

    def inject(self, kind: str, count: int = 1) -> None:
        assert kind in ("truncated", "garbage")
        with self._lock:
            self._inject.extend([kind] * count)

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def _next_part(self, n: int) -> tuple[bytes, bool]:
        with self._lock:
            kind = self._inject.pop(0) if self._inject else None
        frame = render_frame(n, self.size[0], self.size[1], self.fps)
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
        assert ok
        data = buf.tobytes()
        if kind == "truncated":
            return data[: len(data) * 2 // 3], True
        if kind == "garbage":
            return b"\x00garbage" + os.urandom(1500), True
        return data, False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

            def _authorized(self) -> bool:
                if server.credentials is None:
                    return True
                token = base64.b64encode(":".join(server.credentials).encode()).decode()
                if self.headers.get("Authorization") == f"Basic {token}":
                    return True
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False

            def do_GET(self) -> None:
                server.requests += 1
                if not self._authorized():
                    return
                if self.path == "/snap.jpg":
                    data, _ = server._next_part(server.parts_sent)
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if self.path != "/stream":
                    self.send_error(404)
                    return
                with server._lock:
                    server._clients.add(self.connection)
                try:
                    self._stream()
                except OSError:
                    pass  # the client went away or the server was killed
                finally:
                    with server._lock:
                        server._clients.discard(self.connection)

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                period = 1.0 / server.fps
                n = 0
                opened = time.monotonic()
                while server._running.is_set():
                    if server.close_after_s is not None and time.monotonic() - opened > server.close_after_s:
                        return  # the handler closes the connection
                    if server._paused.is_set():
                        time.sleep(0.02)
                        continue
                    data, injected = server._next_part(n)
                    head = b"--frame\r\nContent-Type: image/jpeg\r\n"
                    if server.content_length:
                        head += b"Content-Length: %d\r\n" % len(data)
                    self.wfile.write(head + b"\r\n" + data + b"\r\n")
                    self.wfile.flush()
                    with server._lock:
                        server.parts_sent += 1
                        server.injected_sent += int(injected)
                    n += 1
                    time.sleep(period)

        return Handler

    def start(self) -> None:
        assert self._server is None, "already running"
        deadline = time.monotonic() + 5
        while True:
            try:
                self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
                break
            except OSError:  # the old socket may linger a moment after a kill
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._server.daemon_threads = True
        self._running.set()
        self._thread = threading.Thread(target=self._server.serve_forever, name="mjpeg-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Kill: cut every client connection at once, then close the listening socket."""
        self._running.clear()
        with self._lock:
            clients = list(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


@pytest.fixture
def mjpeg_server() -> Iterator[MjpegServer]:
    server = MjpegServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mjpeg_server_factory() -> Iterator[Callable[..., MjpegServer]]:
    """For tests that need options (credentials, no Content-Length): call it, then start()."""
    made: list[MjpegServer] = []

    def make(**kwargs: object) -> MjpegServer:
        server = MjpegServer(**kwargs)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


# --------------------------------------------------------------------------- RTSP server

RTSP_SERVER_SCRIPT = r"""
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer, GLib
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(sys.argv[1])
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1"
    " ! videoconvert ! video/x-raw,format=I420 ! jpegenc ! rtpjpegpay name=pay0 pt=26 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit("cannot listen on port " + sys.argv[1])
print("ready", flush=True)
GLib.MainLoop().run()
"""

RTSP_PROBE = r"""
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ("videotestsrc", "videoconvert", "jpegenc", "rtpjpegpay") if Gst.ElementFactory.find(e) is None]
print(" ".join(missing))
"""


def rtsp_unavailable_reason() -> str | None:
    """Why the RTSP server cannot run here (missing Debian packages), or None if it can."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found; the RTSP test server needs Debian's python3 with: {RTSP_PACKAGES}"
    proc = subprocess.run([SYSTEM_PYTHON, "-c", RTSP_PROBE], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"GStreamer RTSP server not importable ({last}); apt-get install -y {RTSP_PACKAGES}"
    if proc.stdout.strip():
        return f"GStreamer elements missing: {proc.stdout.strip()}; apt-get install -y {RTSP_PACKAGES}"
    return None


class RtspServer:
    """Debian's gst-rtsp-server in a child process at rtsp://127.0.0.1:PORT/cam; kill() and start() again."""

    def __init__(self, script: Path) -> None:
        self.script = script
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self, timeout: float = 20.0) -> None:
        assert self.proc is None, "already running"
        deadline = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(
                [SYSTEM_PYTHON, str(self.script), str(self.port)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()  # "ready" once listening, "" if it exited
            if line.strip() == "ready":
                return
            err = self.proc.communicate(timeout=10)[1]
            self.proc = None
            if time.monotonic() > deadline:  # e.g. the port is still held after a kill
                raise RuntimeError(f"RTSP server did not start on port {self.port}: {err.strip()[-500:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=10)
        self.proc = None


@pytest.fixture(scope="session")
def rtsp_available() -> None:
    reason = rtsp_unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def rtsp_server(rtsp_available: None, tmp_path: Path) -> Iterator[RtspServer]:
    script = tmp_path / "rtsp_server.py"
    script.write_text(RTSP_SERVER_SCRIPT)
    server = RtspServer(script)
    server.start()
    yield server
    server.kill()


__all__ = ["CameraEvents", "ImageDir", "MjpegServer", "RtspServer", "Videos", "free_port", "make_videos"]
