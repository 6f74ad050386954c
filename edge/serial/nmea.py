"""NMEA 0183 parsing for GGA and RMC: pure functions and a small stateful decoder, no I/O.

GNSS receivers share cheap UART links with noise, half-sent sentences after a replug and, on some
modules, proprietary chatter. Every sentence is therefore checksum-verified before a single field is
trusted, and each kind of rejection has its own counter, so a field report can tell a bad cable
(checksums) from a misconfigured baud rate (garbage) from a receiver that simply has no sky (no fix).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Literal

# NMEA 0183 caps a sentence at 82 characters; several receivers (u-blox high-precision modes,
# multi-constellation talkers) go a little over, so allow some room before calling it garbage.
MAX_SENTENCE = 128

# Talker (2 letters, e.g. GP, GN, GL, GA, GB, BD) + sentence type; proprietary sentences start with P.
_ADDRESS = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}$|^P[A-Z0-9]{2,8}$")
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")

# RMC mode indicator (NMEA 2.3+) -> the GGA fix-quality number it corresponds to.
_RMC_MODE_QUALITY = {"A": 1, "D": 2, "P": 3, "R": 4, "F": 5, "E": 6, "M": 7, "S": 8, "N": 0}

Reject = Literal["checksum", "garbage", "too_long"]


class NmeaError(ValueError):
    """A line that is not a usable sentence; `kind` picks the counter it belongs to."""

    def __init__(self, kind: Reject, message: str) -> None:
        super().__init__(message)
        self.kind: Reject = kind


@dataclass(frozen=True)
class Gga:
    """Global positioning fix data. lat/lon are None without a fix (empty fields)."""

    talker: str
    utc: str
    lat: float | None
    lon: float | None
    quality: int  # 0 invalid, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 estimated, ...
    sats: int | None
    hdop: float | None
    alt_m: float | None


@dataclass(frozen=True)
class Rmc:
    """Recommended minimum data. `valid` is the status field ('A'); mode refines it when present."""

    talker: str
    utc: str
    valid: bool
    lat: float | None
    lon: float | None
    speed_kn: float | None
    course_deg: float | None
    date: str
    quality: int  # derived from status and mode indicator, on GGA's scale


Sentence = Gga | Rmc


def checksum(body: str) -> int:
    """XOR of every character between '$' and '*'."""
    value = 0
    for ch in body.encode("ascii"):
        value ^= ch
    return value


def split_sentence(line: str) -> tuple[str, list[str]]:
    """Verify framing and checksum; return (address, fields). A checksum is required: GGA and RMC
    carry one on every receiver we know, and a sentence without one cannot be told from line noise."""
    line = line.strip()
    if len(line) > MAX_SENTENCE:
        raise NmeaError("too_long", f"sentence of {len(line)} characters")
    if not line.startswith("$") or not _PRINTABLE.match(line):
        raise NmeaError("garbage", "not an NMEA sentence")
    body, star, given = line[1:].rpartition("*")
    if not star:
        raise NmeaError("checksum", "no checksum")
    if len(given) != 2:
        raise NmeaError("checksum", f"malformed checksum {given!r}")
    try:
        expected = int(given, 16)
    except ValueError:
        raise NmeaError("checksum", f"malformed checksum {given!r}") from None
    if checksum(body) != expected:
        raise NmeaError("checksum", f"checksum {given} != {checksum(body):02X}")
    fields = body.split(",")
    if not _ADDRESS.match(fields[0]):
        raise NmeaError("garbage", f"bad address {fields[0]!r}")
    return fields[0], fields[1:]


def _coord(value: str, hemi: str, degree_digits: int, limit: float) -> float | None:
    """ddmm.mmmm / dddmm.mmmm + N/S/E/W -> signed decimal degrees; empty -> None (no fix)."""
    if not value and not hemi:
        return None
    if hemi not in ("N", "S", "E", "W") or len(value) < degree_digits + 2:
        raise NmeaError("garbage", f"bad coordinate {value!r} {hemi!r}")
    try:
        degrees = int(value[:degree_digits])
        minutes = float(value[degree_digits:])
    except ValueError:
        raise NmeaError("garbage", f"bad coordinate {value!r}") from None
    if minutes >= 60.0 or degrees + minutes / 60.0 > limit:
        raise NmeaError("garbage", f"coordinate out of range {value!r}")
    result = degrees + minutes / 60.0
    return -result if hemi in ("S", "W") else result


def _num(value: str, kind: type[int] | type[float]) -> float | int | None:
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        raise NmeaError("garbage", f"bad number {value!r}") from None


def _parse_gga(talker: str, f: list[str]) -> Gga:
    if len(f) < 14:
        raise NmeaError("garbage", f"GGA with {len(f)} fields")
    quality = _num(f[5], int)
    sats = _num(f[6], int)
    hdop = _num(f[7], float)
    alt = _num(f[8], float)
    return Gga(
        talker=talker,
        utc=f[0],
        lat=_coord(f[1], f[2], 2, 90.0),
        lon=_coord(f[3], f[4], 3, 180.0),
        quality=int(quality or 0),
        sats=None if sats is None else int(sats),
        hdop=None if hdop is None else float(hdop),
        alt_m=None if alt is None else float(alt),
    )


def _parse_rmc(talker: str, f: list[str]) -> Rmc:
    if len(f) < 11:
        raise NmeaError("garbage", f"RMC with {len(f)} fields")
    if f[1] not in ("A", "V"):
        raise NmeaError("garbage", f"RMC status {f[1]!r}")
    valid = f[1] == "A"
    quality = 1 if valid else 0
    if len(f) >= 12 and f[11]:
        quality = _RMC_MODE_QUALITY.get(f[11], quality) if valid else 0
    speed = _num(f[6], float)
    course = _num(f[7], float)
    return Rmc(
        talker=talker,
        utc=f[0],
        valid=valid and quality > 0,
        lat=_coord(f[2], f[3], 2, 90.0),
        lon=_coord(f[4], f[5], 3, 180.0),
        speed_kn=None if speed is None else float(speed),
        course_deg=None if course is None else float(course),
        date=f[8],
        quality=quality,
    )


def parse(line: str) -> Sentence | None:
    """One line -> Gga | Rmc, None for a valid sentence of another type (GSV, GSA, VTG, TXT, ...).

    Raises NmeaError (kind 'checksum' | 'garbage' | 'too_long') for anything that cannot be trusted.
    """
    address, fields = split_sentence(line)
    kind = address[2:]
    if address.startswith("P") or kind not in ("GGA", "RMC"):
        return None
    return _parse_gga(address[:2], fields) if kind == "GGA" else _parse_rmc(address[:2], fields)


@dataclass(frozen=True)
class Fix:
    """The receiver's current position, merged from GGA (quality, sats, hdop, altitude) and RMC
    (validity). `received` is the caller's clock (monotonic) when the sentence arrived."""

    lat: float
    lon: float
    quality: int
    sats: int | None
    hdop: float | None
    alt_m: float | None
    utc: str
    received: float


@dataclass(frozen=True)
class NmeaCounters:
    sentences: int = 0  # checksum-valid sentences of any type
    positions: int = 0  # GGA/RMC sentences that carried a fix
    no_fix: int = 0  # GGA/RMC sentences without a fix (quality 0, status V, empty position)
    ignored: int = 0  # valid sentences of other types
    bad_checksum: int = 0
    garbage: int = 0
    too_long: int = 0


class NmeaDecoder:
    """Feeds lines through `parse` and keeps the latest fix. Thread-safe: one thread feeds, any
    thread reads `fix()` and `counters()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(NmeaCounters.__dataclass_fields__, 0)
        self._fix: Fix | None = None
        self._gga: Gga | None = None  # last GGA with a fix, for sats/hdop/alt on RMC-only updates

    def feed(self, line: str, now: float) -> Fix | None:
        """Returns the new fix when this line carried one, else None."""
        try:
            sentence = parse(line)
        except NmeaError as err:
            self._bump({"checksum": "bad_checksum", "garbage": "garbage", "too_long": "too_long"}[err.kind])
            return None
        self._bump("sentences")
        if sentence is None:
            self._bump("ignored")
            return None
        if sentence.lat is None or sentence.lon is None or sentence.quality == 0:
            self._bump("no_fix")
            with self._lock:
                self._fix = None  # the receiver says it lost the fix: stop reporting the old one
                if isinstance(sentence, Gga):
                    self._gga = None
            return None
        if isinstance(sentence, Gga):
            fix = Fix(
                sentence.lat,
                sentence.lon,
                sentence.quality,
                sentence.sats,
                sentence.hdop,
                sentence.alt_m,
                sentence.utc,
                now,
            )
        else:
            gga = self._gga
            same_epoch = gga is not None and gga.utc == sentence.utc
            fix = Fix(
                sentence.lat,
                sentence.lon,
                gga.quality if gga is not None and same_epoch else sentence.quality,
                gga.sats if gga is not None else None,
                gga.hdop if gga is not None else None,
                gga.alt_m if gga is not None else None,
                sentence.utc,
                now,
            )
        with self._lock:
            if isinstance(sentence, Gga):
                self._gga = sentence
            self._fix = fix
            self._counts["positions"] += 1
        return fix

    def fix(self) -> Fix | None:
        with self._lock:
            return self._fix

    def counters(self) -> NmeaCounters:
        with self._lock:
            return NmeaCounters(**self._counts)

    def _bump(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1
