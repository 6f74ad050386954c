"""The view's HTTP server: the standard library's threading server, GET only, HTML from `pages`.

Listening beyond loopback needs a password (HTTP Basic, checked in constant time): the page shows
what the cameras saw. Basic sends the password in clear on plain HTTP, so off a trusted network put
TLS in front (`--tls-cert`/`--tls-key`, or a reverse proxy).
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
import ssl
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from edge.view import pages
from edge.view.store import Filters, ViewStore

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_time(value: str) -> float | None:
    """`YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS]` in local time (an HTML datetime-local value)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


class ViewServer:
    def __init__(
        self,
        store: ViewStore,
        host: str,
        port: int,
        *,
        password: str | None = None,
        tls: tuple[Path, Path] | None = None,
        status: Any = None,
    ) -> None:
        self.store = store
        self.password = password
        self.status = status  # a callable returning a dict for /healthz
        handler = type("Handler", (_Handler,), {"view": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> ViewServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="view-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def options(self) -> dict[str, list[str]]:
        cams = self.store.cameras()
        return {
            "device": sorted({d for d, _ in cams}),
            "camera": sorted({c for _, c in cams}),
            "task": self.store.tasks(),
        }


class _Handler(BaseHTTPRequestHandler):
    view: ViewServer
    server_version = "edge-view"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)

    def _authorized(self) -> bool:
        if not self.view.password:
            return True
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                _, _, given = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return hmac.compare_digest(given.encode(), self.view.password.encode())
        return False

    def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _html(self, text: str, code: int = 200) -> None:
        self._send(code, text.encode(), "text/html; charset=utf-8", {"Cache-Control": "no-store"})

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorized():
            self._send(
                401, b"password required\n", "text/plain", {"WWW-Authenticate": 'Basic realm="edge view"'}
            )
            return
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [unquote(p) for p in url.path.split("/") if p]
        try:
            self._route(parts, q)
        except Exception:
            log.exception("page %s failed", self.path)
            self._html(pages.page("Error", "<p>The page could not be made; see the log.</p>"), 500)

    def _route(self, parts: list[str], q: dict[str, str]) -> None:
        store, now = self.view.store, time.time()
        f = Filters(
            device=q.get("device", ""),
            camera=q.get("camera", ""),
            task=q.get("task", ""),
            since=parse_time(q.get("since", "")),
            until=parse_time(q.get("until", "")),
        )
        number = int(q["page"]) if q.get("page", "").isdigit() else 0
        if not parts:
            devices = {d.device: d for d in store.devices()}
            cards = [(d, c, *store.latest(d, c)) for d, c in store.cameras()]
            self._html(pages.overview(cards, devices, now))
        elif parts == ["timeline"]:
            results = store.results(f, limit=pages.PAGE_SIZE, offset=number * pages.PAGE_SIZE)
            window = f
            if results:  # the events between the page's oldest and newest result (all newer on page 0)
                newest = None if number == 0 else results[0].at + 1e-6
                window = Filters(
                    f.device, f.camera, f.task, max(f.since or 0.0, results[-1].at), newest or f.until
                )
            events = store.events(window, limit=pages.PAGE_SIZE)
            gaps = store.gaps_near(results)
            self._html(pages.timeline(results, events, gaps, f, number, self.view.options(), now))
        elif parts == ["search"]:
            text = q.get("q", "")
            found = store.search(text, f, limit=pages.PAGE_SIZE, offset=number * pages.PAGE_SIZE)
            self._html(pages.search(text, found, f, number, self.view.options(), now))
        elif len(parts) == 2 and parts[0] == "result":
            row = store.result(parts[1])
            self._html(
                pages.result(row, now) if row else pages.not_found(f"no result {parts[1]}"),
                200 if row else 404,
            )
        elif len(parts) == 2 and parts[0] == "event":
            ev = store.event(parts[1])
            self._html(
                pages.event(ev, now) if ev else pages.not_found(f"no event {parts[1]}"), 200 if ev else 404
            )
        elif parts and parts[0] == "image" and len(parts) in (2, 3):
            part = int(parts[2]) if len(parts) == 3 and parts[2].isdigit() else 0
            jpeg = store.image(parts[1], part)
            if jpeg is None:
                self._send(404, b"no such picture\n", "text/plain")
            else:
                self._send(200, jpeg, "image/jpeg", {"Cache-Control": "max-age=86400, immutable"})
        elif parts == ["healthz"]:
            body = {"results": store.count(), **(self.view.status() if self.view.status else {})}
            self._send(200, json.dumps(body).encode(), "application/json")
        else:
            self._html(pages.not_found(f"no page {self.path}"), 404)
