"""GNSS position from an NMEA receiver on a serial port, for stamping results.

The runtime asks `position()` when it needs one; the reader never pushes. A fix older than
`gnss_stale_s` is reported as no position at all: a camera on a vehicle that lost its sky in a
tunnel must not keep stamping the tunnel's entrance on every result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.config.settings import SerialSettings
from edge.core.messages import PositionPayload
from edge.serial.nmea import Fix, NmeaCounters, NmeaDecoder
from edge.serial.port import PortCounters, PortOwner, SerialLinePort

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GnssCounters:
    port: PortCounters
    nmea: NmeaCounters


class GnssReader(PortOwner):
    """Reads `serial.gnss_port` in a background thread and keeps the latest fix."""

    def __init__(
        self,
        settings: SerialSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff_max_s: float = 30.0,
    ) -> None:
        if not settings.gnss_port:
            raise ValueError("serial.gnss_port is not set")
        self._stale_s = settings.gnss_stale_s
        self._clock = clock
        self._decoder = NmeaDecoder()
        self._port = SerialLinePort(
            settings.gnss_port,
            settings.gnss_baud,
            name="gnss",
            on_line=self._on_line,
            backoff_max_s=backoff_max_s,
        )

    def position(self) -> PositionPayload | None:
        """The latest fix as the result payload's `position`, or None (no fix, or stale)."""
        fix = self._decoder.fix()
        if fix is None:
            return None
        age = self._clock() - fix.received
        if age > self._stale_s:
            return None
        return to_payload(fix, age)

    def counters(self) -> GnssCounters:
        return GnssCounters(port=self._port.counters(), nmea=self._decoder.counters())

    def _on_line(self, line: str) -> None:
        self._decoder.feed(line, self._clock())


def to_payload(fix: Fix, age_s: float) -> PositionPayload:
    """7 decimals of a degree is ~1 cm: more is noise in the payload."""
    return PositionPayload(
        lat=round(fix.lat, 7),
        lon=round(fix.lon, 7),
        fix=fix.quality,
        alt_m=fix.alt_m,
        sats=fix.sats,
        hdop=fix.hdop,
        age_s=round(max(age_s, 0.0), 2),
    )
