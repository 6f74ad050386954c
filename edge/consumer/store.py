"""Results in SQLite, idempotently: the result `id` is the primary key, so a redelivered result
(at-least-once) is a no-op, and a consumer restarted with a persistent session can replay freely.

The store can also prove completeness on its own, across consumer restarts (the in-memory tracker
cannot): `gaps()` finds holes in each (device, boot)'s seqs with one SQL query.

    store = ResultStore("results.db")
    store.add(result)   # True: stored now; False: already there (a duplicate)
    store.gaps()        # [] when every boot's seqs are contiguous

Thread-safe (one connection, one lock): paho's thread may call `add` directly.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from edge.consumer.models import ResultPayload, parse_result_id
from edge.consumer.tracker import Gap

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id           TEXT PRIMARY KEY,
    device       TEXT    NOT NULL,
    boot         INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    camera       TEXT    NOT NULL,
    task         TEXT    NOT NULL,
    captured_at  TEXT,
    published_at TEXT    NOT NULL,
    text         TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    received_at  REAL    NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS results_by_boot ON results(device, boot, seq);
"""

_GAPS = """
SELECT device, boot, prev + 1, seq - 1 FROM (
    SELECT device, boot, seq, LAG(seq) OVER (PARTITION BY device, boot ORDER BY seq) AS prev FROM results
) WHERE prev IS NOT NULL AND seq > prev + 1
ORDER BY device, boot, seq
"""


class ResultStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, result: ResultPayload, received_at: float | None = None) -> bool:
        """Store a result unless its id is already stored; True if it was new."""
        rid = parse_result_id(result.id)
        if rid is None:
            raise ValueError(f"result id {result.id!r} is not <device>-<boot>-<seq>")
        row = (
            result.id,
            result.device,
            rid.boot,
            result.seq,
            result.camera,
            result.task,
            result.captured_at,
            result.published_at,
            result.text,
            result.model_dump_json(),
            time.time() if received_at is None else received_at,
        )
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?)", row)
            return cur.rowcount == 1

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def get(self, result_id: str) -> ResultPayload | None:
        with self._lock:
            row = self._db.execute("SELECT payload FROM results WHERE id = ?", (result_id,)).fetchone()
        return ResultPayload.model_validate_json(row[0]) if row else None

    def gaps(self) -> list[Gap]:
        """Holes between the lowest and highest stored seq of each (device, boot)."""
        with self._lock:
            rows = self._db.execute(_GAPS).fetchall()
        return [Gap(str(d), int(b), int(first), int(last)) for d, b, first, last in rows]
