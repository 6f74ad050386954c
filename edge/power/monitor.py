"""Reads the board every `[power] poll_s`, runs the policy, and tells the scheduler and the event
topic what changed. Driven by the daemon's main loop (a tick every half second), no thread of its own."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.config.settings import PowerSettings
from edge.power.policy import PowerChange, PowerPolicy
from edge.power.sensors import BoardReading, read_board

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PowerStatus:
    """For health: the last reading and what the policy made of it."""

    temperature_c: float | None
    throttled: bool | None
    under_voltage: bool | None
    hot: bool | None
    active: bool | None


class PowerMonitor:
    def __init__(
        self,
        settings: PowerSettings,
        apply: Callable[[float, bool], None],
        emit: Callable[[PowerChange], None],
        *,
        read: Callable[[], BoardReading] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`apply(interval_factor, paused)` sets the scheduler; `emit` publishes an event."""
        self.settings = settings
        self.policy = PowerPolicy(settings)
        self._apply = apply
        self._emit = emit
        self._read = read or (lambda: read_board(self.settings.sysfs_root))
        self._clock = clock
        self._next = 0.0

    def tick(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.settings.poll_s
        self.poll()

    def poll(self) -> list[PowerChange]:
        try:
            reading = self._read()
        except Exception:  # a sysfs quirk must never stop the daemon's main loop
            log.exception("power: reading the board failed")
            return []
        changes = self.policy.update(reading, self._clock())
        self._apply(self.policy.interval_factor, self.policy.paused)
        for change in changes:
            log.warning("power: %s: %s", change.event, change.reason)
            self._emit(change)
        return changes

    def status(self) -> PowerStatus:
        r = self.policy.reading
        return PowerStatus(
            temperature_c=r.temperature_c if r else None,
            throttled=r.throttled if r else None,
            under_voltage=r.under_voltage if r else None,
            hot=self.policy.hot,
            active=self.policy.active,
        )
