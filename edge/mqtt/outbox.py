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

This module is the store: its transactions, the boot number and the `seq` allocated in the commit
that stores a result, reading rows in order and deleting them. Its parts live beside it, each with
the why of its rule:
- `outbox_records`: the value types, the errors a caller sees, reading SQLite's errors;
- `outbox_schema`: the file's tables, counters, pragmas and the upgrades of older files;
- `outbox_space`: the byte bound sized to the filesystem (the reserve kept free, the WAL's bound);
- `outbox_losses`: the loss ledger (drop-oldest, expiry, rejection, a damaged file), until reported;
- `outbox_refusals`: the retry schedule of rows the broker refused (backoff);
- `outbox_ages`: rows' ages on the monotonic clock, across restarts.

The outbox is bounded by bytes. When a new message does not fit, the oldest rows are dropped,
counted, and entered in the loss ledger, which the publisher turns into an `outbox_dropped` event.
Rows whose time to live has passed are deleted unpublished, counted and reported the same way
(`results_dropped`). Rows the broker refuses stay, retried with backoff.

Storage: when a write fails (disk full, I/O error) the transaction is rolled back cleanly and
`StorageError` says why, with the free space; the caller keeps the message and tries again later.
The file is checked (`PRAGMA quick_check`) when it opens and on the first write error that is not
"full": a damaged file is moved aside and the outbox starts empty, remembering how many queued
messages were lost for an `outbox_damaged` event.

Boot numbers (the `<boot>` of `<device>-<boot>-<seq>`): the high part counts up from the persisted
counter (or the wall-clock seconds, if ahead), the low 20 bits are random per start, so two daemons
that share a device_id but not an outbox, started in the same second, do not give out the same ids.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal

from edge.mqtt.outbox_ages import RowAges
from edge.mqtt.outbox_damage import Damaged, is_damage, move_aside, quick_check, salvage, storage_error
from edge.mqtt.outbox_losses import LossLedger
from edge.mqtt.outbox_records import (
    Damage,
    DropReport,
    OutboxError,
    OutboxMessage,
    OutboxStats,
    StorageError,
    StoredMessage,
    _stored,
)
from edge.mqtt.outbox_refusals import RefusalSchedule
from edge.mqtt.outbox_schema import (
    ROW_COLUMNS,
    carry_pending_losses,
    configure,
    meta_add,
    meta_int,
    meta_set,
    settle_counters,
)
from edge.mqtt.outbox_space import SpacePolicy, free_bytes

log = logging.getLogger(__name__)

BOOT_RANDOM_BITS = 20  # low bits of a boot number: random per start


class Outbox:
    """SQLite-backed FIFO. Thread-safe: one connection, one lock, short transactions.

    Every public method takes the lock (an RLock: a write error's recovery re-enters it); the ledger,
    the refusal schedule and the schema helpers it uses never lock on their own, they run inside.
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        reserve_bytes: int | None = None,
        wal_max_bytes: int | None = None,
        free_bytes: Callable[[], int] | None = None,
        kernel_boot_id: str | None = None,
        uptime: Callable[[], float | None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self._unstored_seq = 0  # the highest seq given to a message sent without being stored
        self._clock = clock
        self._mono = monotonic
        self._free = free_bytes or self._filesystem_free
        self._ages = RowAges(monotonic, kernel_boot=kernel_boot_id, uptime=uptime)
        self._synchronous = synchronous
        self._lock = threading.RLock()  # re-entered when a write error leads to recovery
        self.damage: Damage | None = None  # set when a damaged file was moved aside by this object
        self.storage: Literal["ok", "full", "error"] = "ok"
        self.storage_errors = 0
        self._wrote = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The lock guards the database file, not the name it was reached by: a second daemon
            # pointed at a symlink (or another path) to the same file must find it locked.
            self.lock_path = Path(f"{self.path.resolve()}.lock")
            self._lockfile = open(self.lock_path, "a+b")  # noqa: SIM115 (held open for our lifetime)
        except OSError as err:
            raise OutboxError(f"cannot create outbox at {self.path}: {err.strerror}") from None
        self.space = SpacePolicy.for_filesystem(
            self.path.parent, reserve_bytes=reserve_bytes, wal_max_bytes=wal_max_bytes
        )
        self.reserve_bytes = self.space.reserve_bytes
        self.wal_max_bytes = self.space.wal_max_bytes
        try:
            fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise OutboxError(f"outbox {self.path} is in use by another process") from None
        try:
            self._open(synchronous)
            self._check()
        except sqlite3.DatabaseError as err:
            if not is_damage(err) and not isinstance(err, Damaged):
                with contextlib.suppress(Exception):
                    self._db.close()
                self._lockfile.close()
                raise OutboxError(f"outbox {self.path} cannot be opened: {err}") from None
            try:
                self._recover(str(err))
            except (OSError, sqlite3.DatabaseError) as err2:
                self._lockfile.close()
                raise OutboxError(f"outbox {self.path} cannot be opened: {err2}") from None
        self.boot = self._get("boot")

    # ------------------------------------------------------------------ plumbing

    def _filesystem_free(self) -> int:
        return free_bytes(self.path.parent)

    def _open(self, synchronous: str) -> None:
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._losses = LossLedger(self._db)  # both bound to this connection: a recovery replaces it
        self._refusals = RefusalSchedule(self._db)
        self._page = configure(self._db, synchronous, self.wal_max_bytes)
        now = self._mono()
        with self._tx(convert=False):
            settle_counters(self._db)
            self._ages.restamp_on_open(self._db, self.path, now)
            # Refused rows are tried once more by a new process (the ACL may have been fixed), in order.
            self._refusals.retry_all_now()
            # Pending loss reports of files written before the ledger: carried into it.
            carry_pending_losses(self._db)

    def _check(self) -> None:
        """A quick structural check of every page: garbage in the middle of the file is found now,
        not at the first insert that touches it."""
        quick_check(self._db)

    def _recover(self, why: str) -> None:
        """Move a damaged file aside (kept for a post mortem), start empty, remember what was lost."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(self._clock())}")
        damage = salvage(self._db if hasattr(self, "_db") else None, aside)
        with contextlib.suppress(Exception):
            self._db.close()
        move_aside(self.path, aside)
        self._open(self._synchronous)
        self.damage = damage
        log.error(
            "outbox %s is damaged (%s); moved to %s, starting empty; %s queued message(s) lost",
            self.path,
            why,
            aside,
            "an unknown number of" if damage.messages is None else damage.messages,
        )
        with self._tx(convert=False):
            if damage.boot:  # ids stay unique: the new file's boots continue after the old one's
                self._set("boot", damage.boot)
            lost = -1 if damage.messages is None else damage.messages
            self._losses.note("damaged", lost, 0, damage.first_id, damage.last_id)

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._lockfile.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self, durable: bool = True, convert: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT under the lock; ROLLBACK if the body or the COMMIT raises.

        `durable=False` is for transactions whose loss on power failure is harmless (deleting
        acknowledged rows: the worst case is a re-publish, which at-least-once allows). They skip
        the fsync; the next durable commit syncs the write-ahead log, theirs included.

        A disk that is full or fails raises StorageError, after a rollback that cannot raise again:
        the connection stays usable for the next try.
        """
        with self._lock:
            try:
                if self._synchronous != "NORMAL":
                    self._db.execute(f"PRAGMA synchronous={self._synchronous if durable else 'NORMAL'}")
                self._db.execute("BEGIN IMMEDIATE")
                self._wrote = False
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                    if self._wrote:
                        self.storage = "ok"
                except StorageError as err:
                    if self._db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            self._db.execute("ROLLBACK")
                    self._note_storage(err)
                    raise
                except BaseException:
                    if self._db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            self._db.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as err:
                if not convert:
                    raise
                failure = self._storage_error(err)
                if isinstance(failure, StorageError):
                    self._note_storage(failure)
                raise failure from err

    def _note_storage(self, err: StorageError) -> None:
        self.storage_errors += 1
        self.storage = "full" if err.full else "error"

    def _storage_error(self, err: sqlite3.DatabaseError) -> Exception:
        if isinstance(err, Damaged):
            return err
        return storage_error(err, db=self._db, path=self.path, free=self.free_bytes(), recover=self._recover)

    def free_bytes(self) -> int | None:
        try:
            return int(self._free())
        except OSError:
            return None

    def _get(self, key: str) -> int:
        return meta_int(self._db, key)

    def _set(self, key: str, value: int | str | None) -> None:
        meta_set(self._db, key, value)

    def _add(self, key: str, delta: int) -> None:
        meta_add(self._db, key, delta)

    # ------------------------------------------------------------------ boots and sequences

    def begin_boot(self) -> int:
        """Start a new boot of the daemon: a new durable boot number, and `seq` back to 0.

        The high part is max(previous high part + 1, wall-clock seconds): strictly increasing while
        the file lives whatever the clock does, and still unique if the file is lost. The low
        BOOT_RANDOM_BITS are random: two daemons with one device_id (and two outboxes) started in
        the same second, or from copies of one outbox, still differ (1 in 2**20 per pair).
        """
        with self._tx():
            high = max((self._get("boot") >> BOOT_RANDOM_BITS) + 1, int(self._clock()))
            self._set("boot", (high << BOOT_RANDOM_BITS) | random.getrandbits(BOOT_RANDOM_BITS))
            self._set("seq", 0)
            self.boot = self._get("boot")
        return self.boot

    # ------------------------------------------------------------------ writing

    def enqueue(self, message: OutboxMessage) -> int | None:
        """Commit one message. Returns its row, or None if it alone exceeds the whole bound.

        Raises StorageError if the disk cannot take it (nothing stored; try again later)."""
        with self._tx():
            return self._insert(message)

    def enqueue_numbered(self, build: Callable[[int], OutboxMessage]) -> tuple[int, OutboxMessage]:
        """Allocate the next `seq` of this boot and store `build(seq)` in the same transaction.

        If `build` raises, or the disk is full (StorageError), nothing is stored and the sequence
        number is not used: no gaps.
        """
        with self._tx():
            seq = max(self._get("seq"), self._unstored_seq) + 1
            message = build(seq)
            self._set("seq", seq)
            self._insert(message)
        return seq, message

    def number_unstored(self, build: Callable[[int], OutboxMessage]) -> tuple[int, OutboxMessage]:
        """The next `seq` for a message that goes to the broker without being stored (the disk
        cannot take it): counted in memory, so the stored ones that follow continue after it. A
        crash before the next stored write loses only the counter; the next boot has a new number."""
        with self._lock:
            seq = max(self._get("seq"), self._unstored_seq) + 1
            message = build(seq)
            self._unstored_seq = seq
        return seq, message

    def _limit(self) -> int:
        """The bound in force now: `max_bytes`, or less when the filesystem has less to give
        (`SpacePolicy.limit`: the reserve keeps the WAL and SQLite's own work off a full disk)."""
        free = self.free_bytes()
        pages = (
            0 if free is None else int(self._db.execute("PRAGMA freelist_count").fetchone()[0]) * self._page
        )
        return self.space.limit(self.max_bytes, used=self._get("bytes"), free=free, free_pages=pages)

    def _insert(self, m: OutboxMessage) -> int | None:
        size = m.size
        if size > self.max_bytes:
            log.error(
                "outbox: message %s (%d bytes) is larger than the whole outbox; dropped", m.msg_id, size
            )
            self._losses.note("full", 1, size, m.msg_id, m.msg_id)
            return None
        limit = self._limit()
        if size > limit:
            free = self.free_bytes()
            raise StorageError(
                f"outbox {self.path}: disk full ({free} bytes free, {self.reserve_bytes} kept in reserve)",
                full=True,
                free_bytes=free,
            )
        self._make_room(size, limit)
        cur = self._db.execute(
            "INSERT INTO outbox(msg_id, kind, topic, payload, qos, retain, props, created, expires_at, size,"
            " ttl, born) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
            (
                m.msg_id,
                m.kind,
                m.topic,
                m.payload,
                m.qos,
                int(m.retain),
                m._props_json(),
                self._clock(),
                size,
                m.ttl_s,
                self._mono(),
            ),
        )
        self._add("bytes", size)
        self._wrote = True
        return int(cur.lastrowid or 0)

    def _make_room(self, size: int, limit: int) -> None:
        """Drop the oldest rows until `size` more bytes fit under `limit` (entered in the ledger)."""
        used = self._get("bytes")
        need = used + size - limit
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
        self._losses.note("full", len(rows), freed, first, last)
        log.warning(
            "outbox full (%d bytes of %d%s): dropped the %d oldest message(s), %s .. %s",
            used,
            limit,
            "" if limit == self.max_bytes else ", limited by free disk space",
            len(rows),
            first,
            last,
        )

    # ------------------------------------------------------------------ loss reports (outbox_losses)

    def report_drops(
        self, build_event: Callable[[DropReport], OutboxMessage], reason: str = "full"
    ) -> DropReport | None:
        """If rows were lost for `reason` since the last report, enqueue `build_event(report)`.

        The report covers every loss since the last report the broker acknowledged, not only the
        new ones: a report that is itself lost (dropped, expired, refused for ever) leaves its range
        to the next one. Its entries leave the ledger when its PUBACK arrives (`delete`). One
        transaction: the ledger is marked exactly when the event is committed."""
        with self._tx():
            report = self._losses.due_report(reason)
            if report is None:
                return None
            message = build_event(report)
            self._losses.mark_reported(reason, message.msg_id)
            self._insert(message)
        return report

    def pending_losses(self, reason: str = "full") -> int:
        """Messages lost for `reason` and not yet covered by an acknowledged report."""
        with self._lock:
            return self._losses.pending(reason)

    # ------------------------------------------------------------------ reading and acknowledging

    def next_batch(self, after_row: int, limit: int) -> list[StoredMessage]:
        """The next `limit` live rows after `after_row`, in order; expired ones are purged first
        (refused rows waiting for their retry too: they are not in flight)."""
        now = self._mono()
        with self._tx(durable=False):
            expired = self._db.execute(
                "SELECT row, size, msg_id FROM outbox WHERE (row > ? OR retry_at IS NOT NULL)"
                " AND ttl IS NOT NULL AND born + ttl <= ? ORDER BY row",
                (after_row, now),
            ).fetchall()
            if expired:
                self._db.executemany("DELETE FROM outbox WHERE row = ?", ((r,) for r, _, _ in expired))
                size = sum(s for _, s, _ in expired)
                self._add("bytes", -size)
                self._add("expired_total", len(expired))
                self._losses.note("expired", len(expired), size, expired[0][2], expired[-1][2])
                log.warning(
                    "outbox: %d message(s) expired unpublished, %s .. %s",
                    len(expired),
                    expired[0][2],
                    expired[-1][2],
                )
            rows = self._db.execute(
                f"SELECT {ROW_COLUMNS} FROM outbox WHERE row > ? AND retry_at IS NULL ORDER BY row LIMIT ?",
                (after_row, limit),
            ).fetchall()
        return [_stored(r) for r in rows]

    def remaining_s(self, stored: StoredMessage) -> float | None:
        """Seconds `stored` has left to live (monotonic), or None if it never expires."""
        return self._ages.remaining_s(stored)

    def age_s(self, stored: StoredMessage) -> float:
        return self._ages.age_s(stored)

    def delete(self, rows: Iterable[int]) -> int:
        """Acknowledged rows leave the outbox. Rows already gone are ignored. An acknowledged loss
        report settles the losses it covered."""
        rows = list(rows)
        if not rows:
            return 0
        with self._tx(durable=False):
            marks = ",".join("?" * len(rows))
            events = [
                r[0]
                for r in self._db.execute(
                    f"SELECT msg_id FROM outbox WHERE row IN ({marks}) AND kind = 'event'", rows
                )
            ]
            n = self._delete(rows)
            self._losses.settle(events)
            return n

    def reject(self, rows: Iterable[int]) -> int:
        """Rows that can never be published (an invalid topic, a payload over the broker's limit):
        deleted, counted and reported as lost."""
        rows = list(rows)
        with self._tx(durable=False):
            marks = ",".join("?" * len(rows))
            found = self._db.execute(
                f"SELECT msg_id, size FROM outbox WHERE row IN ({marks}) ORDER BY row", rows
            ).fetchall()
            n = self._delete(rows)
            if n:
                self._losses.note("rejected", n, sum(s for _, s in found), found[0][0], found[-1][0])
        return n

    def _delete(self, rows: list[int]) -> int:
        marks = ",".join("?" * len(rows))
        size = self._db.execute(
            f"SELECT COALESCE(SUM(size), 0), COUNT(*) FROM outbox WHERE row IN ({marks})", rows
        ).fetchone()
        self._db.execute(f"DELETE FROM outbox WHERE row IN ({marks})", rows)
        self._add("bytes", -int(size[0]))
        return int(size[1])

    # ------------------------------------------------------------------ refusals (outbox_refusals)

    def refuse(self, rows: Iterable[int], *, retry_min_s: float, retry_max_s: float) -> list[tuple[str, int]]:
        """Rows the broker refused (e.g. an ACL: not authorized) stay, to be retried with backoff:
        `retry_min_s` doubling per refusal up to `retry_max_s`. The outbox's bounds still hold (drop-
        oldest and expiry take them like any row), so a refusal fixed later gets what is left.
        Returns (msg_id, refusals so far) per row still here."""
        rows = list(rows)
        now = self._mono()
        with self._tx(durable=False):
            out = self._refusals.refuse(rows, now, retry_min_s, retry_max_s)
            self._add("rejected_total", len(out))
        return out

    def refused_due(self, limit: int) -> list[StoredMessage]:
        """Refused rows whose retry time has come, oldest first; they count as handed over again
        (their retry time is cleared until the broker answers)."""
        now = self._mono()
        with self._tx(durable=False):
            return self._refusals.take_due(now, limit)

    def refuse_again(self, rows: Iterable[int]) -> None:
        """Rows taken by `refused_due` that could not be handed over: due again now."""
        now = self._mono()
        with self._tx(durable=False):
            self._refusals.due_again(rows, now)

    def next_retry_s(self) -> float | None:
        """Seconds until the next refused row is due (0 if one is), or None if none waits."""
        with self._lock:
            at = self._refusals.next_at()
        return None if at is None else max(0.0, at - self._mono())

    # ------------------------------------------------------------------ inspection

    def checkpoint(self) -> None:
        """Fold the WAL into the database and truncate it (e.g. when the outbox has drained)."""
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def wal_bytes(self) -> int:
        try:
            return Path(f"{self.path}-wal").stat().st_size
        except OSError:
            return 0

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
                drop_pending=self._losses.unreported("full"),
                refused=self._refusals.waiting(),
                wal_bytes=self.wal_bytes(),
                free_bytes=self.free_bytes(),
                storage=self.storage,
                storage_errors=self.storage_errors,
            )

    def depth(self) -> int:
        return self.stats().depth


def default_outbox_path() -> Path:
    """$STATE_DIRECTORY (systemd StateDirectory=) or ~/.local/state/edge, as the settings document."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / "outbox.sqlite"
    return Path.home() / ".local" / "state" / "edge" / "outbox.sqlite"
