"""How old an outbox row is, on the monotonic clock, across daemon restarts.

A row's age decides its expiry (`message_expiry_s`), so it must not move with the wall clock: a
clock step (NTP arriving hours after boot, a dead RTC battery) would expire a whole queue or keep it
for ever. Rows are stamped (`born`) with CLOCK_MONOTONIC, which survives a daemon restart within one
kernel boot; the kernel's boot id tells whether the stamps are from this boot. Across a reboot the
time the device was off cannot be measured without a trustworthy clock, so ages restart at 0. And
when this process's monotonic clock is not the one the rows were stamped with (a clock shim, a
container with its own time namespace: its offset from the kernel's own time since boot moved),
their ages cannot be trusted either, and restart.

Threading: `RowAges` holds only its clocks (set once); `restamp_on_open` runs inside the outbox's
opening transaction, under its lock.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from edge.mqtt.outbox_records import StoredMessage
from edge.mqtt.outbox_schema import meta_set, meta_text

log = logging.getLogger("edge.mqtt.outbox")  # its lines are the outbox's, as before the split

# Suspend makes /proc/uptime run ahead of CLOCK_MONOTONIC; beyond this the rows' ages restart.
MONO_SKEW_TOLERANCE_S = 30.0


def kernel_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def proc_uptime() -> float | None:
    """The kernel's own time since boot (/proc/uptime is read, not faked by an LD_PRELOAD shim)."""
    try:
        return float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class RowAges:
    """The clocks rows are stamped and aged with, and what becomes of old stamps when a file opens."""

    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        kernel_boot: str | None = None,
        uptime: Callable[[], float | None] | None = None,
    ) -> None:
        """`uptime` defaults to /proc/uptime only with the real monotonic clock: it tells whether this
        process's monotonic clock is the one the rows were stamped with."""
        self.now = monotonic
        self.kernel_boot = kernel_boot_id() if kernel_boot is None else kernel_boot
        self._uptime = (
            uptime if uptime is not None else (proc_uptime if monotonic is time.monotonic else None)
        )

    def skew(self, now: float) -> float | None:
        """This process's monotonic clock minus the kernel's time since boot (None: unknown)."""
        if self._uptime is None:
            return None
        try:
            up = self._uptime()
        except OSError:
            return None
        return None if up is None else now - up

    def remaining_s(self, stored: StoredMessage) -> float | None:
        """Seconds `stored` has left to live (monotonic), or None if it never expires."""
        ttl = stored.message.ttl_s
        return None if ttl is None else ttl - (self.now() - stored.born)

    def age_s(self, stored: StoredMessage) -> float:
        return self.now() - stored.born

    def restamp_on_open(self, db: sqlite3.Connection, path: Path, now: float) -> None:
        """Inside the opening transaction: keep the rows' stamps where they still measure age on this
        clock, restart them (at `now`) where they cannot."""
        skew = self.skew(now)
        was = meta_text(db, "mono_skew")
        if meta_text(db, "kernel_boot") != self.kernel_boot:
            db.execute("UPDATE outbox SET born = ?", (now,))
            meta_set(db, "kernel_boot", self.kernel_boot)
        elif skew is not None and was is not None and abs(skew - float(was)) > MONO_SKEW_TOLERANCE_S:
            # The monotonic clock is not the one the rows were stamped with (a clock shim, a
            # container with its own time namespace): their ages cannot be trusted, so they restart.
            n = db.execute("UPDATE outbox SET born = ?", (now,)).rowcount
            log.warning(
                "outbox %s: the monotonic clock is %.0f s off the kernel's time since boot, %.0f s"
                " off what it was when the queued rows were stamped; %d row(s) start their age again",
                path,
                skew,
                skew - float(was),
                n,
            )
        if skew is not None:
            meta_set(db, "mono_skew", repr(skew))
        # A stamp in the future, or before the kernel booted (monotonic time starts near 0 at
        # boot), is impossible on this clock: restart its age rather than expire it.
        db.execute("UPDATE outbox SET born = ? WHERE born IS NULL OR born > ? OR born < 0", (now, now))
