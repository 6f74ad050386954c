"""How the outbox reads SQLite's errors, and what it keeps of a damaged file.

A failed write is one of three things: the filesystem is full (wait: space may come back), the file
is damaged (garbage in a page after a power cut on a cheap SD card, a truncated file: it will never
work again), or another I/O error. Only a damaged file is given up: it is moved aside, kept for a
post mortem (`<name>.corrupt-<unix time>`, with its -wal and -shm), and the outbox starts empty,
remembering what it can still read of the old one (how many messages, the boot and last `seq`) for
an `outbox_damaged` event: a consumer can tell which results of that boot it never got.

The file is checked (`PRAGMA quick_check`) when it opens and on the first write error that is not
"full", so damage in the middle of the file is found before the insert that touches it.

Nothing here locks: the outbox calls these under its lock, with its connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from edge.mqtt.outbox_records import Damage, StorageError

_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 11, 13, 26  # sqlite3.h result codes


class Damaged(sqlite3.DatabaseError):
    """quick_check found damage."""


def is_full(err: sqlite3.Error) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    return code == _SQLITE_FULL or "full" in str(err).lower()


def is_damage(err: sqlite3.Error) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)) or (
        "malformed" in str(err) or "not a database" in str(err)
    )


def quick_check(db: sqlite3.Connection) -> None:
    """A quick structural check of every page; raises `Damaged`."""
    verdict = db.execute("PRAGMA quick_check(1)").fetchone()[0]
    if verdict != "ok":
        raise Damaged(f"integrity check: {verdict}")


def storage_error(
    err: sqlite3.DatabaseError,
    *,
    db: sqlite3.Connection,
    path: Path,
    free: int | None,
    recover: Callable[[str], None],
) -> StorageError:
    """The `StorageError` a failed write becomes. A damaged file (by its error, or by a quick check
    after an I/O error) is replaced first (`recover`), so the caller's next try can succeed."""
    if is_full(err):
        return StorageError(f"outbox {path}: disk full ({err})", full=True, free_bytes=free)
    if is_damage(err) or not isinstance(err, sqlite3.OperationalError) or "I/O" in str(err):
        try:
            damaged = is_damage(err) or db.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok"
        except sqlite3.DatabaseError:
            damaged = True
        if damaged:
            try:
                recover(str(err))
            except (OSError, sqlite3.DatabaseError) as err2:
                return StorageError(
                    f"outbox {path}: damaged and cannot be replaced ({err2})", full=False, free_bytes=free
                )
            return StorageError(
                f"outbox {path}: damaged ({err}); moved aside, try again", full=False, free_bytes=free
            )
    return StorageError(f"outbox {path}: write failed ({err})", full=False, free_bytes=free)


def salvage(db: sqlite3.Connection | None, aside: Path) -> Damage:
    """What a damaged file held, as far as it can still be read (None where it cannot)."""
    messages, results, first, last = _salvage_counts(db)
    return Damage(
        aside, messages, results, first, last, _salvage_meta(db, "boot") or 0, _salvage_meta(db, "seq")
    )


def move_aside(path: Path, aside: Path) -> None:
    """The damaged file and its -wal and -shm, renamed to `aside` (same suffixes)."""
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            src.rename(f"{aside}{suffix}")


def _salvage_counts(db: sqlite3.Connection | None) -> tuple[int | None, int | None, str | None, str | None]:
    if db is None:
        return None, None, None, None
    try:
        n, results, first, last = db.execute(
            "SELECT COUNT(*), SUM(kind = 'result'), MIN(msg_id), MAX(msg_id) FROM outbox"
        ).fetchone()
        return int(n), int(results or 0), first, last
    except sqlite3.Error:
        return None, None, None, None


def _salvage_meta(db: sqlite3.Connection | None, key: str) -> int | None:
    """One counter of the meta table of a damaged file, or None where it cannot be read."""
    if db is None:
        return None
    try:
        return int(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])
    except (sqlite3.Error, TypeError, ValueError):
        return None
