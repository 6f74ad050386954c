"""Serial trigger: a line matching `serial.trigger_pattern` (a PIR sensor's microcontroller printing
"MOTION", a door contact, a PLC) fires a callback with that line, exactly once per matching line.

The reader does not debounce. A burst of lines from a chattering sensor is one callback per line;
admission is the runtime's job (one job in flight per task, busy -> counted drop, gate.cooldown_s),
because only the runtime knows whether the model is free. The callback runs on the port thread and
must return quickly (enqueue, don't infer).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from edge.config.settings import SerialSettings
from edge.serial.port import PortCounters, PortOwner, SerialLinePort

log = logging.getLogger(__name__)

TriggerCallback = Callable[[str], None]


@dataclass(frozen=True)
class TriggerCounters:
    port: PortCounters
    lines: int  # lines read
    matched: int  # lines that matched and fired the callback


class TriggerReader(PortOwner):
    """Reads `serial.trigger_port`; `on_trigger(line)` for each line matching the pattern."""

    def __init__(
        self,
        settings: SerialSettings,
        on_trigger: TriggerCallback,
        *,
        backoff_max_s: float = 30.0,
    ) -> None:
        if not settings.trigger_port:
            raise ValueError("serial.trigger_port is not set")
        self._pattern = re.compile(settings.trigger_pattern)
        self._on_trigger = on_trigger
        self._lock = threading.Lock()
        self._lines = 0
        self._matched = 0
        self._port = SerialLinePort(
            settings.trigger_port,
            settings.trigger_baud,
            name="trigger",
            on_line=self._on_line,
            backoff_max_s=backoff_max_s,
        )

    def counters(self) -> TriggerCounters:
        with self._lock:
            return TriggerCounters(port=self._port.counters(), lines=self._lines, matched=self._matched)

    def _on_line(self, line: str) -> None:
        matched = self._pattern.search(line) is not None
        with self._lock:
            self._lines += 1
            self._matched += matched
        if matched:
            log.debug("serial trigger line=%r", line)
            # Exceptions are counted (callback_errors) and logged by the port; the reader goes on.
            self._on_trigger(line)
