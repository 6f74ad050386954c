"""The loss ledger: what the outbox lost, and for what cause, until a report of it is acknowledged.

Rows are lost four ways: dropped to make room (`full`, drop-oldest), expired unpublished, rejected
as unpublishable, or lost with a damaged file. Each loss is entered in table `losses`, which the
publisher turns into an event (`outbox_dropped`, `results_dropped`, `outbox_damaged`). A report
covers every loss of its cause since the last report the broker acknowledged: the ledger keeps an
entry until the PUBACK of a report that covered it arrives, so a report that is itself lost
(dropped, expired, refused for ever) leaves its range to the next one.

Threading contract: `LossLedger` has no lock and no transaction of its own. Every method runs on
the outbox's connection inside the outbox's transaction (under its lock), so a loss is recorded in
the same commit as the deletion that caused it, and a report is marked in the commit that stores it.
"""

from __future__ import annotations

import sqlite3

from edge.mqtt.outbox_records import DropReport
from edge.mqtt.outbox_schema import LOSS_PREFIX as LOSS_PREFIX
from edge.mqtt.outbox_schema import meta_add


class LossLedger:
    """Table `losses` of one outbox connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def note(self, reason: str, count: int, size: int, first: str | None, last: str | None) -> None:
        """Record a loss: merged into the newest entry of its cause not yet reported, if any.
        `count` -1: an unknown number (a damaged file that could not be read)."""
        if reason == "full":
            meta_add(self._db, "dropped_total", count)
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

    def due_report(self, reason: str) -> DropReport | None:
        """What a report for `reason` must cover now, or None if nothing was lost since the last one:
        every entry not yet settled, the ones earlier reports covered included."""
        entries = self._db.execute(
            "SELECT count, bytes, first_id, last_id, report_id FROM losses WHERE reason = ? ORDER BY id",
            (reason,),
        ).fetchall()
        new = [e for e in entries if e[4] is None]
        if not new:
            return None
        counts = [e[0] for e in entries]
        return DropReport(
            count=-1 if any(c < 0 for c in counts) else sum(counts),
            bytes=sum(e[1] for e in entries),
            first_id=next((e[2] for e in entries if e[2] is not None), None),
            last_id=next((e[3] for e in reversed(entries) if e[3] is not None), None),
            reason=reason,
            new=-1 if any(e[0] < 0 for e in new) else sum(e[0] for e in new),
            unacknowledged_reports=len({e[4] for e in entries if e[4] is not None}),
        )

    def mark_reported(self, reason: str, report_id: str) -> None:
        """The entries of `reason` not yet reported are covered by the report `report_id`."""
        self._db.execute(
            "UPDATE losses SET report_id = ? WHERE reason = ? AND report_id IS NULL", (report_id, reason)
        )

    def settle(self, msg_ids: list[str]) -> None:
        """Loss reports the broker acknowledged: what each covered leaves the ledger."""
        for msg_id in msg_ids:
            hit = self._db.execute(
                "SELECT reason, MAX(id) FROM losses WHERE report_id = ? GROUP BY reason", (msg_id,)
            ).fetchall()
            for reason, upto in hit:
                self._db.execute("DELETE FROM losses WHERE reason = ? AND id <= ?", (reason, upto))

    def pending(self, reason: str) -> int:
        """Messages lost for `reason` and not yet covered by an acknowledged report."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(count), 0) FROM losses WHERE reason = ?", (reason,)
        ).fetchone()
        return int(row[0])

    def unreported(self, reason: str) -> int:
        """Messages lost for `reason` that no report covers yet."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(count), 0) FROM losses WHERE reason = ? AND report_id IS NULL", (reason,)
        ).fetchone()
        return int(row[0])
