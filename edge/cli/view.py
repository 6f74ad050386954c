"""`edge view`: subscribe like `edge watch`, store results, pictures and events, serve a page.

The store is the consumer library's idea made visible: idempotent on result ids (redelivery is
harmless), gaps from the seqs themselves. `--group` lets several views split a fleet's stream into
one PostgreSQL store (`--store postgresql://...`), and each page then shows the whole fleet.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from edge.config.settings import Settings
from edge.core.errors import ConfigError
from edge.core.names import sanitize
from edge.view.ingest import Ingest
from edge.view.server import ViewServer, is_loopback
from edge.view.store import ViewStore, open_store

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 300.0


@dataclass(frozen=True)
class ViewOptions:
    listen: str = "127.0.0.1:8080"
    store: str = "edge-view.db"
    devices: tuple[str, ...] = ()
    prefix: str | None = None
    group: str | None = None
    keep_days: float | None = None
    max_gb: float | None = None
    password_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError([f"--listen: {value!r} is not HOST:PORT"])
    return host.strip("[]") or "127.0.0.1", int(port)


def read_password(opts: ViewOptions) -> str | None:
    if opts.password_file is not None:
        try:
            text = opts.password_file.read_text().strip()
        except OSError as err:
            raise ConfigError(
                [f"--password-file: cannot read {opts.password_file}: {err.strerror}"]
            ) from None
        if not text:
            raise ConfigError([f"--password-file: {opts.password_file} is empty"])
        return text
    return os.environ.get("EDGE_VIEW_PASSWORD") or None


def check_options(opts: ViewOptions) -> tuple[str, int, str | None, tuple[Path, Path] | None]:
    """Every refusal before anything starts: one line each, exit 2."""
    host, port = parse_listen(opts.listen)
    password = read_password(opts)
    if not is_loopback(host) and password is None:
        raise ConfigError(
            [
                f"--listen {opts.listen}: the page shows what the cameras saw; beyond loopback it needs "
                "--password-file (or $EDGE_VIEW_PASSWORD), and TLS (--tls-cert/--tls-key or a proxy) off a trusted LAN"
            ]
        )
    if (opts.tls_cert is None) != (opts.tls_key is None):
        raise ConfigError(["--tls-cert and --tls-key go together"])
    tls = (opts.tls_cert, opts.tls_key) if opts.tls_cert and opts.tls_key else None
    for name, value in (("--keep-days", opts.keep_days), ("--max-gb", opts.max_gb)):
        if value is not None and value <= 0:
            raise ConfigError([f"{name}: must be a positive number"])
    return host, port, password, tls


def _open(where: str) -> ViewStore:
    try:
        return open_store(where)
    except ImportError:
        raise ConfigError(
            ["--store: a PostgreSQL store needs the [view] extra (pip install 'edge-vlm-agent[view]')"]
        ) from None
    except Exception as err:
        raise ConfigError([f"--store {where.split('@')[-1]}: cannot open: {err}".splitlines()[0]]) from None


def view_command(settings: Settings, opts: ViewOptions) -> int:
    host, port, password, tls = check_options(opts)
    store = _open(opts.store)
    name = sanitize(socket.gethostname(), "host")
    ingest = Ingest(
        settings.mqtt,
        store,
        client_id=f"edge-view-{name}-{os.getpid()}",
        prefix=opts.prefix,
        devices=opts.devices,
        group=opts.group,
    )

    def status() -> dict[str, object]:
        c = ingest.counts
        return {
            "connected": ingest.subscriber.connected,
            "stored": c.results,
            "duplicates": c.duplicates,
            "images": c.images,
            "events": c.events,
            "unreadable": c.unreadable,
        }

    try:
        server = ViewServer(store, host, port, password=password, tls=tls, status=status)
    except OSError as err:
        store.close()
        raise ConfigError([f"--listen {opts.listen}: {err.strerror}"]) from None
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    ingest.start()
    server.start()
    scheme = "https" if tls else "http"
    print(f"edge view: http{'s' if tls else ''} on {scheme}://{host}:{server.port}/ ; store {opts.store.split('@')[-1]}",
          file=sys.stderr, flush=True)  # fmt: skip
    max_bytes = int(opts.max_gb * 1e9) if opts.max_gb else None
    try:
        while not done.wait(PRUNE_EVERY_S if (opts.keep_days or max_bytes) else None):
            removed = store.prune(keep_days=opts.keep_days, max_image_bytes=max_bytes)
            if any(removed):
                log.info("retention: removed %d result(s), %d picture(s)", *removed)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        ingest.stop()
        server.stop()
        store.close()
    return 0
