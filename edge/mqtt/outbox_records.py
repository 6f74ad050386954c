"""What the outbox stores and reports: the value types, the errors a caller sees, and how a row is
read back into a message.

Kept apart from `outbox.py` (the transactions) so that module stays about the life of one database;
callers that only pass messages around import these, not the store. How SQLite's errors are read
(full, damaged) and what a damaged file still says: `outbox_damage`.
"""

from __future__ import annotations

import json
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
