"""Outbox faults on a real SQLite file: a full disk, a damaged page, clock steps, two daemons with one
device_id. Each test failed on the outbox before these faults were handled."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from edge.mqtt.outbox import BOOT_RANDOM_BITS, Outbox
from edge.mqtt.outbox_records import DropReport, OutboxMessage, StorageError


def msg(i: int, size: int = 100, **kw: object) -> OutboxMessage:
    return OutboxMessage(topic="edge/d/t/result", payload=b"x" * size, msg_id=f"m{i}", **kw)  # type: ignore[arg-type]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event(report: DropReport) -> OutboxMessage:
    return OutboxMessage(topic="edge/d/event", payload=b"{}", msg_id=f"ev-{report.reason}", kind="event")


# ---------------------------------------------------------------- full disk


def test_disk_full_raises_storage_error_and_the_outbox_stays_usable(tmp_path: Path) -> None:
    """SQLITE_FULL at INSERT or COMMIT: a clean rollback, a typed error, no stuck transaction."""
    with Outbox(tmp_path / "o.db", 1 << 30, reserve_bytes=0) as ob:
        ob.begin_boot()
        pages = ob._db.execute("PRAGMA page_count").fetchone()[0]
        ob._db.execute(f"PRAGMA max_page_count={pages + 2}")  # the disk is nearly full
        stored = 0
        with pytest.raises(StorageError) as info:
            for _ in range(100):
                ob.enqueue_numbered(lambda s: msg(s, size=3000))
                stored += 1
        assert info.value.full
        assert not ob._db.in_transaction
        depth = ob.stats().depth
        assert depth == stored  # what was committed is there; the failed one is not
        ob._db.execute("PRAGMA max_page_count=1073741823")  # space returns
        seq, _ = ob.enqueue_numbered(lambda s: msg(s, size=3000))
        assert seq == stored + 1  # the failed write used no number: no gap
        assert ob.stats().depth == depth + 1


def test_drop_oldest_acts_before_the_filesystem_fills(tmp_path: Path) -> None:
    """outbox_max_mb is measured against the real free space, minus a reserve."""
    free = [10_000_000]
    one = msg(0).size
    with Outbox(tmp_path / "o.db", 1 << 30, reserve_bytes=1_000_000, free_bytes=lambda: free[0]) as ob:
        for i in range(20):
            ob.enqueue(msg(i))
        assert ob.stats().depth == 20
        free[0] = 1_000_000 - 5 * one  # something else ate into the reserve: ours must shrink by 5+1
        ob.enqueue(msg(20))
        st = ob.stats()
        assert st.dropped_total == 6 and st.bytes <= 15 * one
        ob.delete(s.row for s in ob.next_batch(0, 1000))
        free[0] = 500_000  # below the reserve with nothing left to drop: a clear error, nothing stored
        with pytest.raises(StorageError, match="disk full") as info:
            ob.enqueue(msg(99))
        assert info.value.full and info.value.free_bytes == 500_000
        free[0] = 10_000_000
        report = ob.report_drops(event)
        assert report is not None and (report.reason, report.count) == ("full", 6)


def test_wal_stays_bounded(tmp_path: Path) -> None:
    """Checkpoints keep the write-ahead log near its bound however many messages pass through."""
    wal_max = 256 << 10
    path = tmp_path / "o.db"
    peak = 0
    with Outbox(path, 1 << 30, wal_max_bytes=wal_max, synchronous="NORMAL") as ob:
        for i in range(3000):
            row = ob.enqueue(msg(i, size=1000))
            assert row is not None
            if i % 3 == 0:
                ob.delete([row])
            peak = max(peak, ob.wal_bytes())
        ob.checkpoint()
        assert ob.wal_bytes() == 0
    print(f"WAL peak {peak} bytes with wal_max_bytes={wal_max} over 3000 x 1 kB messages")
    assert peak <= wal_max + (64 << 10)


# ---------------------------------------------------------------- damaged file


def _damage_page(path: Path, page: int) -> None:
    with path.open("r+b") as f:
        f.seek(4096 * page)
        f.write(os.urandom(4096))


def test_damaged_page_found_on_open_moved_aside_and_losses_reported(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, 1 << 30) as ob:
        boot = ob.begin_boot()
        for _ in range(200):
            ob.enqueue_numbered(lambda s: msg(s, size=300))
    assert path.stat().st_size > 4096 * 4
    _damage_page(path, 2)  # the recipe in notes/faults.md: dd ... bs=4096 seek=2 count=1
    with Outbox(path, 1 << 30) as ob:
        assert ob.damage is not None
        if ob.damage.last_seq is not None:  # the meta page survived: the boot and its last seq are kept
            assert (ob.damage.boot, ob.damage.last_seq) == (boot, 200)
        assert ob.stats().depth == 0
        got = ob.report_drops(event, "damaged")
        assert got is not None and got.count in (-1, *range(1, 201))
        assert (
            ob.begin_boot() >> BOOT_RANDOM_BITS > boot >> BOOT_RANDOM_BITS
        )  # ids continue after the old file's
        for i in range(10):  # and it takes writes again
            ob.enqueue(msg(i))
    assert list(tmp_path.glob("o.db.corrupt-*"))


def test_damage_found_at_a_write_is_recovered(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, 1 << 30) as ob:
        for i in range(200):
            ob.enqueue(msg(i, size=300))
        ob.checkpoint()
        ob._check = lambda: None  # type: ignore[method-assign]
        _damage_page(path, 3)
        ob._db.execute("PRAGMA cache_size=0")
        with pytest.raises(StorageError):
            for i in range(300):
                ob.enqueue(msg(1000 + i, size=300))
                ob.delete([s.row for s in ob.next_batch(0, 5)])
        assert ob.damage is not None
        ob.enqueue(msg(5000))  # the next write goes into a fresh file
        assert [s.message.msg_id for s in ob.next_batch(0, 10)] == ["m5000"]


# ---------------------------------------------------------------- clock steps


def test_wall_clock_steps_never_expire_a_row(tmp_path: Path) -> None:
    wall, mono = Clock(1_800_000_000.0), Clock(100.0)
    path = tmp_path / "o.db"
    with Outbox(path, 1 << 30, clock=wall, monotonic=mono, kernel_boot_id="k1") as ob:
        ob.enqueue(msg(0, ttl_s=60))
        wall.now += 2 * 86400  # NTP steps forward two days
        assert [s.message.msg_id for s in ob.next_batch(0, 10)] == ["m0"]
        wall.now -= 4 * 86400  # and back
        (stored,) = ob.next_batch(0, 10)
        mono.now += 30
        left = ob.remaining_s(stored)
        assert left is not None and 29 <= left <= 31  # the MQTT expiry carries what is really left
    # A restart under a clock two days behind, within the same kernel boot: still there.
    wall.now -= 2 * 86400
    mono.now += 10
    with Outbox(path, 1 << 30, clock=wall, monotonic=mono, kernel_boot_id="k1") as ob:
        assert [s.message.msg_id for s in ob.next_batch(0, 10)] == ["m0"]
        mono.now += 25  # 65 s of its 60 s life: now it expires, and says so
        assert ob.next_batch(0, 10) == []
        got = ob.report_drops(event, "expired")
        assert got is not None and (got.count, got.first_id) == (1, "m0")


def test_age_restarts_after_a_reboot_and_v1_rows_keep_their_ttl(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    mono = Clock(1000.0)
    with Outbox(path, 1 << 30, monotonic=mono, kernel_boot_id="k1") as ob:
        ob.enqueue(msg(0, ttl_s=60))
    # A v1 row: only a wall-clock deadline, written by the old code under a clock 2 days behind.
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO outbox(msg_id, kind, topic, payload, qos, retain, created, expires_at, size)"
        " VALUES ('old', 'result', 't', x'00', 1, 0, 1000.0, 1060.0, 65)"
    )
    db.commit()
    db.close()
    mono.now = 5.0  # rebooted: the monotonic clock starts again
    with Outbox(path, 1 << 30, monotonic=mono, kernel_boot_id="k2") as ob:
        assert [s.message.msg_id for s in ob.next_batch(0, 10)] == ["m0", "old"]
        assert [s.message.ttl_s for s in ob.next_batch(0, 10)] == [60, 60]


# ---------------------------------------------------------------- identity


def test_two_outboxes_started_in_the_same_second_give_different_boots(tmp_path: Path) -> None:
    wall = Clock(1_800_000_000.0)
    boots = set()
    for i in range(50):  # fifty daemons with one device_id, fifty outboxes, one second
        with Outbox(tmp_path / f"o{i}.db", 1 << 20, clock=wall) as ob:
            boots.add(ob.begin_boot())
    assert len(boots) == 50


def test_boots_increase_whatever_the_clock_does(tmp_path: Path) -> None:
    wall = Clock(1_800_000_000.0)
    path = tmp_path / "o.db"
    seen = []
    for step in (0, -86400, -86400 * 365 * 50, +10, 0):
        wall.now += step
        with Outbox(path, 1 << 20, clock=wall) as ob:
            seen.append(ob.begin_boot())
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


def test_damage_that_hides_the_row_count_still_names_the_boot_and_its_last_seq(tmp_path: Path) -> None:
    """Page 1 (schema) overwritten: the rows cannot be counted, but the meta table still reads, so the
    `outbox_damaged` event can say which boot lost results up to which seq (the fault soak's case)."""
    path = tmp_path / "o.db"
    with Outbox(path, 1 << 30) as ob:
        boot = ob.begin_boot()
        for _ in range(50):
            ob.enqueue_numbered(lambda s: msg(s, size=300))
    _damage_page(path, 1)
    with Outbox(path, 1 << 30) as ob:
        assert ob.damage is not None and ob.damage.messages is None
        assert (ob.damage.boot, ob.damage.last_seq) == (boot, 50)


def test_a_monotonic_clock_off_the_kernels_uptime_restarts_ages_instead_of_expiring(tmp_path: Path) -> None:
    """Under a clock shim (libfaketime shifts CLOCK_MONOTONIC too) the rows were stamped two days
    "ago" on a clock that is not this process's: sanity-checked against the kernel's time since
    boot, their ages restart; nothing expires at start."""
    path = tmp_path / "o.db"
    uptime = Clock(200_000.0)
    mono = Clock(200_000.0 - 2 * 86400)  # the shim: two days behind the kernel
    with Outbox(path, 1 << 30, monotonic=mono, kernel_boot_id="k1", uptime=uptime) as ob:
        for i in range(15):
            ob.enqueue(msg(i, ttl_s=60))
    uptime.now += 10
    mono.now = uptime.now  # restarted without the shim
    with Outbox(path, 1 << 30, monotonic=mono, kernel_boot_id="k1", uptime=uptime) as ob:
        assert len(ob.next_batch(0, 100)) == 15 and ob.stats().expired_total == 0
        mono.now += 61  # real time passes: now they expire, and only now
        assert ob.next_batch(0, 100) == [] and ob.stats().expired_total == 15


def test_a_stamp_before_the_kernel_booted_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    mono = Clock(-100_000.0)  # monotonic time below 0: cannot be this kernel's
    with Outbox(path, 1 << 30, monotonic=mono, kernel_boot_id="k1") as ob:
        ob.enqueue(msg(0, ttl_s=60))
    mono.now = 500.0
    with Outbox(path, 1 << 30, monotonic=mono, kernel_boot_id="k1") as ob:
        assert [s.message.msg_id for s in ob.next_batch(0, 10)] == ["m0"]


def test_a_matching_uptime_keeps_ages_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    clock = Clock(5_000.0)
    with Outbox(path, 1 << 30, monotonic=clock, kernel_boot_id="k1", uptime=clock) as ob:
        ob.enqueue(msg(0, ttl_s=60))
    clock.now += 61
    with Outbox(path, 1 << 30, monotonic=clock, kernel_boot_id="k1", uptime=clock) as ob:
        assert ob.next_batch(0, 10) == [] and ob.stats().expired_total == 1
