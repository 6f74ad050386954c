"""Serial sink: one compact ASCII line per result, for LoRa or satellite modems with no IP link.

Line format (the contract for whoever decodes it at the other end of the radio):

    <seq>|<task>|<text>\\n

seq is the result's decimal seq, task its topic-safe name, text the result text made ASCII-safe
(accents folded, other non-ASCII -> '?', control characters and newlines -> one space, whitespace
collapsed) and cut to `serial.sink_max_bytes` bytes. Split on the first two '|' only: the text may
contain '|'.

Radios have duty-cycle limits, so lines go out at most once per `serial.sink_min_interval_s`.
Policy: ONE pending slot, newest kept. A result arriving while a line waits replaces it (the replaced
one is counted in `dropped`): over a link this thin the latest observation is worth more than a
backlog, and the pending line always goes out once the interval has passed, so the last result of a
burst is never lost. `write_result` only swaps the slot: it never blocks on the device.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from edge.config.settings import SerialSettings
from edge.serial.port import PortCounters, PortOwner, SerialLinePort

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SPACES = re.compile(r" {2,}")


def ascii_safe(text: str) -> str:
    """Fold to printable ASCII on one line."""
    decomposed = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    ascii_text = folded.encode("ascii", errors="replace").decode("ascii")
    return _SPACES.sub(" ", _CONTROL.sub(" ", ascii_text)).strip()


def format_line(seq: int, task: str, text: str, max_bytes: int) -> bytes:
    """The sink line for one result (see the module docstring), newline included."""
    safe_task = ascii_safe(task).replace("|", "_")
    return f"{int(seq)}|{safe_task}|{ascii_safe(text)[:max_bytes]}\n".encode("ascii")


def parse_line(line: str | bytes) -> tuple[int, str, str]:
    """Inverse of format_line, for the receiving end and the tests."""
    if isinstance(line, bytes):
        line = line.decode("ascii")
    seq, task, text = line.rstrip("\r\n").split("|", 2)
    return int(seq), task, text


@dataclass(frozen=True)
class SinkCounters:
    port: PortCounters
    accepted: int  # write_result calls
    sent: int  # lines written to the device
    dropped: int  # lines replaced in the pending slot by a newer one before they went out
    failed: int  # writes that did not go out (modem timeout, unplug); the line is retried if newest


class SerialSink(PortOwner):
    """Writes result lines to `serial.sink_port`, paced by `serial.sink_min_interval_s`."""

    def __init__(
        self,
        settings: SerialSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff_max_s: float = 30.0,
    ) -> None:
        if not settings.sink_port:
            raise ValueError("serial.sink_port is not set")
        self._max_bytes = settings.sink_max_bytes
        self._interval = settings.sink_min_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: bytes | None = None
        self._next_at = float("-inf")  # clock time the next line may go out
        self._counts = {"accepted": 0, "sent": 0, "dropped": 0, "failed": 0}
        self._port = SerialLinePort(
            settings.sink_port,
            settings.sink_baud,
            name="sink",
            outgoing=self,
            backoff_max_s=backoff_max_s,
        )

    def stop(self, timeout: float = 2.0) -> bool:
        """A line still pending at stop is not written (counted in `dropped`)."""
        stopped = self._port.stop(timeout)
        with self._lock:
            if self._pending is not None:
                self._counts["dropped"] += 1
                self._pending = None
        return stopped

    def write_result(self, seq: int, task: str, text: str) -> None:
        """Queue the line for this result (newest kept); returns at once."""
        line = format_line(seq, task, text, self._max_bytes)
        with self._lock:
            self._counts["accepted"] += 1
            if self._pending is not None:
                self._counts["dropped"] += 1
            self._pending = line

    def counters(self) -> SinkCounters:
        with self._lock:
            return SinkCounters(port=self._port.counters(), **self._counts)

    # ------------------------------------------------------------------ Outgoing, on the port thread

    def next_data(self) -> bytes | None:
        with self._lock:
            if self._pending is None:
                return None
            if self._clock() < self._next_at:
                return None
            data, self._pending = self._pending, None
            return data

    def written(self, data: bytes, ok: bool) -> None:
        with self._lock:
            if ok:
                self._counts["sent"] += 1
                self._next_at = self._clock() + self._interval
                return
            self._counts["failed"] += 1
            # A modem that timed out is not asked again at once (nor every read timeout).
            self._next_at = self._clock() + max(self._interval, 1.0)
            if self._pending is None:
                self._pending = data  # still the newest: try again after reconnecting
