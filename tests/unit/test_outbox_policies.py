"""The outbox's two pure rules, without a database: the byte bound against the filesystem's free
space (and the reserve sized to a small filesystem), and the refused rows' retry backoff."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.mqtt import outbox_space
from edge.mqtt.outbox_refusals import retry_delay_s
from edge.mqtt.outbox_space import RESERVE_BYTES, WAL_MAX_BYTES, SpacePolicy


def test_the_bound_shrinks_to_what_the_filesystem_has_left_above_the_reserve() -> None:
    p = SpacePolicy(reserve_bytes=1000, wal_max_bytes=500)
    assert p.limit(10_000, used=0, free=None, free_pages=0) == 10_000  # free space unknown
    assert p.limit(10_000, used=0, free=1_000_000, free_pages=0) == 10_000
    assert p.limit(10_000, used=2000, free=3000, free_pages=500) == 2000 + 3000 + 500 - 1000
    assert p.limit(10_000, used=0, free=500, free_pages=0) == 0  # inside the reserve: never negative


def test_a_small_filesystem_gets_a_reserve_and_wal_bound_of_its_size(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(outbox_space, "filesystem_bytes", lambda d: 256 << 10)
    p = SpacePolicy.for_filesystem(tmp_path)
    assert (p.reserve_bytes, p.wal_max_bytes) == (32 << 10, 32 << 10)  # an eighth, not 4 MiB
    assert SpacePolicy.for_filesystem(tmp_path, reserve_bytes=7, wal_max_bytes=9) == SpacePolicy(7, 9)
    monkeypatch.setattr(outbox_space, "filesystem_bytes", lambda d: None)
    assert SpacePolicy.for_filesystem(tmp_path) == SpacePolicy(RESERVE_BYTES, WAL_MAX_BYTES)


def test_refusal_backoff_doubles_from_the_minimum_up_to_the_maximum() -> None:
    assert [retry_delay_s(n, 5.0, 300.0) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert retry_delay_s(10_000, 5.0, 300.0) == 300.0  # no overflow however often it was refused
