"""sd_notify over $NOTIFY_SOCKET with the standard library, and a progress-gated watchdog pinger.

No libsystemd binding: the protocol is one datagram of newline-separated KEY=VALUE pairs to an
AF_UNIX socket (a path, or an abstract name written with a leading '@'). Everything is a no-op when
NOTIFY_SOCKET is unset (a terminal, a container, tests), and a failing send is logged, never raised:
the daemon must not die because its supervisor could not be told something.

WATCHDOG=1 is only sent while `progress()` says the pipeline moves. A pinger that pings from a timer
no matter what would tell systemd "alive" while the camera or the worker is stuck, which is exactly
the silent failure the watchdog is there to catch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping

log = logging.getLogger(__name__)


def _address(raw: str | None) -> str | None:
    if not raw:
        return None
    if raw.startswith("@"):
        return "\0" + raw[1:]  # abstract namespace
    if raw.startswith("/"):
        return raw
    log.warning("NOTIFY_SOCKET=%s is not a path or @abstract name; sd_notify disabled", raw)
    return None


class Notifier:
    """Sends sd_notify messages; `enabled` is False (and every call a no-op) without NOTIFY_SOCKET."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._address = _address(env.get("NOTIFY_SOCKET"))
        self._watchdog_usec = self._parse_watchdog(env)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @staticmethod
    def _parse_watchdog(env: Mapping[str, str]) -> int | None:
        pid = env.get("WATCHDOG_PID")
        if pid and pid.strip() != str(os.getpid()):
            return None  # the watchdog is meant for another process (e.g. our parent)
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        return usec if usec > 0 else None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Half of WATCHDOG_USEC, as sd_watchdog_enabled(3) recommends; None when no watchdog is set."""
        if self._watchdog_usec is None or not self.enabled:
            return None
        return self._watchdog_usec / 2 / 1e6

    def notify(self, *assignments: str) -> bool:
        """Send KEY=VALUE lines in one datagram; True if sent."""
        if self._address is None:
            return False
        data = "\n".join(assignments).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(data, self._address)
            except OSError as err:
                if not self._warned:
                    log.warning("sd_notify failed: %s (further failures logged at debug)", err)
                    self._warned = True
                else:
                    log.debug("sd_notify failed: %s", err)
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([_status(status)] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(_status(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([_status(status)] if status else []))

    def reloading(self, status: str | None = None) -> bool:
        """RELOADING=1 with MONOTONIC_USEC (required by Type=notify-reload); send ready() when done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *([_status(status)] if status else []))

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for `seconds` more from now on the start/stop timeout (a slow model load, a long stop)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(1, int(seconds * 1e6))}")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())[:200]


@contextlib.contextmanager
def extending_timeout(notifier: Notifier, step_s: float = 30.0) -> Iterator[None]:
    """Keep extending the start/stop timeout by `step_s` every `step_s/2` while the block runs.

    For a model load that may take minutes from an SD card: systemd waits as long as we keep asking.
    The asks come from a timer, so the block itself must be bounded (watchdog.load_timeout_s).
    """
    if not notifier.enabled:
        yield
        return
    done = threading.Event()

    def loop() -> None:
        while True:
            notifier.extend_timeout(step_s)
            if done.wait(step_s / 2):
                return

    thread = threading.Thread(target=loop, name="edge-sd-extend", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(2.0)


class WatchdogPinger:
    """Sends WATCHDOG=1 every interval (default WATCHDOG_USEC/2) while `progress()` is true and
    `problem()` (when given: edge.daemon.liveness) finds no dead or stuck thread.

    When progress stops the pings stop, and systemd restarts the service after WatchdogSec. A
    raising `progress` counts as no progress. A problem is logged as an error and put in STATUS=
    (once per distinct problem); `problem` holds the current one for other STATUS= writers.
    """

    def __init__(
        self,
        notifier: Notifier,
        progress: Callable[[], bool],
        interval_s: float | None = None,
        *,
        problem: Callable[[], str | None] | None = None,
    ) -> None:
        self.notifier = notifier
        self.progress = progress
        self.interval_s = notifier.watchdog_interval_s if interval_s is None else interval_s
        self._problem = problem
        self.problem: str | None = None
        self.pings = 0
        self.skipped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> bool:
        """Start pinging; False (and nothing started) when there is no socket or no watchdog."""
        if not self.notifier.enabled or not self.interval_s or self._thread is not None:
            return False
        self._thread = threading.Thread(target=self._loop, name="edge-sd-watchdog", daemon=True)
        self._thread.start()
        log.info("systemd watchdog: pinging every %.2fs while the pipeline progresses", self.interval_s)
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def check(self) -> bool:
        """One check: True when WATCHDOG=1 may be sent now."""
        problem = None
        if self._problem is not None:
            try:
                problem = self._problem()
            except Exception as err:
                problem = f"liveness check failed: {err!r}"
        if problem is not None:
            if problem != self.problem:
                log.error("%s; withholding WATCHDOG=1 so that systemd restarts the service", problem)
                self.notifier.status(f"{problem}; watchdog withheld")
            self.problem = problem
            return False
        if self.problem is not None:
            log.info("%s no more", self.problem)
            self.problem = None
        try:
            return bool(self.progress())
        except Exception:
            log.exception("watchdog progress check failed; withholding WATCHDOG=1")
            return False

    def _loop(self) -> None:
        assert self.interval_s
        stalled = False
        while True:
            ok = self.check()
            if ok:
                self.notifier.watchdog()
                self.pings += 1
                if stalled:
                    log.info("pipeline progressing again; WATCHDOG=1 resumed")
                stalled = False
            else:
                self.skipped += 1
                if not stalled and self.problem is None:
                    log.warning("pipeline not progressing; withholding WATCHDOG=1")
                stalled = True
            if self._stop.wait(self.interval_s):
                return
