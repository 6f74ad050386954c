"""A real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET, recording what arrives."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path


class NotifyListener:
    """Binds a datagram socket (a path, or an abstract name when `abstract`), records messages.

    `env` is what a service would see: NOTIFY_SOCKET (and WATCHDOG_USEC if given).
    """

    def __init__(self, directory: Path, abstract: bool = False, watchdog_usec: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"edge-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            path = directory / "notify.sock"
            self.sock.bind(str(path))
            self.address = str(path)
        self.sock.settimeout(0.05)
        self.env = {"NOTIFY_SOCKET": self.address}
        if watchdog_usec is not None:
            self.env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="notify-listener", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def times_of(self, key: str, value: str | None = None) -> list[float]:
        with self._lock:
            return [t for t, f in self.messages if key in f and (value is None or f[key] == value)]

    def fields(self) -> list[dict[str, str]]:
        with self._lock:
            return [f for _, f in self.messages]

    def wait_for(self, key: str, value: str | None = None, timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            times = self.times_of(key, value)
            if times:
                return times[0]
            time.sleep(0.01)
        raise AssertionError(f"no {key}={value} within {timeout}s; got {self.fields()}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.sock.close()
