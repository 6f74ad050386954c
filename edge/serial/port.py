"""A serial line port that survives unplugging: one thread owns the pyserial object, reads lines,
writes what its owner hands it, and reopens the device with backoff after any I/O error.

USB serial adapters vanish and come back (a loose cable, a brown-out, a receiver's firmware reset),
usually under the same /dev path or a udev symlink. The daemon must not care: the thread closes the
dead handle, waits (exponential backoff, capped), and opens the path again. Bytes that cannot form a
usable line (binary noise, a wrong baud rate, a line that never ends) are counted and skipped so they
cannot grow a buffer or reach a parser.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import serial

log = logging.getLogger(__name__)

LineCallback = Callable[[str], None]


class Outgoing(Protocol):
    """A paced writer (the sink) gets its data out through the port thread, so no second thread
    touches the device. The port asks about every read timeout while connected."""

    def next_data(self) -> bytes | None:
        """Bytes to write now, or None."""
        ...

    def written(self, data: bytes, ok: bool) -> None:
        """Told after each write: ok False means the data did not go out (timeout or unplug)."""
        ...


_PRINTABLE = set(range(0x20, 0x7F)) | {0x09}


@dataclass(frozen=True)
class PortCounters:
    lines: int = 0  # lines delivered to on_line
    bytes_in: int = 0
    too_long: int = 0  # lines longer than max_line, skipped
    binary: int = 0  # lines with bytes outside printable ASCII (noise, wrong baud), skipped
    callback_errors: int = 0
    opens: int = 0
    open_failures: int = 0
    disconnects: int = 0
    writes: int = 0
    write_errors: int = 0


class SerialLinePort:
    """Reconnecting line reader/writer on one device path. `start()` returns at once; the port opens
    in the background and `connected` tells whether it is open now."""

    def __init__(
        self,
        path: str,
        baud: int,
        *,
        name: str = "serial",
        on_line: LineCallback | None = None,
        outgoing: Outgoing | None = None,
        max_line: int = 256,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        read_timeout_s: float = 0.05,
        write_timeout_s: float = 2.0,
    ) -> None:
        self.path = path
        self.baud = baud
        self.name = name
        self._on_line = on_line
        self._outgoing = outgoing
        self._max_line = max_line
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._read_timeout = read_timeout_s
        self._write_timeout = write_timeout_s
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(PortCounters.__dataclass_fields__, 0)
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"serial port {self.name} already started")
        self._thread = threading.Thread(target=self._run, name=f"serial-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop and close the port; True when the thread ended within `timeout`. Every blocking call
        in the thread is bounded (read timeout, write timeout, backoff waits on the stop event)."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("serial port %s did not stop within %.1fs", self.name, timeout)
            return False
        return True

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def alive(self) -> bool:
        """The port thread runs (it keeps running while unplugged, reconnecting)."""
        return self._thread is not None and self._thread.is_alive()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def counters(self) -> PortCounters:
        with self._lock:
            return PortCounters(**self._counts)

    # ------------------------------------------------------------------ thread

    def _bump(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _run(self) -> None:
        backoff = self._backoff_initial
        failing_since_log = False
        while not self._stop.is_set():
            try:
                handle = serial.Serial(
                    self.path,
                    self.baud,
                    timeout=self._read_timeout,
                    write_timeout=self._write_timeout,
                    exclusive=True,
                )
            except (serial.SerialException, OSError, ValueError) as err:
                self._bump("open_failures")
                if not failing_since_log:  # one line per outage, not one per retry
                    log.warning("serial port %s: cannot open %s: %s", self.name, self.path, err)
                    failing_since_log = True
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._backoff_max)
                continue
            failing_since_log = False
            backoff = self._backoff_initial
            self._bump("opens")
            log.info("serial port %s: opened %s at %d baud", self.name, self.path, self.baud)
            self._connected.set()
            try:
                self._serve(handle)
            except (serial.SerialException, OSError) as err:
                self._bump("disconnects")
                log.warning("serial port %s: lost %s: %s", self.name, self.path, err)
                self._stop.wait(backoff)
            finally:
                self._connected.clear()
                try:
                    handle.close()
                except (serial.SerialException, OSError) as err:
                    log.debug("serial port %s: close failed: %s", self.name, err)
        log.info("serial port %s: stopped", self.name)

    def _serve(self, handle: serial.Serial) -> None:
        buffer = bytearray()
        skipping = False  # inside an over-long line: drop bytes until the next newline
        while not self._stop.is_set():
            chunk = handle.read(max(1, min(handle.in_waiting, 4096)))
            if chunk:
                self._bump("bytes_in", len(chunk))
                buffer += chunk
                skipping = self._split(buffer, skipping)
            if self._outgoing is not None:
                data = self._outgoing.next_data()
                if data:
                    self._write(handle, self._outgoing, data)

    def _split(self, buffer: bytearray, skipping: bool) -> bool:
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                if len(buffer) > self._max_line:
                    if not skipping:
                        self._bump("too_long")
                    skipping = True
                    buffer.clear()
                return skipping
            raw = bytes(buffer[:end])
            del buffer[: end + 1]
            if skipping:  # tail of an over-long line
                skipping = False
                continue
            self._deliver(raw.rstrip(b"\r"))

    def _deliver(self, raw: bytes) -> None:
        if not raw:
            return
        if len(raw) > self._max_line:
            self._bump("too_long")
            return
        if not all(b in _PRINTABLE for b in raw):
            self._bump("binary")
            return
        self._bump("lines")
        if self._on_line is None:
            return
        try:
            self._on_line(raw.decode("ascii"))
        except Exception:  # a consumer bug must not end the port thread
            self._bump("callback_errors")
            log.exception("serial port %s: line callback failed", self.name)

    def _write(self, handle: serial.Serial, outgoing: Outgoing, data: bytes) -> None:
        try:
            handle.write(data)
            handle.flush()
        except serial.SerialTimeoutException as err:
            # Flow control held the line (modem busy): the port itself is still fine.
            self._bump("write_errors")
            log.warning("serial port %s: write timed out: %s", self.name, err)
            outgoing.written(data, False)
            return
        except (serial.SerialException, OSError):
            self._bump("write_errors")
            outgoing.written(data, False)
            raise  # unplugged: reconnect
        self._bump("writes")
        outgoing.written(data, True)


class PortOwner:
    """The lifecycle every serial component delegates to its one SerialLinePort (`self._port`)."""

    _port: SerialLinePort

    def start(self) -> None:
        self._port.start()

    def stop(self, timeout: float = 2.0) -> bool:
        return self._port.stop(timeout)

    @property
    def connected(self) -> bool:
        return self._port.connected

    @property
    def alive(self) -> bool:
        return self._port.alive

    def wait_connected(self, timeout: float) -> bool:
        return self._port.wait_connected(timeout)
