"""The fleet store: the view's schema in PostgreSQL, through psycopg 3 (the `[view]` extra).

Several `edge view` processes of one shared-subscription group write into one database: each
message reaches one of them, inserts are idempotent on the ids, and every page reads the whole
fleet. Search is PostgreSQL's full-text search over a generated `tsvector` column ('simple'
configuration: captions are short and their words are the colours and shapes people type, so no
stemming or stop words in the way).

This module is the only place psycopg is imported.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from edge.view.rows import NO_FILTER, Filters, ResultRow
from edge.view.schema import RESULT_COLS
from edge.view.store import ViewStore

# matches below which a search reads them all through the index and sorts them
RARE = 2000


class PostgresViewStore(ViewStore):
    dialect = "postgresql"
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._db = psycopg.connect(url, autocommit=True)
        self._migrate()

    def _migrate(self) -> None:
        # two processes opening one new database at once: one migrates, the other waits for it
        with self._db.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(764201)")
            try:
                super()._migrate()
            finally:
                cur.execute("SELECT pg_advisory_unlock(764201)")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(sql, tuple(params))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._db.transaction():
            yield

    def _index_search(self, result_id: str, text: str) -> None:
        """Nothing to do: `tsv` is a generated column of the row itself."""

    def _search_where(self, query: str) -> tuple[str, list[Any]]:
        return "tsv @@ plainto_tsquery('simple', %s)", [query]

    def search(
        self, query: str, f: Filters = NO_FILTER, *, limit: int = 50, offset: int = 0
    ) -> list[ResultRow]:
        """A common word is found fastest walking the newest results back until a page is full; a rare
        one through the GIN index and a sort of its few matches. The planner cannot tell the two
        apart (it walked a million rows for a word found nowhere: 2.5 s), so a capped count decides."""
        if not query.split():
            return []
        where, params = self._where(f)
        sql = self._sql(f"SELECT COUNT(*) FROM (SELECT 1 FROM results WHERE {where} AND tsv @@ plainto_tsquery("
                        f"'simple', {{p}}) LIMIT {{p}}) AS c")  # fmt: skip
        with self._lock, self._db.transaction():
            self._db.execute("SET LOCAL enable_indexscan = off")  # the count through the GIN index
            found = int(self._db.execute(sql, (*params, query, RARE)).fetchone()[0])  # type: ignore[index]
        if found >= RARE:
            return super().search(query, f, limit=limit, offset=offset)
        rows = self._rows(
            f"WITH m AS MATERIALIZED (SELECT {RESULT_COLS} FROM results WHERE {where}"
            " AND tsv @@ plainto_tsquery('simple', {p}))"
            " SELECT * FROM m ORDER BY at DESC, id DESC LIMIT {p} OFFSET {p}",
            [*params, query, limit, offset],
        )
        return [self._result(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
