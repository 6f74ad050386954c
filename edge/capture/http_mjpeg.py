"""HTTP(S) MJPEG cameras (multipart/x-mixed-replace), and single-JPEG snapshot URLs polled at `fps`.

The multipart stream is parsed here rather than by FFmpeg so that every part is one JPEG we decode
ourselves (edge.imaging.imageio): a truncated or garbage part is refused and counted instead of being
concealed as a grey frame, and a dead server shows up within the socket timeout. Credentials in the
URL become Basic/Digest auth and never appear in logs.
"""

from __future__ import annotations

import http.client
import logging
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np

from edge.capture.base import CameraError, CameraInfo, Pacer
from edge.capture.redact import redact_source
from edge.imaging.imageio import decode_image_bytes

log = logging.getLogger(__name__)

MAX_PART_BYTES = 32 * 1024 * 1024  # a 8192x8192 JPEG at high quality is well below this
MAX_LINE = 64 * 1024
MAX_SKIP_BYTES = 4 * 1024 * 1024  # junk tolerated while looking for the next boundary


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(url without userinfo, user, password): urllib cannot connect to `user:pw@host`."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return clean, user, password


def _boundary(content_type: str) -> bytes:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip().strip('"').encode("latin-1")
    raise CameraError(f"multipart stream without a boundary (Content-Type: {content_type})")


class MjpegHttpSource:
    kind = "http-mjpeg"
    paced_by_consumer = False

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        snapshot_fps: float = 1.0,
        cancel: threading.Event | None = None,
    ) -> None:
        self.description = redact_source(url)
        self._url, self._user, self._password = split_credentials(url)
        self.timeout_s = timeout_s
        self._snapshot_pacer = Pacer(snapshot_fps, cancel)
        self._snapshot_fps = snapshot_fps
        self._resp: Any = None
        self._delims: tuple[bytes, ...] = ()
        self._pending: bytes | None = None  # a snapshot body already read by open()
        self._pushback: bytes | None = None  # a boundary line read while looking for a part's end
        self._multipart = False
        self._grabbed: bytes | None = None  # the part grab() took, until retrieve() decodes it

    # ------------------------------------------------------------------ connection

    def _opener(self) -> urllib.request.OpenerDirector:
        # Cameras are local devices: never route them through an HTTP proxy from the environment.
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if self._user is not None:
            mgr = urllib.request.HTTPPasswordMgrWithPriorAuth()
            mgr.add_password(None, self._url, self._user, self._password or "", is_authenticated=True)
            handlers += [urllib.request.HTTPBasicAuthHandler(mgr), urllib.request.HTTPDigestAuthHandler(mgr)]
        return urllib.request.build_opener(*handlers)

    def _request(self) -> Any:
        req = urllib.request.Request(self._url, headers={"User-Agent": "edge-camera", "Accept": "*/*"})
        try:
            return self._opener().open(req, timeout=self.timeout_s)
        except urllib.error.HTTPError as err:
            err.close()
            raise CameraError(f"camera {self.description}: HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", err)
            raise CameraError(f"camera {self.description}: cannot connect ({reason})") from None

    def open(self) -> CameraInfo:
        resp = self._request()
        content_type = resp.headers.get("Content-Type", "")
        main_type = content_type.split(";")[0].strip().lower()
        if main_type.startswith("multipart/"):
            boundary = _boundary(content_type)
            bare = boundary[2:] if boundary.startswith(b"--") else boundary
            # RFC 2046 says the delimiter is "--" + boundary; some cameras declare it with the dashes.
            self._delims = (b"--" + bare, bare, b"--" + boundary)
            self._multipart = True
            self._resp = resp
            self._pushback = None
            fps = None
        elif main_type.startswith("image/"):
            self._pending = self._read_body(resp)
            self._multipart = False
            fps = self._snapshot_fps
        else:
            resp.close()
            raise CameraError(
                f"camera {self.description}: not an MJPEG stream or a JPEG snapshot (Content-Type: {content_type!r})"
            )
        log.info("camera opened kind=http-mjpeg source=%s multipart=%s", self.description, self._multipart)
        return CameraInfo(self.kind, self.description, fps=fps, fourcc="MJPG", backend="http")

    def _read_body(self, resp: Any) -> bytes:
        try:
            with resp:
                body: bytes = resp.read(MAX_PART_BYTES + 1)[:MAX_PART_BYTES]
                return body
        except (OSError, http.client.HTTPException) as err:
            raise CameraError(f"camera {self.description}: snapshot read failed ({err})") from None

    def close(self) -> None:
        resp, self._resp = self._resp, None
        if resp is not None:
            try:
                resp.close()
            except OSError:
                log.debug("camera %s: error closing the connection", self.description, exc_info=True)

    # ------------------------------------------------------------------ frames

    def read(self) -> np.ndarray:
        self.grab()
        return self.retrieve()

    def grab(self) -> None:
        """Take the next JPEG off the stream, undecoded (an idle camera decodes only some)."""
        if not self._multipart:
            self._grabbed = self._next_snapshot()
            return
        try:
            self._grabbed = self._next_part()
        except TimeoutError:
            raise CameraError(f"camera {self.description}: no data for {self.timeout_s:g}s") from None
        except (OSError, http.client.HTTPException, ValueError) as err:
            raise CameraError(
                f"camera {self.description}: stream broken ({type(err).__name__}: {err})"
            ) from None

    def retrieve(self) -> np.ndarray:
        data, self._grabbed = self._grabbed, None
        if data is None:
            raise CameraError(f"camera {self.description}: retrieve() without grab()")
        return decode_image_bytes(data)  # FrameError for a truncated or garbage part

    def _next_snapshot(self) -> bytes:
        if self._pending is not None:
            data, self._pending = self._pending, None
            return data
        self._snapshot_pacer.wait()
        return self._read_body(self._request())

    def _readline(self) -> bytes:
        if self._pushback is not None:
            line, self._pushback = self._pushback, None
            return line
        if self._resp is None:
            raise CameraError(f"camera {self.description}: not open")
        read: bytes = self._resp.readline(MAX_LINE)
        if not read:
            raise CameraError(f"camera {self.description}: stream closed by the server")
        return read

    def _delimiter(self, line: bytes) -> str | None:
        """ "part" for a boundary line, "end" for the closing one, None for anything else."""
        stripped = line.rstrip(b"\r\n")
        for delim in self._delims:
            if stripped == delim:
                return "part"
            if stripped == delim + b"--":
                return "end"
        return None

    def _next_part(self) -> bytes:
        """Skip to a boundary, read the part headers, then its body by Content-Length or to the next boundary."""
        skipped = 0
        while True:
            line = self._readline()
            kind = self._delimiter(line)
            if kind == "end":
                raise CameraError(f"camera {self.description}: stream ended (closing boundary)")
            if kind == "part":
                break
            skipped += len(line)
            if skipped > MAX_SKIP_BYTES:
                raise CameraError(f"camera {self.description}: no multipart boundary in {skipped} bytes")
        length: int | None = None
        while True:
            line = self._readline()
            if line in (b"\r\n", b"\n"):
                break
            key, _, value = line.decode("latin-1").partition(":")
            if key.strip().lower() == "content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    length = None
        if length is None:
            return self._read_to_boundary()
        if not 0 <= length <= MAX_PART_BYTES:
            raise CameraError(f"camera {self.description}: part of {length} bytes refused")
        data: bytes = self._resp.read(length)
        if len(data) < length:
            raise CameraError(f"camera {self.description}: stream closed inside a part")
        return data

    def _read_to_boundary(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            line = self._readline()
            if self._delimiter(line):
                # The delimiter starts the next part (or ends the stream): leave it for the next call.
                self._pushback = line
                break
            chunks.append(line)
            size += len(line)
            if size > MAX_PART_BYTES:
                raise CameraError(f"camera {self.description}: part larger than {MAX_PART_BYTES} bytes")
        data = b"".join(chunks)
        if data.endswith(b"\r\n"):
            return data[:-2]
        return data[:-1] if data.endswith(b"\n") else data
