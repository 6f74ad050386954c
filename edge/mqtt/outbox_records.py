"""What the outbox stores and reports, and how SQLite's errors are read: the value types, the errors
a caller sees, and the helpers that classify a failed write and salvage what a damaged file still says.

Kept apart from `outbox.py` (the transactions) so that module stays about the life of one database.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge.core.errors import EdgeError

ROW_OVERHEAD = 64  # bytes counted per row on top of topic, payload and properties


class OutboxError(EdgeError):
    """The outbox database cannot be opened (in use by another process, unwritable, corrupt)."""


class StorageError(OutboxError):
    """A write did not happen: the filesystem is full (`full`) or failed. Nothing was stored; the
    outbox is still usable and the caller may try again later."""

    def __init__(self, message: str, *, full: bool, free_bytes: int | None) -> None:
        super().__init__(message)
        self.full = full
        self.free_bytes = free_bytes


def _free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return int(st.f_bavail * st.f_frsize)


def _kernel_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 11, 13, 26  # sqlite3.h result codes


def _is_full(err: sqlite3.Error) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    return code == _SQLITE_FULL or "full" in str(err).lower()


def _is_damage(err: sqlite3.Error) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)) or (
        "malformed" in str(err) or "not a database" in str(err)
    )


@dataclass(frozen=True)
class OutboxMessage:
    """A message to publish. `msg_id` is the stable id consumers de-duplicate on."""

    topic: str
    payload: bytes
    msg_id: str
    kind: str = "result"  # result | event | image | other: for counters and drop reports
    qos: int = 1
    retain: bool = False
    content_type: str | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    ttl_s: float | None = None  # time to live in the outbox (monotonic seconds); None: never expires

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.topic) + len(self._props_json() or "") + ROW_OVERHEAD

    def _props_json(self) -> str | None:
        if self.content_type is None and not self.user_properties:
            return None
        return json.dumps({"ct": self.content_type, "up": [list(kv) for kv in self.user_properties]})


@dataclass(frozen=True)
class StoredMessage:
    row: int
    created: float  # wall clock, for people
    message: OutboxMessage
    born: float = 0.0  # monotonic: ages and expiry


@dataclass(frozen=True)
class Damage:
    """What a damaged outbox file held when it was moved aside (None: could not be read)."""

    aside: Path
    messages: int | None
    results: int | None
    first_id: str | None
    last_id: str | None
    # Kept in the small meta table, which often survives the page that held the rows: with them a
    # consumer can tell which results of that boot it never got, even when `messages` is unknown.
    boot: int = 0
    last_seq: int | None = None


@dataclass(frozen=True)
class DropReport:
    """Rows lost since the last acknowledged report: dropped to make room (`full`), expired, rejected by the
    broker, or lost with a damaged file (`damaged`; `count` -1 if the file could not be read)."""

    count: int
    bytes: int
    first_id: str | None
    last_id: str | None
    reason: str = "full"
    new: int = 0  # of `count`, lost since the previous report (the rest: reports not acknowledged)
    unacknowledged_reports: int = 0  # earlier reports whose range this one repeats


@dataclass(frozen=True)
class OutboxStats:
    depth: int
    bytes: int
    max_bytes: int
    dropped_total: int
    expired_total: int
    rejected_total: int
    drop_pending: int
    refused: int = 0  # rows the broker refused, waiting for their retry
    wal_bytes: int = 0
    free_bytes: int | None = None  # on the outbox's filesystem
    storage: Literal["ok", "full", "error"] = "ok"  # how the last write went
    storage_errors: int = 0  # writes that failed, since open


class _Damaged(sqlite3.DatabaseError):
    """quick_check found damage."""


def _salvage_counts(db: sqlite3.Connection | None) -> tuple[int | None, int | None, str | None, str | None]:
    """What a damaged file held, as far as it can still be read."""
    if db is None:
        return None, None, None, None
    try:
        n, results, first, last = db.execute(
            "SELECT COUNT(*), SUM(kind = 'result'), MIN(msg_id), MAX(msg_id) FROM outbox"
        ).fetchone()
        return int(n), int(results or 0), first, last
    except sqlite3.Error:
        return None, None, None, None


def _salvage_meta(db: sqlite3.Connection | None, key: str) -> int | None:
    """One counter of the meta table of a damaged file, or None where it cannot be read."""
    if db is None:
        return None
    try:
        return int(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])
    except (sqlite3.Error, TypeError, ValueError):
        return None


def _stored(r: tuple[Any, ...]) -> StoredMessage:
    row, msg_id, kind, topic, payload, qos, retain, props, created, ttl, born = r
    ct: str | None = None
    up: tuple[tuple[str, str], ...] = ()
    if props:
        p = json.loads(props)
        ct = p.get("ct")
        up = tuple((str(k), str(v)) for k, v in p.get("up", []))
    return StoredMessage(
        row=int(row),
        created=float(created),
        born=float(born or 0.0),
        message=OutboxMessage(
            topic=topic,
            payload=bytes(payload),
            msg_id=msg_id,
            kind=kind,
            qos=int(qos),
            retain=bool(retain),
            content_type=ct,
            user_properties=up,
            ttl_s=ttl,
        ),
    )
