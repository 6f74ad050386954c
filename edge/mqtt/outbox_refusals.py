"""When a row the broker refused is tried again.

A PUBACK with a failure reason code (MQTT 5, >= 128: e.g. 135 "not authorized" when an ACL denies
the topic) does not delete the row: it stays, with a retry time (`retry_at`, monotonic) that doubles
per refusal from `retry_min_s` up to `retry_max_s`. The outbox's bounds still hold (drop-oldest and
expiry take refused rows like any other), so an ACL fixed later gets what is left. A row waiting for
its retry is not in flight: `next_batch` skips it, `refused_due` hands it back when its time comes.
A new process tries every refused row once more, in order (the ACL may have been fixed meanwhile).

Threading contract: `RefusalSchedule` has no lock and no transaction of its own; every method runs
on the outbox's connection, under its lock, the writing ones inside its transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from edge.mqtt.outbox_records import StoredMessage, _stored
from edge.mqtt.outbox_schema import ROW_COLUMNS


def retry_delay_s(refusals: int, retry_min_s: float, retry_max_s: float) -> float:
    """The wait before the next try of a row refused `refusals` times (1: the first refusal)."""
    return float(min(retry_max_s, retry_min_s * 2 ** min(refusals - 1, 30)))


class RefusalSchedule:
    """Columns `refusals` and `retry_at` of one outbox connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def refuse(
        self, rows: Iterable[int], now: float, retry_min_s: float, retry_max_s: float
    ) -> list[tuple[str, int]]:
        """Count a refusal of each row and set its retry time; (msg_id, refusals so far) per row
        still in the outbox (a row dropped or expired meanwhile is skipped)."""
        out: list[tuple[str, int]] = []
        for row in rows:
            hit = self._db.execute("SELECT msg_id, refusals FROM outbox WHERE row = ?", (row,)).fetchone()
            if hit is None:
                continue
            n = int(hit[1]) + 1
            delay = retry_delay_s(n, retry_min_s, retry_max_s)
            self._db.execute(
                "UPDATE outbox SET refusals = ?, retry_at = ? WHERE row = ?", (n, now + delay, row)
            )
            out.append((str(hit[0]), n))
        return out

    def take_due(self, now: float, limit: int) -> list[StoredMessage]:
        """Refused rows whose retry time has come, oldest first; their retry time is cleared (they
        count as handed over again until the broker answers)."""
        rows = self._db.execute(
            f"SELECT {ROW_COLUMNS} FROM outbox WHERE retry_at IS NOT NULL AND retry_at <= ? ORDER BY row LIMIT ?",
            (now, limit),
        ).fetchall()
        self._db.executemany("UPDATE outbox SET retry_at = NULL WHERE row = ?", ((r[0],) for r in rows))
        return [_stored(r) for r in rows]

    def due_again(self, rows: Iterable[int], now: float) -> None:
        """Rows taken by `take_due` that could not be handed over: due again at `now`."""
        self._db.executemany("UPDATE outbox SET retry_at = ? WHERE row = ?", ((now, r) for r in rows))

    def next_at(self) -> float | None:
        """The earliest retry time (monotonic), or None if no refused row waits."""
        at = self._db.execute("SELECT MIN(retry_at) FROM outbox WHERE retry_at IS NOT NULL").fetchone()[0]
        return None if at is None else float(at)

    def waiting(self) -> int:
        """Refused rows waiting for their retry."""
        return int(self._db.execute("SELECT COUNT(*) FROM outbox WHERE retry_at IS NOT NULL").fetchone()[0])

    def retry_all_now(self) -> None:
        """When a file opens: a new process tries every refused row once more, in order."""
        self._db.execute("UPDATE outbox SET retry_at = NULL WHERE retry_at IS NOT NULL")
