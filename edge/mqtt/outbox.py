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
counted, and entered in a loss ledger (table `losses`), which the publisher turns into an
`outbox_dropped` event. Rows whose time to live has passed are deleted unpublished, counted and
reported the same way (`results_dropped`). A report covers every loss of its cause since the last
report the broker acknowledged: the ledger keeps an entry until the PUBACK of a report that covered
it arrives, so a report that is itself lost (dropped, expired) leaves its range to the next one.

Rows the broker refuses (a PUBACK reason code >= 128, e.g. an ACL) stay, with a retry time that
doubles per refusal; they are bounded like any row (drop-oldest, expiry), so an ACL fixed later gets
what is left.

Time: a row's age is measured on the monotonic clock (CLOCK_MONOTONIC survives a daemon restart within
one kernel boot; the kernel's boot id tells). A wall-clock step never expires a row. Across a reboot
the time the device was off cannot be measured without a trustworthy clock, so ages restart at 0.

Storage: the write-ahead log is checkpointed and truncated at a bound (`wal_max_bytes`), and the
outbox keeps `reserve_bytes` of the filesystem free: `max_bytes` is measured against the real free
space, and drop-oldest acts before the filesystem fills. When a write still fails (disk full, I/O
error) the transaction is rolled back cleanly and `StorageError` says why, with the free space; the
caller keeps the message and tries again later. The file is checked (`PRAGMA quick_check`) when it
opens and on the first write error that is not "full": a damaged file is moved aside and the outbox
starts empty, remembering how many queued messages were lost for an `outbox_damaged` event.

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

from edge.mqtt.outbox_records import (
    Damage,
    DropReport,
    OutboxError,
    OutboxMessage,
    OutboxStats,
    StorageError,
    StoredMessage,
    _Damaged,
    _free_bytes,
    _is_damage,
    _is_full,
    _kernel_boot_id,
    _salvage_counts,
    _salvage_meta,
    _stored,
)

log = logging.getLogger(__name__)

BOOT_RANDOM_BITS = 20  # low bits of a boot number: random per start
WAL_MAX_BYTES = 1 << 20  # the write-ahead log is checkpointed and truncated around this size
RESERVE_BYTES = 4 << 20  # kept free on the filesystem: the WAL's bound, SQLite's temporary pages, slack
# On a small filesystem the reserve and the WAL bound are this fraction of its size instead (a fixed
# 4 MiB on a 256 KiB filesystem would refuse every write while the disk is mostly empty).
SMALL_FS_SHARE = 8
# Suspend makes /proc/uptime run ahead of CLOCK_MONOTONIC; beyond this the rows' ages restart.
MONO_SKEW_TOLERANCE_S = 30.0
# Why rows can be lost, and the meta-key prefix of each pending report ("drop" kept from v1 files).
LOSS_PREFIX = {"full": "drop", "expired": "expire", "rejected": "reject", "damaged": "damage"}

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
    size       INTEGER NOT NULL,
    ttl        REAL,
    born       REAL,
    retry_at   REAL,
    refusals   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS losses (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    reason    TEXT    NOT NULL,
    count     INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    first_id  TEXT,
    last_id   TEXT,
    report_id TEXT
);
"""

_COUNTERS = (
    "boot",
    "seq",
    "bytes",
    "dropped_total",
    "expired_total",
    "rejected_total",
    *(f"{p}_pending" for p in LOSS_PREFIX.values()),
    *(f"{p}_pending_bytes" for p in LOSS_PREFIX.values()),
)


class Outbox:
    """SQLite-backed FIFO. Thread-safe: one connection, one lock, short transactions."""

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
        self._free = free_bytes or (lambda: _free_bytes(self.path.parent))
        self._kernel_boot = _kernel_boot_id() if kernel_boot_id is None else kernel_boot_id
        # The kernel's own time since boot (/proc/uptime is read, not faked by an LD_PRELOAD shim): it
        # tells whether this process's monotonic clock is the one the rows were stamped with.
        self._uptime = (
            uptime if uptime is not None else (_proc_uptime if monotonic is time.monotonic else None)
        )
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
        fs_bytes = _filesystem_bytes(self.path.parent)
        share = fs_bytes // SMALL_FS_SHARE if fs_bytes else None
        # Sized to the filesystem the outbox is on, unless given: see SMALL_FS_SHARE.
        self.reserve_bytes = int(
            reserve_bytes if reserve_bytes is not None else min(RESERVE_BYTES, share or RESERVE_BYTES)
        )
        self.wal_max_bytes = int(
            wal_max_bytes if wal_max_bytes is not None else min(WAL_MAX_BYTES, share or WAL_MAX_BYTES)
        )
        try:
            fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise OutboxError(f"outbox {self.path} is in use by another process") from None
        try:
            self._open(synchronous)
            self._check()
        except sqlite3.DatabaseError as err:
            if not _is_damage(err) and not isinstance(err, _Damaged):
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

    def _open(self, synchronous: str) -> None:
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        # A bounded WAL: checkpoint every wal_max/2 and truncate the file back to wal_max afterwards.
        page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        self._page = page
        self._db.execute(f"PRAGMA wal_autocheckpoint={max(8, self.wal_max_bytes // 2 // page)}")
        self._db.execute(f"PRAGMA journal_size_limit={self.wal_max_bytes}")
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(outbox)")}
        for col, kind in (("ttl", "REAL"), ("born", "REAL"), ("retry_at", "REAL")):
            if col not in columns:  # a file written before ages were monotonic / refusals were kept
                self._db.execute(f"ALTER TABLE outbox ADD COLUMN {col} {kind}")
        if "refusals" not in columns:
            self._db.execute("ALTER TABLE outbox ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0")
        now = self._mono()
        with self._tx(convert=False):
            for key in _COUNTERS:
                self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, 0)", (key,))
            # Self-heal the byte counter from the rows (cheap, once per open).
            total = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0]
            self._set("bytes", int(total))
            # v1 rows carried a wall-clock deadline: keep what was left of it, never less than 0 s
            # of what it had, and never judge it by the clock that may have stepped since.
            self._db.execute(
                "UPDATE outbox SET ttl = MAX(expires_at - created, 0), expires_at = NULL"
                " WHERE ttl IS NULL AND expires_at IS NOT NULL"
            )
            # Monotonic ages carry over a restart only within one kernel boot (and only if sane).
            skew = self._mono_skew(now)
            was = self._get_text("mono_skew")
            if self._get_text("kernel_boot") != self._kernel_boot:
                self._db.execute("UPDATE outbox SET born = ?", (now,))
                self._set("kernel_boot", self._kernel_boot)
            elif skew is not None and was is not None and abs(skew - float(was)) > MONO_SKEW_TOLERANCE_S:
                # The monotonic clock is not the one the rows were stamped with (a clock shim, a
                # container with its own time namespace): their ages cannot be trusted, so they restart.
                n = self._db.execute("UPDATE outbox SET born = ?", (now,)).rowcount
                log.warning(
                    "outbox %s: the monotonic clock is %.0f s off the kernel's time since boot, %.0f s"
                    " off what it was when the queued rows were stamped; %d row(s) start their age again",
                    self.path,
                    skew,
                    skew - float(was),
                    n,
                )
            if skew is not None:
                self._set("mono_skew", repr(skew))
            # A stamp in the future, or before the kernel booted (monotonic time starts near 0 at
            # boot), is impossible on this clock: restart its age rather than expire it.
            self._db.execute(
                "UPDATE outbox SET born = ? WHERE born IS NULL OR born > ? OR born < 0", (now, now)
            )
            # Refused rows are tried once more by a new process (the ACL may have been fixed), in order.
            self._db.execute("UPDATE outbox SET retry_at = NULL WHERE retry_at IS NOT NULL")
            # Pending loss reports of files written before the ledger: carried into it.
            for reason, p in LOSS_PREFIX.items():
                count = self._get(f"{p}_pending")
                if count:
                    self._db.execute(
                        "INSERT INTO losses(reason, count, bytes, first_id, last_id) VALUES (?, ?, ?, ?, ?)",
                        (
                            reason,
                            count,
                            self._get(f"{p}_pending_bytes"),
                            self._get_text(f"{p}_first_id"),
                            self._get_text(f"{p}_last_id"),
                        ),
                    )
                    self._set(f"{p}_pending", 0)
                    self._set(f"{p}_pending_bytes", 0)

    def _check(self) -> None:
        """A quick structural check of every page: garbage in the middle of the file is found now,
        not at the first insert that touches it."""
        verdict = self._db.execute("PRAGMA quick_check(1)").fetchone()[0]
        if verdict != "ok":
            raise _Damaged(f"integrity check: {verdict}")

    def _recover(self, why: str) -> None:
        """Move a damaged file aside (kept for a post mortem), start empty, remember what was lost."""
        lost = _salvage_counts(self._db if hasattr(self, "_db") else None)
        old_boot = _salvage_meta(self._db if hasattr(self, "_db") else None, "boot") or 0
        old_seq = _salvage_meta(self._db if hasattr(self, "_db") else None, "seq")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(self._clock())}")
        with contextlib.suppress(Exception):
            self._db.close()
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.rename(f"{aside}{suffix}")
        self._open(self._synchronous)
        messages, results, first, last = lost
        self.damage = Damage(aside, messages, results, first, last, old_boot, old_seq)
        log.error(
            "outbox %s is damaged (%s); moved to %s, starting empty; %s queued message(s) lost",
            self.path,
            why,
            aside,
            "an unknown number of" if messages is None else messages,
        )
        with self._tx(convert=False):
            if old_boot:  # ids stay unique: the new file's boots continue after the old one's
                self._set("boot", old_boot)
            self._note_lost("damaged", -1 if messages is None else messages, 0, first, last)

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
        if isinstance(err, _Damaged):
            return err
        free = self.free_bytes()
        if _is_full(err):
            return StorageError(f"outbox {self.path}: disk full ({err})", full=True, free_bytes=free)
        if _is_damage(err) or not isinstance(err, sqlite3.OperationalError) or "I/O" in str(err):
            try:
                damaged = _is_damage(err) or self._db.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok"
            except sqlite3.DatabaseError:
                damaged = True
            if damaged:
                try:
                    self._recover(str(err))
                except (OSError, sqlite3.DatabaseError) as err2:
                    return StorageError(
                        f"outbox {self.path}: damaged and cannot be replaced ({err2})",
                        full=False,
                        free_bytes=free,
                    )
                return StorageError(
                    f"outbox {self.path}: damaged ({err}); moved aside, try again",
                    full=False,
                    free_bytes=free,
                )
        return StorageError(f"outbox {self.path}: write failed ({err})", full=False, free_bytes=free)

    def _mono_skew(self, now: float) -> float | None:
        """This process's monotonic clock minus the kernel's time since boot (None: unknown)."""
        if self._uptime is None:
            return None
        try:
            up = self._uptime()
        except OSError:
            return None
        return None if up is None else now - up

    def free_bytes(self) -> int | None:
        try:
            return int(self._free())
        except OSError:
            return None

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
        """The bound in force now: `max_bytes`, or less when the filesystem has less to give.

        The rows we hold plus the free space (the filesystem's and SQLite's free pages), minus the
        reserve that keeps the WAL and SQLite's own work from ever meeting a full disk.
        """
        free = self.free_bytes()
        if free is None:
            return self.max_bytes
        free_pages = int(self._db.execute("PRAGMA freelist_count").fetchone()[0]) * self._page
        room = self._get("bytes") + free + free_pages - self.reserve_bytes
        return max(0, min(self.max_bytes, room))

    def _insert(self, m: OutboxMessage) -> int | None:
        size = m.size
        if size > self.max_bytes:
            log.error(
                "outbox: message %s (%d bytes) is larger than the whole outbox; dropped", m.msg_id, size
            )
            self._note_lost("full", 1, size, m.msg_id, m.msg_id)
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
        self._note_lost("full", len(rows), freed, first, last)
        log.warning(
            "outbox full (%d bytes of %d%s): dropped the %d oldest message(s), %s .. %s",
            used,
            limit,
            "" if limit == self.max_bytes else ", limited by free disk space",
            len(rows),
            first,
            last,
        )

    def _note_lost(self, reason: str, count: int, size: int, first: str | None, last: str | None) -> None:
        """Record a loss in the ledger: merged into the newest entry not yet reported, if any."""
        if reason == "full":
            self._add("dropped_total", count)
        open_entry = self._db.execute(
            "SELECT id, count FROM losses WHERE reason = ? AND report_id IS NULL ORDER BY id DESC LIMIT 1",
            (reason,),
        ).fetchone()
        if open_entry is None:
            self._db.execute(
                "INSERT INTO losses(reason, count, bytes, first_id, last_id) VALUES (?, ?, ?, ?, ?)",
                (reason, count, size, first, last),
            )
            return
        entry, had = open_entry
        total = -1 if had < 0 or count < 0 else had + count  # -1: an unknown number
        self._db.execute(
            "UPDATE losses SET count = ?, bytes = bytes + ?, last_id = COALESCE(?, last_id),"
            " first_id = COALESCE(first_id, ?) WHERE id = ?",
            (total, size, last, first, entry),
        )

    def report_drops(
        self, build_event: Callable[[DropReport], OutboxMessage], reason: str = "full"
    ) -> DropReport | None:
        """If rows were lost for `reason` since the last report, enqueue `build_event(report)`.

        The report covers every loss since the last report the broker acknowledged, not only the
        new ones: a report that is itself lost (dropped, expired, refused for ever) leaves its range
        to the next one. Its entries leave the ledger when its PUBACK arrives (`delete`). One
        transaction: the ledger is marked exactly when the event is committed."""
        with self._tx():
            entries = self._db.execute(
                "SELECT count, bytes, first_id, last_id, report_id FROM losses WHERE reason = ? ORDER BY id",
                (reason,),
            ).fetchall()
            new = [e for e in entries if e[4] is None]
            if not new:
                return None
            counts = [e[0] for e in entries]
            report = DropReport(
                count=-1 if any(c < 0 for c in counts) else sum(counts),
                bytes=sum(e[1] for e in entries),
                first_id=next((e[2] for e in entries if e[2] is not None), None),
                last_id=next((e[3] for e in reversed(entries) if e[3] is not None), None),
                reason=reason,
                new=-1 if any(e[0] < 0 for e in new) else sum(e[0] for e in new),
                unacknowledged_reports=len({e[4] for e in entries if e[4] is not None}),
            )
            message = build_event(report)
            self._db.execute(
                "UPDATE losses SET report_id = ? WHERE reason = ? AND report_id IS NULL",
                (message.msg_id, reason),
            )
            self._insert(message)
        return report

    def _settle_reports(self, msg_ids: list[str]) -> None:
        """Loss reports the broker acknowledged: what each covered leaves the ledger."""
        for msg_id in msg_ids:
            hit = self._db.execute(
                "SELECT reason, MAX(id) FROM losses WHERE report_id = ? GROUP BY reason", (msg_id,)
            ).fetchall()
            for reason, upto in hit:
                self._db.execute("DELETE FROM losses WHERE reason = ? AND id <= ?", (reason, upto))

    def pending_losses(self, reason: str = "full") -> int:
        """Messages lost for `reason` and not yet covered by an acknowledged report."""
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(SUM(count), 0) FROM losses WHERE reason = ?", (reason,)
            ).fetchone()
        return int(row[0])

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
                self._note_lost("expired", len(expired), size, expired[0][2], expired[-1][2])
                log.warning(
                    "outbox: %d message(s) expired unpublished, %s .. %s",
                    len(expired),
                    expired[0][2],
                    expired[-1][2],
                )
            rows = self._db.execute(
                "SELECT row, msg_id, kind, topic, payload, qos, retain, props, created, ttl, born"
                " FROM outbox WHERE row > ? AND retry_at IS NULL ORDER BY row LIMIT ?",
                (after_row, limit),
            ).fetchall()
        return [_stored(r) for r in rows]

    def refused_due(self, limit: int) -> list[StoredMessage]:
        """Refused rows whose retry time has come, oldest first; they count as handed over again
        (their retry time is cleared until the broker answers)."""
        now = self._mono()
        with self._tx(durable=False):
            rows = self._db.execute(
                "SELECT row, msg_id, kind, topic, payload, qos, retain, props, created, ttl, born"
                " FROM outbox WHERE retry_at IS NOT NULL AND retry_at <= ? ORDER BY row LIMIT ?",
                (now, limit),
            ).fetchall()
            self._db.executemany("UPDATE outbox SET retry_at = NULL WHERE row = ?", ((r[0],) for r in rows))
        return [_stored(r) for r in rows]

    def refuse_again(self, rows: Iterable[int]) -> None:
        """Rows taken by `refused_due` that could not be handed over: due again now."""
        now = self._mono()
        with self._tx(durable=False):
            self._db.executemany("UPDATE outbox SET retry_at = ? WHERE row = ?", ((now, r) for r in rows))

    def next_retry_s(self) -> float | None:
        """Seconds until the next refused row is due (0 if one is), or None if none waits."""
        with self._lock:
            at = self._db.execute("SELECT MIN(retry_at) FROM outbox WHERE retry_at IS NOT NULL").fetchone()[0]
        return None if at is None else max(0.0, float(at) - self._mono())

    def remaining_s(self, stored: StoredMessage) -> float | None:
        """Seconds `stored` has left to live (monotonic), or None if it never expires."""
        ttl = stored.message.ttl_s
        return None if ttl is None else ttl - (self._mono() - stored.born)

    def age_s(self, stored: StoredMessage) -> float:
        return self._mono() - stored.born

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
            self._settle_reports(events)
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
                self._note_lost("rejected", n, sum(s for _, s in found), found[0][0], found[-1][0])
        return n

    def refuse(self, rows: Iterable[int], *, retry_min_s: float, retry_max_s: float) -> list[tuple[str, int]]:
        """Rows the broker refused (e.g. an ACL: not authorized) stay, to be retried with backoff:
        `retry_min_s` doubling per refusal up to `retry_max_s`. The outbox's bounds still hold (drop-
        oldest and expiry take them like any row), so a refusal fixed later gets what is left.
        Returns (msg_id, refusals so far) per row still here."""
        rows = list(rows)
        now = self._mono()
        out: list[tuple[str, int]] = []
        with self._tx(durable=False):
            for row in rows:
                hit = self._db.execute("SELECT msg_id, refusals FROM outbox WHERE row = ?", (row,)).fetchone()
                if hit is None:
                    continue
                n = int(hit[1]) + 1
                delay = min(retry_max_s, retry_min_s * 2 ** min(n - 1, 30))
                self._db.execute(
                    "UPDATE outbox SET refusals = ?, retry_at = ? WHERE row = ?", (n, now + delay, row)
                )
                out.append((str(hit[0]), n))
            self._add("rejected_total", len(out))
        return out

    def _delete(self, rows: list[int]) -> int:
        marks = ",".join("?" * len(rows))
        size = self._db.execute(
            f"SELECT COALESCE(SUM(size), 0), COUNT(*) FROM outbox WHERE row IN ({marks})", rows
        ).fetchone()
        self._db.execute(f"DELETE FROM outbox WHERE row IN ({marks})", rows)
        self._add("bytes", -int(size[0]))
        return int(size[1])

    def checkpoint(self) -> None:
        """Fold the WAL into the database and truncate it (e.g. when the outbox has drained)."""
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ------------------------------------------------------------------ inspection

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
                drop_pending=int(
                    self._db.execute(
                        "SELECT COALESCE(SUM(count), 0) FROM losses WHERE reason = 'full' AND report_id IS NULL"
                    ).fetchone()[0]
                ),
                refused=int(
                    self._db.execute("SELECT COUNT(*) FROM outbox WHERE retry_at IS NOT NULL").fetchone()[0]
                ),
                wal_bytes=self.wal_bytes(),
                free_bytes=self.free_bytes(),
                storage=self.storage,
                storage_errors=self.storage_errors,
            )

    def depth(self) -> int:
        return self.stats().depth


def _proc_uptime() -> float | None:
    try:
        return float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _filesystem_bytes(directory: Path) -> int | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return int(st.f_blocks * st.f_frsize) or None


def default_outbox_path() -> Path:
    """$STATE_DIRECTORY (systemd StateDirectory=) or ~/.local/state/edge, as the settings document."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / "outbox.sqlite"
    return Path.home() / ".local" / "state" / "edge" / "outbox.sqlite"
