"""The durable outbox: every result and event is in SQLite before it is published.

Field devices lose their network for hours and get power-cycled; paho keeps unsent messages only in
memory. So a message is committed here first (WAL, synchronous=FULL by default: a committed row
survives SIGKILL and power loss), published in row order, and deleted only when the broker's PUBACK
arrives. Everything the publisher needs after a crash is in the database: the rows, the boot counter,
the result sequence, the drop and expiry counters and the not-yet-reported drops. Nothing lives only
in memory.

Only commits that add rows wait for the disk (fsync); deleting acknowledged, rejected or expired
rows does not, because losing such a deletion to a power cut only means a re-publish, which
at-least-once delivery allows (consumers de-duplicate on the id).

The outbox is bounded by bytes. When a new message does not fit, the oldest rows are dropped,
counted, and remembered as a pending drop report, which the publisher turns into an
`outbox_dropped` event (in the same transaction that clears the report, so a report is never lost or
sent twice). Rows whose `expires_at` has passed are deleted unpublished and counted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge.core.errors import EdgeError

log = logging.getLogger(__name__)

ROW_OVERHEAD = 64  # bytes counted per row on top of topic, payload and properties

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    row        INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id     TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    qos        INTEGER NOT NULL,
    retain     INTEGER NOT NULL,
    props      TEXT,
    created    REAL    NOT NULL,
    expires_at REAL,
    size       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
"""

_COUNTERS = (
    "boot",
    "seq",
    "bytes",
    "dropped_total",
    "expired_total",
    "rejected_total",
    "drop_pending",
    "drop_pending_bytes",
)


class OutboxError(EdgeError):
    """The outbox database cannot be opened (in use by another process, unwritable, corrupt)."""


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
    expires_at: float | None = None  # wall-clock epoch seconds; None: never expires

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
    created: float
    message: OutboxMessage


@dataclass(frozen=True)
class DropReport:
    """Rows dropped to make room since the last report."""

    count: int
    bytes: int
    first_id: str | None
    last_id: str | None


@dataclass(frozen=True)
class OutboxStats:
    depth: int
    bytes: int
    max_bytes: int
    dropped_total: int
    expired_total: int
    rejected_total: int
    drop_pending: int


class Outbox:
    """SQLite-backed FIFO. Thread-safe: one connection, one lock, short transactions."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self._clock = clock
        self._synchronous = synchronous
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lockfile = open(f"{self.path}.lock", "a+b")  # noqa: SIM115 (held open for our lifetime)
        except OSError as err:
            raise OutboxError(f"cannot create outbox at {self.path}: {err.strerror}") from None
        try:
            fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise OutboxError(f"outbox {self.path} is in use by another process") from None
        try:
            self._open(synchronous)
        except sqlite3.DatabaseError as err:
            # A damaged file must not keep a field device from publishing: keep it for a post
            # mortem, start empty. Boot numbers stay unique (they follow the wall clock, see
            # begin_boot), so ids of the new outbox cannot collide with the old one's.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(self._clock())}")
            log.error("outbox %s is damaged (%s); moved to %s, starting empty", self.path, err, aside)
            with contextlib.suppress(Exception):
                self._db.close()
            try:
                for suffix in ("", "-wal", "-shm"):
                    src = Path(f"{self.path}{suffix}")
                    if src.exists():
                        src.rename(f"{aside}{suffix}")
                self._open(synchronous)
            except (OSError, sqlite3.DatabaseError) as err2:
                self._lockfile.close()
                raise OutboxError(f"outbox {self.path} cannot be opened: {err2}") from None
        self.boot = self._get("boot")

    # ------------------------------------------------------------------ plumbing

    def _open(self, synchronous: str) -> None:
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        with self._tx():
            for key in _COUNTERS:
                self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, 0)", (key,))
            # Self-heal the byte counter from the rows (cheap, once per open).
            total = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0]
            self._set("bytes", int(total))

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._lockfile.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT under the lock; ROLLBACK if the body raises.

        `durable=False` is for transactions whose loss on power failure is harmless (deleting
        acknowledged rows: the worst case is a re-publish, which at-least-once allows). They skip
        the fsync; the next durable commit syncs the write-ahead log, theirs included.
        """
        with self._lock:
            if self._synchronous != "NORMAL":
                self._db.execute(f"PRAGMA synchronous={self._synchronous if durable else 'NORMAL'}")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _get(self, key: str) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def _get_text(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def _set(self, key: str, value: int | str | None) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _add(self, key: str, delta: int) -> None:
        self._db.execute("UPDATE meta SET value = value + ? WHERE key = ?", (delta, key))

    # ------------------------------------------------------------------ boots and sequences

    def begin_boot(self) -> int:
        """Start a new boot of the daemon: a new durable boot number, and `seq` back to 0.

        The number is max(previous + 1, wall-clock seconds): strictly increasing while the file
        lives, and still unique if the file is lost or replaced (ids carry it; consumers
        de-duplicate on ids, so a reused boot number would make them discard new results).
        """
        with self._tx():
            self._set("boot", max(self._get("boot") + 1, int(self._clock())))
            self._set("seq", 0)
            self.boot = self._get("boot")
        return self.boot

    # ------------------------------------------------------------------ writing

    def enqueue(self, message: OutboxMessage) -> int | None:
        """Commit one message. Returns its row, or None if it alone exceeds the whole bound."""
        with self._tx():
            return self._insert(message)

    def enqueue_numbered(self, build: Callable[[int], OutboxMessage]) -> tuple[int, OutboxMessage]:
        """Allocate the next `seq` of this boot and store `build(seq)` in the same transaction.

        If `build` raises, nothing is stored and the sequence number is not used: no gaps.
        """
        with self._tx():
            seq = self._get("seq") + 1
            message = build(seq)
            self._set("seq", seq)
            self._insert(message)
        return seq, message

    def _insert(self, m: OutboxMessage) -> int | None:
        size = m.size
        if size > self.max_bytes:
            log.error(
                "outbox: message %s (%d bytes) is larger than the whole outbox; dropped", m.msg_id, size
            )
            self._note_dropped(1, size, m.msg_id, m.msg_id)
            return None
        self._make_room(size)
        cur = self._db.execute(
            "INSERT INTO outbox(msg_id, kind, topic, payload, qos, retain, props, created, expires_at, size)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                m.msg_id,
                m.kind,
                m.topic,
                m.payload,
                m.qos,
                int(m.retain),
                m._props_json(),
                self._clock(),
                m.expires_at,
                size,
            ),
        )
        self._add("bytes", size)
        return int(cur.lastrowid or 0)

    def _make_room(self, size: int) -> None:
        used = self._get("bytes")
        need = used + size - self.max_bytes
        if need <= 0:
            return
        freed, rows, first, last = 0, [], None, None
        for row, msg_id, row_size in self._db.execute("SELECT row, msg_id, size FROM outbox ORDER BY row"):
            rows.append(row)
            first = first or msg_id
            last = msg_id
            freed += row_size
            if freed >= need:
                break
        self._db.executemany("DELETE FROM outbox WHERE row = ?", ((r,) for r in rows))
        self._add("bytes", -freed)
        self._note_dropped(len(rows), freed, first, last)
        log.warning(
            "outbox full (%d bytes): dropped the %d oldest message(s), %s .. %s", used, len(rows), first, last
        )

    def _note_dropped(self, count: int, size: int, first: str | None, last: str | None) -> None:
        self._add("dropped_total", count)
        if self._get("drop_pending") == 0:
            self._set("drop_first_id", first)
        self._add("drop_pending", count)
        self._add("drop_pending_bytes", size)
        self._set("drop_last_id", last)

    def report_drops(self, build_event: Callable[[DropReport], OutboxMessage]) -> DropReport | None:
        """If rows were dropped since the last report, enqueue `build_event(report)` and clear it.

        One transaction: the report is cleared exactly when its event is committed.
        """
        with self._tx():
            count = self._get("drop_pending")
            if count == 0:
                return None
            report = DropReport(
                count=count,
                bytes=self._get("drop_pending_bytes"),
                first_id=self._get_text("drop_first_id"),
                last_id=self._get_text("drop_last_id"),
            )
            self._set("drop_pending", 0)
            self._set("drop_pending_bytes", 0)
            self._set("drop_first_id", None)
            self._set("drop_last_id", None)
            self._insert(build_event(report))
        return report

    # ------------------------------------------------------------------ reading and acknowledging

    def next_batch(self, after_row: int, limit: int) -> list[StoredMessage]:
        """The next `limit` live rows after `after_row`, in order; expired ones are purged first."""
        now = self._clock()
        with self._tx(durable=False):
            expired = self._db.execute(
                "SELECT row, size FROM outbox WHERE row > ? AND expires_at IS NOT NULL AND expires_at <= ?",
                (after_row, now),
            ).fetchall()
            if expired:
                self._db.executemany("DELETE FROM outbox WHERE row = ?", ((r,) for r, _ in expired))
                self._add("bytes", -sum(s for _, s in expired))
                self._add("expired_total", len(expired))
                log.info("outbox: %d message(s) expired unpublished", len(expired))
            rows = self._db.execute(
                "SELECT row, msg_id, kind, topic, payload, qos, retain, props, created, expires_at"
                " FROM outbox WHERE row > ? ORDER BY row LIMIT ?",
                (after_row, limit),
            ).fetchall()
        return [_stored(r) for r in rows]

    def delete(self, rows: Iterable[int]) -> int:
        """Acknowledged (or rejected) rows leave the outbox. Rows already gone are ignored."""
        rows = list(rows)
        if not rows:
            return 0
        with self._tx(durable=False):
            return self._delete(rows)

    def reject(self, rows: Iterable[int]) -> int:
        """Rows the broker refused (e.g. not authorized): deleted and counted, never retried."""
        rows = list(rows)
        with self._tx(durable=False):
            n = self._delete(rows)
            self._add("rejected_total", n)
        return n

    def _delete(self, rows: list[int]) -> int:
        marks = ",".join("?" * len(rows))
        size = self._db.execute(
            f"SELECT COALESCE(SUM(size), 0), COUNT(*) FROM outbox WHERE row IN ({marks})", rows
        ).fetchone()
        self._db.execute(f"DELETE FROM outbox WHERE row IN ({marks})", rows)
        self._add("bytes", -int(size[0]))
        return int(size[1])

    # ------------------------------------------------------------------ inspection

    def stats(self) -> OutboxStats:
        with self._lock:
            depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            return OutboxStats(
                depth=int(depth),
                bytes=self._get("bytes"),
                max_bytes=self.max_bytes,
                dropped_total=self._get("dropped_total"),
                expired_total=self._get("expired_total"),
                rejected_total=self._get("rejected_total"),
                drop_pending=self._get("drop_pending"),
            )

    def depth(self) -> int:
        return self.stats().depth


def _stored(r: tuple[Any, ...]) -> StoredMessage:
    row, msg_id, kind, topic, payload, qos, retain, props, created, expires_at = r
    ct: str | None = None
    up: tuple[tuple[str, str], ...] = ()
    if props:
        p = json.loads(props)
        ct = p.get("ct")
        up = tuple((str(k), str(v)) for k, v in p.get("up", []))
    return StoredMessage(
        row=int(row),
        created=float(created),
        message=OutboxMessage(
            topic=topic,
            payload=bytes(payload),
            msg_id=msg_id,
            kind=kind,
            qos=int(qos),
            retain=bool(retain),
            content_type=ct,
            user_properties=up,
            expires_at=expires_at,
        ),
    )


def default_outbox_path() -> Path:
    """$STATE_DIRECTORY (systemd StateDirectory=) or ~/.local/state/edge, as the settings document."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / "outbox.sqlite"
    return Path.home() / ".local" / "state" / "edge" / "outbox.sqlite"
