"""What `edge view` keeps: results, their pictures, events and each device's latest status, state
and health, in SQLite (the embedded default) or PostgreSQL (a fleet's shared store).

Both stores have one schema and one set of queries; they differ only in SQL dialect (placeholders,
blobs, full-text search), so the page cannot show one thing on SQLite and another on PostgreSQL. The
schema is versioned: `MIGRATIONS` are applied in order, each in its own transaction, and the version
reached is kept in `schema_version`, so a store written by an older `edge view` is brought forward on
open and never rebuilt.

Writes are idempotent (a result's `id` and an event's `id` are primary keys): redelivery under
at-least-once, or several `edge view` processes of one shared-subscription group writing into one
PostgreSQL database, store each message once.

Threading: one connection and one lock per store; paho's thread writes, the HTTP server's threads
read. Pages are small (a page of 50 rows), so the lock is held for milliseconds.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge.consumer.models import EventPayload, HealthPayload, ResultPayload, StatePayload, parse_result_id
from edge.consumer.tracker import Gap
from edge.core.messages import iso_epoch
from edge.view import schema
from edge.view.rows import NO_FILTER, DeviceRow, EventRow, Filters, ResultRow, search_text

__all__ = [
    "DeviceRow",
    "EventRow",
    "Filters",
    "ResultRow",
    "SqliteViewStore",
    "ViewStore",
    "open_store",
    "search_text",
]


class ViewStore(ABC):
    """The store's operations in portable SQL; subclasses give the connection and the dialect."""

    dialect: str
    placeholder: str  # "?" (sqlite3) or "%s" (psycopg)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    # ---- the dialect

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; return the cursor."""

    @abstractmethod
    @contextmanager
    def _transaction(self) -> Iterator[None]: ...

    @abstractmethod
    def _index_search(self, result_id: str, text: str) -> None:
        """Make a stored result findable (SQLite's FTS table; PostgreSQL's column is generated)."""

    @abstractmethod
    def _search_where(self, query: str) -> tuple[str, list[Any]]:
        """A WHERE clause (on table `results`) matching every word of `query`."""

    @abstractmethod
    def close(self) -> None: ...

    # ---- schema

    def _migrate(self) -> None:
        with self._lock, self._transaction():
            self._execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
        for version, statements in enumerate(schema.MIGRATIONS[self.dialect], start=1):
            if version <= current:
                continue
            with self._lock, self._transaction():
                for sql in statements:
                    self._execute(sql)
                self._execute(f"INSERT INTO schema_version VALUES ({self.placeholder})", (version,))

    def schema_version(self) -> int:
        with self._lock:
            row = self._execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _sql(self, sql: str) -> str:
        return sql.replace("{p}", self.placeholder)

    # ---- writes (paho's thread)

    def add_result(self, result: ResultPayload, received_at: float | None = None) -> bool:
        """Store a result unless its id is stored already; True if it was new."""
        rid = parse_result_id(result.id)
        if rid is None:
            raise ValueError(f"result id {result.id!r} is not <device>-<boot>-<seq>")
        now = time.time() if received_at is None else received_at
        at = iso_epoch(result.captured_at) or iso_epoch(result.published_at) or now
        text = search_text(result)
        row = (result.id, result.device, rid.boot, result.seq, result.camera, result.task, at, now, result.text,
               text, result.model_dump_json())  # fmt: skip
        sql = self._sql(
            "INSERT INTO results (id, device, boot, seq, camera, task, at, received_at, text, search, payload)"
            " VALUES ({p},{p},{p},{p},{p},{p},{p},{p},{p},{p},{p}) ON CONFLICT (id) DO NOTHING"
        )
        with self._lock, self._transaction():
            new = bool(self._execute(sql, row).rowcount == 1)
            if new:
                self._index_search(result.id, text)
                self._newest(result.device, result.camera, result.task, at, result.id, pictured=False)
                # pictures that arrived before their result (another subscriber thread, a replay)
                n = self._execute(
                    self._sql("SELECT COUNT(*) FROM images WHERE result_id = {p}"), (result.id,)
                )
                count = int(n.fetchone()[0])
                if count:
                    self._execute(
                        self._sql("UPDATE results SET images = {p} WHERE id = {p}"), (count, result.id)
                    )
                    self._newest(result.device, result.camera, result.task, at, result.id, pictured=True)
        return new

    def _newest(self, device: str, camera: str, task: str, at: float, rid: str, *, pictured: bool) -> None:
        """Record a result as its camera's newest (with a picture) when it is newer than the one kept."""
        if pictured:
            sql = (
                "UPDATE cameras SET pictured_at = {p}, pictured_id = {p} WHERE device = {p} AND camera = {p}"
                " AND task = {p} AND (pictured_at IS NULL OR pictured_at <= {p})"
            )
            self._execute(self._sql(sql), (at, rid, device, camera, task, at))
            return
        sql = (
            "INSERT INTO cameras (device, camera, task, latest_at, latest_id) VALUES ({p},{p},{p},{p},{p})"
            " ON CONFLICT (device, camera, task) DO UPDATE SET latest_at = excluded.latest_at,"
            " latest_id = excluded.latest_id WHERE cameras.latest_at <= excluded.latest_at"
        )
        self._execute(self._sql(sql), (device, camera, task, at, rid))

    def add_image(self, result_id: str, jpeg: bytes, part: int = 0, received_at: float | None = None) -> bool:
        now = time.time() if received_at is None else received_at
        insert = self._sql(
            "INSERT INTO images (result_id, part, jpeg, bytes, received_at) VALUES ({p},{p},{p},{p},{p})"
            " ON CONFLICT (result_id, part) DO NOTHING"
        )
        with self._lock, self._transaction():
            new = bool(self._execute(insert, (result_id, part, jpeg, len(jpeg), now)).rowcount == 1)
            if new:
                self._execute(
                    self._sql("UPDATE results SET images = images + 1 WHERE id = {p}"), (result_id,)
                )
                row = self._execute(
                    self._sql("SELECT device, camera, task, at FROM results WHERE id = {p}"), (result_id,)
                ).fetchone()
                if row is not None:
                    self._newest(
                        str(row[0]), str(row[1]), str(row[2]), float(row[3]), result_id, pictured=True
                    )
        return new

    def add_event(self, event: EventPayload, received_at: float | None = None) -> bool:
        now = time.time() if received_at is None else received_at
        at = iso_epoch(event.at) or now
        sql = self._sql(
            "INSERT INTO events (id, device, at, event, reason, camera, task, received_at, payload)"
            " VALUES ({p},{p},{p},{p},{p},{p},{p},{p},{p}) ON CONFLICT (id) DO NOTHING"
        )
        row = (event.id, event.device, at, event.event, event.reason, event.camera, event.task, now,
               event.model_dump_json())  # fmt: skip
        with self._lock, self._transaction():
            return bool(self._execute(sql, row).rowcount == 1)

    def set_device(
        self,
        device: str,
        *,
        status: str | None = None,
        state: StatePayload | None = None,
        health: HealthPayload | None = None,
        at: float | None = None,
    ) -> None:
        """Update what is known of a device; fields left None keep their stored value."""
        now = time.time() if at is None else at
        values = (
            device,
            status,
            state.model_dump_json() if state else None,
            health.model_dump_json() if health else None,
            now,
        )
        sql = self._sql(
            "INSERT INTO devices (device, status, state, health, updated) VALUES ({p},{p},{p},{p},{p})"
            " ON CONFLICT (device) DO UPDATE SET status = COALESCE(excluded.status, devices.status),"
            " state = COALESCE(excluded.state, devices.state),"
            " health = COALESCE(excluded.health, devices.health), updated = excluded.updated"
        )
        with self._lock, self._transaction():
            self._execute(sql, values)

    # ---- reads (the HTTP server's threads)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._execute(self._sql(sql), params).fetchall())

    @staticmethod
    def _result(row: Sequence[Any]) -> ResultRow:
        return ResultRow(str(row[0]), str(row[1]), int(row[2]), int(row[3]), str(row[4]), str(row[5]),
                         float(row[6]), str(row[7]), int(row[8]), str(row[9]))  # fmt: skip

    @staticmethod
    def _event(row: Sequence[Any]) -> EventRow:
        return EventRow(str(row[0]), str(row[1]), float(row[2]), str(row[3]), str(row[4]),
                        row[5], row[6], str(row[7]))  # fmt: skip

    def _where(self, f: Filters) -> tuple[str, list[Any]]:
        """The filters as a WHERE clause; `results` and `events` share the columns it names."""
        clauses: list[str] = ["1=1"]
        params: list[Any] = []
        for column, value in (("device", f.device), ("camera", f.camera), ("task", f.task)):
            if value:
                clauses.append(f"{column} = {{p}}")
                params.append(value)
        if f.since is not None:
            clauses.append("at >= {p}")
            params.append(f.since)
        if f.until is not None:
            clauses.append("at < {p}")
            params.append(f.until)
        return " AND ".join(clauses), params

    def results(self, f: Filters = NO_FILTER, *, limit: int = 50, offset: int = 0) -> list[ResultRow]:
        where, params = self._where(f)
        rows = self._rows(
            f"SELECT {schema.RESULT_COLS} FROM results WHERE {where} ORDER BY at DESC, id DESC LIMIT {{p}} OFFSET {{p}}",
            [*params, limit, offset],
        )
        return [self._result(r) for r in rows]

    def events(self, f: Filters = NO_FILTER, *, limit: int = 50) -> list[EventRow]:
        where, params = self._where(f)
        rows = self._rows(
            f"SELECT {schema.EVENT_COLS} FROM events WHERE {where} ORDER BY at DESC, id DESC LIMIT {{p}}",
            [*params, limit],
        )
        return [self._event(r) for r in rows]

    def result(self, result_id: str) -> ResultRow | None:
        rows = self._rows(f"SELECT {schema.RESULT_COLS} FROM results WHERE id = {{p}}", (result_id,))
        return self._result(rows[0]) if rows else None

    def event(self, event_id: str) -> EventRow | None:
        rows = self._rows(f"SELECT {schema.EVENT_COLS} FROM events WHERE id = {{p}}", (event_id,))
        return self._event(rows[0]) if rows else None

    def image(self, result_id: str, part: int = 0) -> bytes | None:
        rows = self._rows("SELECT jpeg FROM images WHERE result_id = {p} AND part = {p}", (result_id, part))
        return bytes(rows[0][0]) if rows else None

    def search(
        self, query: str, f: Filters = NO_FILTER, *, limit: int = 50, offset: int = 0
    ) -> list[ResultRow]:
        if not query.split():
            return []
        where, params = self._where(f)
        match, match_params = self._search_where(query)
        rows = self._rows(
            f"SELECT {schema.RESULT_COLS} FROM results WHERE {where} AND {match}"
            " ORDER BY at DESC, id DESC LIMIT {p} OFFSET {p}",
            [*params, *match_params, limit, offset],
        )
        return [self._result(r) for r in rows]

    def devices(self) -> list[DeviceRow]:
        rows = self._rows("SELECT device, status, state, health, updated FROM devices ORDER BY device")
        out = []
        for device, status, state, health, updated in rows:
            out.append(
                DeviceRow(
                    str(device),
                    status,
                    StatePayload.model_validate_json(state) if state else None,
                    HealthPayload.model_validate_json(health) if health else None,
                    float(updated),
                )
            )
        return out

    def cameras(self) -> list[tuple[str, str]]:
        """Every (device, camera) that has published a result, in order."""
        rows = self._rows("SELECT DISTINCT device, camera FROM cameras ORDER BY device, camera")
        return [(str(d), str(c)) for d, c in rows]

    def tasks(self) -> list[str]:
        return [str(t) for (t,) in self._rows("SELECT DISTINCT task FROM cameras ORDER BY task")]

    def latest(self, device: str, camera: str) -> tuple[ResultRow | None, ResultRow | None]:
        """The newest result of a camera, and the newest one with a picture (often the same)."""
        newest = self._rows(
            "SELECT latest_id FROM cameras WHERE device = {p} AND camera = {p} ORDER BY latest_at DESC LIMIT 1",
            (device, camera),
        )
        pictured = self._rows(
            "SELECT pictured_id FROM cameras WHERE device = {p} AND camera = {p} AND pictured_id IS NOT NULL"
            " ORDER BY pictured_at DESC LIMIT 1",
            (device, camera),
        )
        return (
            self.result(str(newest[0][0])) if newest else None,
            self.result(str(pictured[0][0])) if pictured else None,
        )

    def gaps(self, device: str) -> list[Gap]:
        rows = self._rows(schema.GAPS, (device,))
        return [Gap(str(d), int(b), int(first), int(last)) for d, b, first, last in rows]

    def gaps_near(self, rows: Sequence[ResultRow]) -> list[Gap]:
        """The gaps that border these results (a page of them): for each (device, boot), the stored
        seqs from the one before the page's lowest to its highest, read through the seq index."""
        spans: dict[tuple[str, int], tuple[int, int]] = {}
        for r in rows:
            lo, hi = spans.get((r.device, r.boot), (r.seq, r.seq))
            spans[(r.device, r.boot)] = (min(lo, r.seq), max(hi, r.seq))
        found = []
        for (device, boot), (lo, hi) in spans.items():
            before = self._rows(
                "SELECT MAX(seq) FROM results WHERE device = {p} AND boot = {p} AND seq < {p}",
                (device, boot, lo),
            )
            start = int(before[0][0]) if before and before[0][0] is not None else lo
            seqs = [
                int(s)
                for (s,) in self._rows(
                    "SELECT seq FROM results WHERE device = {p} AND boot = {p} AND seq >= {p} AND seq <= {p}"
                    " ORDER BY seq",
                    (device, boot, start, hi),
                )
            ]
            found += [
                Gap(device, boot, a + 1, b - 1) for a, b in zip(seqs, seqs[1:], strict=False) if b > a + 1
            ]
        return found

    def count(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM results")[0][0])

    # ---- retention

    def prune(self, *, keep_days: float | None = None, max_image_bytes: int | None = None) -> tuple[int, int]:
        """Drop results, events and pictures received more than `keep_days` ago, then the oldest
        pictures until they take at most `max_image_bytes`; (results removed, pictures removed)."""
        results = images = 0
        with self._lock, self._transaction():
            if keep_days is not None:
                cutoff = time.time() - keep_days * 86400.0
                p = self.placeholder
                images += self._execute(f"DELETE FROM images WHERE received_at < {p}", (cutoff,)).rowcount
                self._prune_search(cutoff)
                results += self._execute(f"DELETE FROM results WHERE received_at < {p}", (cutoff,)).rowcount
                self._execute(f"DELETE FROM events WHERE received_at < {p}", (cutoff,))
                if results:
                    for sql in schema.REBUILD_CAMERAS:
                        self._execute(sql)
            if max_image_bytes is not None:
                total = int(self._execute("SELECT COALESCE(SUM(bytes), 0) FROM images").fetchone()[0])
                if total > max_image_bytes:
                    rows = self._execute(
                        "SELECT result_id, part, bytes FROM images ORDER BY received_at, result_id, part"
                    ).fetchall()
                    for result_id, part, size in rows:
                        if total <= max_image_bytes:
                            break
                        p = self.placeholder
                        self._execute(
                            f"DELETE FROM images WHERE result_id = {p} AND part = {p}", (result_id, part)
                        )
                        self._execute(f"UPDATE results SET images = images - 1 WHERE id = {p}", (result_id,))
                        total -= int(size)
                        images += 1
                    for sql in schema.REBUILD_CAMERAS:
                        self._execute(sql)
        return results, images

    def _prune_search(self, cutoff: float) -> None:  # noqa: B027 (a hook; PostgreSQL's entries are in the row)
        """Remove search entries of results about to be deleted."""


class SqliteViewStore(ViewStore):
    """The embedded store: one file, WAL, FTS5 for search."""

    dialect = "sqlite"
    placeholder = "?"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(sql, tuple(params))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _index_search(self, result_id: str, text: str) -> None:
        self._db.execute("INSERT INTO results_fts (id, search) VALUES (?, ?)", (result_id, text))

    def _search_where(self, query: str) -> tuple[str, list[Any]]:
        return "id IN (SELECT id FROM results_fts WHERE results_fts MATCH ?)", [_fts_phrase(query)]

    def search(
        self, query: str, f: Filters = NO_FILTER, *, limit: int = 50, offset: int = 0
    ) -> list[ResultRow]:
        """Newest stored first, walking FTS5's index backwards: a word found in most of a million
        captions costs a page of rows, not a sort of every match."""
        if not query.split():
            return []
        where, params = self._where(f)
        cols = ", ".join(f"r.{c.strip()}" for c in schema.RESULT_COLS.split(","))
        rows = self._rows(
            f"SELECT {cols} FROM results_fts JOIN results r ON r.id = results_fts.id"
            f" WHERE results_fts MATCH ? AND {where}"
            " ORDER BY results_fts.rowid DESC LIMIT ? OFFSET ?",
            [_fts_phrase(query), *params, limit, offset],
        )
        return [self._result(r) for r in rows]

    def _prune_search(self, cutoff: float) -> None:
        self._db.execute(
            "DELETE FROM results_fts WHERE id IN (SELECT id FROM results WHERE received_at < ?)", (cutoff,)
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _fts_phrase(query: str) -> str:
    """Every word as a quoted FTS5 string: the user's text is never FTS5 syntax."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in query.split())


def open_store(where: str) -> ViewStore:
    """A store from `--store`: a `postgresql://` URL, or a path to an SQLite file."""
    if where.startswith(("postgresql://", "postgres://")):
        from edge.view.store_pg import PostgresViewStore

        return PostgresViewStore(where)
    return SqliteViewStore(where)
