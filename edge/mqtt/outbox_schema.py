"""The outbox file's layout: its tables, its durable counters, the pragmas it is opened with, and
the upgrades that bring a file written by an older version up to date.

Kept apart from `outbox.py` (the store's transactions) so the format of the file on disk, which
outlives any one version of the daemon, is read in one place. Nothing here takes a lock: every
function is called by the outbox with its connection, under its lock, most inside its transaction.
"""

from __future__ import annotations

import sqlite3

# Why rows can be lost (the causes of the loss ledger, `outbox_losses`), and the meta-key prefix of
# each cause's pending report in files written before the ledger ("drop" kept from v1 files).
LOSS_PREFIX = {"full": "drop", "expired": "expire", "rejected": "reject", "damaged": "damage"}

SCHEMA = """
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

# The integer counters of the meta table (the `*_pending*` ones only as old files left them: the
# loss ledger replaced them, `carry_pending_losses` empties them).
COUNTERS = (
    "boot",
    "seq",
    "bytes",
    "dropped_total",
    "expired_total",
    "rejected_total",
    *(f"{p}_pending" for p in LOSS_PREFIX.values()),
    *(f"{p}_pending_bytes" for p in LOSS_PREFIX.values()),
)

# The columns of a row as `outbox_records._stored` reads them.
ROW_COLUMNS = "row, msg_id, kind, topic, payload, qos, retain, props, created, ttl, born"


def meta_int(db: sqlite3.Connection, key: str) -> int:
    return int(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])


def meta_text(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def meta_set(db: sqlite3.Connection, key: str, value: int | str | None) -> None:
    db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))


def meta_add(db: sqlite3.Connection, key: str, delta: int) -> None:
    db.execute("UPDATE meta SET value = value + ? WHERE key = ?", (delta, key))


def configure(db: sqlite3.Connection, synchronous: str, wal_max_bytes: int) -> int:
    """Set a fresh connection up: WAL mode with a bounded WAL, the tables (created, or upgraded from
    an older file); returns the page size.

    The outbox opens the connection itself (autocommit, `isolation_level=None`: it writes its own
    BEGIN IMMEDIATE ... COMMIT; `check_same_thread=False`: one connection for every thread,
    serialised by its lock), so that a file found damaged here can still be salvaged through it.
    """
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=5000")
    # A bounded WAL: checkpoint every wal_max/2 and truncate the file back to wal_max afterwards.
    page = int(db.execute("PRAGMA page_size").fetchone()[0])
    db.execute(f"PRAGMA wal_autocheckpoint={max(8, wal_max_bytes // 2 // page)}")
    db.execute(f"PRAGMA journal_size_limit={wal_max_bytes}")
    db.executescript(SCHEMA)
    columns = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
    for col, kind in (("ttl", "REAL"), ("born", "REAL"), ("retry_at", "REAL")):
        if col not in columns:  # a file written before ages were monotonic / refusals were kept
            db.execute(f"ALTER TABLE outbox ADD COLUMN {col} {kind}")
    if "refusals" not in columns:
        db.execute("ALTER TABLE outbox ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0")
    return page


def settle_counters(db: sqlite3.Connection) -> None:
    """Inside the opening transaction: every counter exists, the byte counter matches the rows, and
    v1 rows (a wall-clock deadline) carry a time to live instead."""
    for key in COUNTERS:
        db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, 0)", (key,))
    # Self-heal the byte counter from the rows (cheap, once per open).
    total = db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0]
    meta_set(db, "bytes", int(total))
    # v1 rows carried a wall-clock deadline: keep what was left of it, never less than 0 s
    # of what it had, and never judge it by the clock that may have stepped since.
    db.execute(
        "UPDATE outbox SET ttl = MAX(expires_at - created, 0), expires_at = NULL"
        " WHERE ttl IS NULL AND expires_at IS NOT NULL"
    )


def carry_pending_losses(db: sqlite3.Connection) -> None:
    """Inside the opening transaction: pending loss reports of files written before the ledger (meta
    counters per cause) are carried into it."""
    for reason, p in LOSS_PREFIX.items():
        count = meta_int(db, f"{p}_pending")
        if count:
            db.execute(
                "INSERT INTO losses(reason, count, bytes, first_id, last_id) VALUES (?, ?, ?, ?, ?)",
                (
                    reason,
                    count,
                    meta_int(db, f"{p}_pending_bytes"),
                    meta_text(db, f"{p}_first_id"),
                    meta_text(db, f"{p}_last_id"),
                ),
            )
            meta_set(db, f"{p}_pending", 0)
            meta_set(db, f"{p}_pending_bytes", 0)
