"""How much of the filesystem the outbox may use: the reserve it keeps free, the bound on its
write-ahead log, and the byte bound in force now.

A disk that fills under SQLite fails its writes in the middle of a transaction, and the WAL and
SQLite's temporary pages need room of their own to work at all. So the outbox keeps `reserve_bytes`
of the filesystem free and measures its own `max_bytes` against the real free space: drop-oldest
acts before the filesystem fills, not after. Both the reserve and the WAL bound are sized to the
filesystem the outbox is on (a fixed 4 MiB reserve on a 256 KiB filesystem would refuse every write
while the disk is mostly empty).

Pure arithmetic and two `statvfs` reads, no database: the outbox asks, under its own lock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

WAL_MAX_BYTES = 1 << 20  # the write-ahead log is checkpointed and truncated around this size
RESERVE_BYTES = 4 << 20  # kept free on the filesystem: the WAL's bound, SQLite's temporary pages, slack
# On a small filesystem the reserve and the WAL bound are this fraction of its size instead (a fixed
# 4 MiB on a 256 KiB filesystem would refuse every write while the disk is mostly empty).
SMALL_FS_SHARE = 8


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem of `directory`."""
    st = os.statvfs(directory)
    return int(st.f_bavail * st.f_frsize)


def filesystem_bytes(directory: Path) -> int | None:
    """The size of the filesystem of `directory`, or None where it cannot be read."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return int(st.f_blocks * st.f_frsize) or None


@dataclass(frozen=True)
class SpacePolicy:
    """The reserve kept free on the filesystem and the WAL's bound, fixed when the outbox opens."""

    reserve_bytes: int
    wal_max_bytes: int

    @classmethod
    def for_filesystem(
        cls, directory: Path, *, reserve_bytes: int | None = None, wal_max_bytes: int | None = None
    ) -> SpacePolicy:
        """Sized to the filesystem of `directory` (see SMALL_FS_SHARE), unless given."""
        fs_bytes = filesystem_bytes(directory)
        share = fs_bytes // SMALL_FS_SHARE if fs_bytes else None
        return cls(
            reserve_bytes=int(
                reserve_bytes if reserve_bytes is not None else min(RESERVE_BYTES, share or RESERVE_BYTES)
            ),
            wal_max_bytes=int(
                wal_max_bytes if wal_max_bytes is not None else min(WAL_MAX_BYTES, share or WAL_MAX_BYTES)
            ),
        )

    def limit(self, max_bytes: int, *, used: int, free: int | None, free_pages: int) -> int:
        """The bound in force now: `max_bytes`, or less when the filesystem has less to give.

        The rows held (`used`) plus the free space (the filesystem's, `free`, and SQLite's free pages
        in bytes, `free_pages`), minus the reserve that keeps the WAL and SQLite's own work from ever
        meeting a full disk. An unknown free space (`free` None) leaves `max_bytes`.
        """
        if free is None:
            return max_bytes
        room = used + free + free_pages - self.reserve_bytes
        return max(0, min(max_bytes, room))
