"""The durable outbox on a real SQLite file: order, sequences, bounds, expiry, restart, SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.mqtt.outbox import BOOT_RANDOM_BITS, Outbox
from edge.mqtt.outbox_records import DropReport, OutboxError, OutboxMessage

REPO = Path(__file__).resolve().parents[2]


def msg(i: int, size: int = 10, **kw: object) -> OutboxMessage:
    return OutboxMessage(topic="edge/d/t/result", payload=b"x" * size, msg_id=f"m{i}", **kw)  # type: ignore[arg-type]


def stored(row: int | None) -> int:
    """`enqueue`'s row (None only for a message larger than the whole bound)."""
    assert row is not None, "the message alone exceeds the bound"
    return row


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_fifo_order_and_delete_on_ack(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", 1 << 20) as ob:
        rows = [stored(ob.enqueue(msg(i))) for i in range(5)]
        batch = ob.next_batch(0, 3)
        assert [s.message.msg_id for s in batch] == ["m0", "m1", "m2"]
        assert [s.row for s in batch] == rows[:3]
        # The cursor (last row handed to the client) skips in-flight rows.
        assert [s.message.msg_id for s in ob.next_batch(batch[-1].row, 10)] == ["m3", "m4"]
        assert ob.delete([rows[1], rows[0]]) == 2
        assert ob.delete([rows[0]]) == 0  # a second PUBACK (redelivery) is harmless
        assert [s.message.msg_id for s in ob.next_batch(0, 10)] == ["m2", "m3", "m4"]
        assert ob.stats().depth == 3


def test_properties_round_trip(tmp_path: Path) -> None:
    m = OutboxMessage(
        topic="a/b",
        payload=b"{}",
        msg_id="x",
        kind="event",
        qos=0,
        retain=True,
        content_type="application/json",
        user_properties=(("device", "d1"), ("model", "phi")),
        ttl_s=3600.0,
    )
    with Outbox(tmp_path / "o.db", 1 << 20) as ob:
        ob.enqueue(m)
        (stored,) = ob.next_batch(0, 1)
    assert stored.message == m


def test_seq_allocated_in_the_enqueue_transaction_without_gaps(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", 1 << 20) as ob:
        ob.begin_boot()

        def build(seq: int) -> OutboxMessage:
            return msg(seq)

        def failing(seq: int) -> OutboxMessage:
            raise ValueError("payload could not be built")

        assert ob.enqueue_numbered(build)[0] == 1
        with pytest.raises(ValueError):
            ob.enqueue_numbered(failing)
        assert ob.enqueue_numbered(build)[0] == 2  # the failed build did not use a number
        assert [s.message.msg_id for s in ob.next_batch(0, 10)] == ["m1", "m2"]


def test_boot_counter_is_durable_and_resets_seq(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    clock = Clock(now=0.0)  # a board without a real-time clock: boots still count up
    with Outbox(path, 1 << 20, clock=clock) as ob:
        first = ob.begin_boot()
        assert first >> BOOT_RANDOM_BITS == 1
        ob.enqueue_numbered(msg)
        ob.enqueue_numbered(msg)
    with Outbox(path, 1 << 20, clock=clock) as ob:
        assert ob.boot == first
        assert ob.begin_boot() >> BOOT_RANDOM_BITS == 2
        assert ob.enqueue_numbered(msg)[0] == 1
        assert ob.stats().depth == 3  # the first boot's rows are still there to replay
    clock.now = 1_800_000_000.0
    with Outbox(path, 1 << 20, clock=clock) as ob:
        assert ob.begin_boot() >> BOOT_RANDOM_BITS == 1_800_000_000  # follows the wall clock when ahead
    clock.now = 1_000.0  # the clock steps back a long way: boots still count up
    with Outbox(path, 1 << 20, clock=clock) as ob:
        assert ob.begin_boot() >> BOOT_RANDOM_BITS == 1_800_000_001


def test_damaged_file_is_moved_aside_and_boots_stay_unique(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, 1 << 20) as ob:
        old_boot = ob.begin_boot()
    path.write_bytes(b"this is not a database" * 100)
    with Outbox(path, 1 << 20) as ob:
        assert ob.stats().depth == 0
        new_boot = ob.begin_boot()  # wall-clock high part, random low part: no id reuse after the loss
        assert new_boot != old_boot and new_boot >> BOOT_RANDOM_BITS >= old_boot >> BOOT_RANDOM_BITS
    assert len(list(tmp_path.glob("o.db.corrupt-*"))) >= 1
    assert any("damaged" in r.getMessage() for r in caplog.records)


def test_bound_drops_oldest_and_reports_once(tmp_path: Path) -> None:
    one = msg(0, size=100).size
    with Outbox(tmp_path / "o.db", one * 10) as ob:
        for i in range(15):
            ob.enqueue(msg(i, size=100))
        st = ob.stats()
        assert st.depth == 10 and st.bytes <= st.max_bytes
        assert st.dropped_total == 5 and st.drop_pending == 5
        assert [s.message.msg_id for s in ob.next_batch(0, 1)] == ["m5"]

        reports: list[DropReport] = []

        def event(report: DropReport) -> OutboxMessage:
            reports.append(report)
            n = len(reports)
            return OutboxMessage(topic="edge/d/event", payload=b"e" * 20, msg_id=f"ev{n}", kind="event")

        got = ob.report_drops(event)
        assert got == reports[0]
        assert (got.count, got.new, got.first_id, got.last_id) == (5, 5, "m0", "m4")
        assert got.bytes == 5 * one
        # The event itself needed room: that drop is the next report's business, not lost.
        st = ob.stats()
        assert st.drop_pending == 1 and st.dropped_total == 6
        assert ob.next_batch(0, 100)[-1].message.msg_id == "ev1"
        # The first report is not acknowledged yet: the second covers its range too.
        second = ob.report_drops(event)
        assert second is not None and (second.count, second.new, second.first_id) == (6, 1, "m0")
        assert second.unacknowledged_reports == 1
        ob.delete(s.row for s in ob.next_batch(0, 100))  # the broker took everything
        third = ob.report_drops(event)  # the second event's own eviction, alone: the rest is settled
        assert third is not None and (third.count, third.new) == (1, 1)
        ob.delete(s.row for s in ob.next_batch(0, 100))
        assert ob.report_drops(event) is None  # room now: nothing more to report
        assert ob.pending_losses("full") == 0


def test_a_lost_loss_report_is_covered_by_the_next(tmp_path: Path) -> None:
    """A report the broker never acknowledged (dropped, expired, refused) leaves its range to the
    next report of that cause; only an acknowledged report settles it."""
    clock = Clock()
    with Outbox(tmp_path / "o.db", 1 << 20, monotonic=clock) as ob:
        for i in range(3):
            ob.enqueue(msg(i, ttl_s=5))
        clock.now += 10
        assert ob.next_batch(0, 10) == []  # m0..m2 expired

        def event(n: int) -> Callable[[DropReport], OutboxMessage]:
            return lambda r: OutboxMessage(
                topic="edge/d/event", payload=b"{}", msg_id=f"ev{n}", kind="event", ttl_s=5
            )

        first = ob.report_drops(event(1), "expired")
        assert first is not None and (first.count, first.first_id, first.last_id) == (3, "m0", "m2")
        clock.now += 10  # the report itself expires unpublished: one more expiry
        assert ob.next_batch(0, 10) == []
        second = ob.report_drops(event(2), "expired")
        assert second is not None and (second.count, second.first_id, second.last_id) == (4, "m0", "ev1")
        (stored,) = ob.next_batch(0, 10)
        ob.delete([stored.row])  # acknowledged
        assert ob.pending_losses("expired") == 0 and ob.report_drops(event(3), "expired") is None


def test_refused_rows_stay_and_come_back_with_backoff(tmp_path: Path) -> None:
    clock = Clock()
    with Outbox(tmp_path / "o.db", 1 << 20, monotonic=clock) as ob:
        rows = [stored(ob.enqueue(msg(i, ttl_s=100))) for i in range(3)]
        batch = ob.next_batch(0, 10)
        assert ob.refuse([rows[1]], retry_min_s=2, retry_max_s=5) == [("m1", 1)]
        assert ob.next_batch(batch[-1].row, 10) == [] and ob.refused_due(10) == []
        assert ob.stats().refused == 1 and ob.stats().depth == 3
        clock.now += 2
        (again,) = ob.refused_due(10)
        assert again.message.msg_id == "m1" and ob.refused_due(10) == []  # handed over once
        assert ob.refuse([rows[1]], retry_min_s=2, retry_max_s=5) == [("m1", 2)]
        clock.now += 3
        assert ob.refused_due(10) == []  # the second refusal waits 4 s
        clock.now += 1
        assert [s.message.msg_id for s in ob.refused_due(10)] == ["m1"]
        ob.refuse([rows[1]], retry_min_s=2, retry_max_s=5)
        # The age bound still holds: a refused row expires like any other and is reported.
        clock.now += 100
        ob.next_batch(batch[-1].row, 10)
        st = ob.stats()
        assert (st.depth, st.expired_total, st.refused) == (2, 1, 0)
        assert st.rejected_total == 3  # three refusals
        assert ob.pending_losses("expired") == 1


def test_refused_rows_are_retried_in_order_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, 1 << 20) as ob:
        rows = [stored(ob.enqueue(msg(i))) for i in range(2)]
        ob.next_batch(0, 10)
        ob.refuse([rows[0]], retry_min_s=300, retry_max_s=300)
    with Outbox(path, 1 << 20) as ob:
        assert [s.message.msg_id for s in ob.next_batch(0, 10)] == ["m0", "m1"]


def test_message_larger_than_outbox_is_dropped_not_stored(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", 500) as ob:
        assert ob.enqueue(msg(0, size=1000)) is None
        assert ob.stats().depth == 0 and ob.stats().dropped_total == 1


def test_expired_rows_are_purged_and_never_returned(tmp_path: Path) -> None:
    clock = Clock()
    with Outbox(tmp_path / "o.db", 1 << 20, monotonic=clock) as ob:
        ob.enqueue(msg(0, ttl_s=5))  # handed out before it expires
        first = ob.next_batch(0, 1)[0]
        ob.enqueue(msg(1, ttl_s=5))
        ob.enqueue(msg(2, ttl_s=None))
        ob.enqueue(msg(3, ttl_s=100))
        clock.now += 10
        assert [s.message.msg_id for s in ob.next_batch(first.row, 10)] == ["m2", "m3"]
        st = ob.stats()
        assert st.expired_total == 1
        # The in-flight row (already given to the client) is not counted as expired.
        assert st.depth == 3


def test_reject_deletes_and_reports_an_unpublishable_row(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", 1 << 20) as ob:
        row = ob.enqueue(msg(0))
        assert row is not None
        assert ob.reject([row]) == 1
        st = ob.stats()
        assert (st.depth, st.bytes) == (0, 0)
        assert ob.pending_losses("rejected") == 1


def test_second_process_cannot_open_the_same_outbox(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", 1 << 20), pytest.raises(OutboxError, match="in use"):
        Outbox(tmp_path / "o.db", 1 << 20)


def test_a_symlink_to_an_open_outbox_is_refused_too(tmp_path: Path) -> None:
    """Two daemons reaching one database by different names must not both open it (the second
    would reset the sequence and the first would re-issue ids with new content)."""
    real = tmp_path / "real" / "o.db"
    (tmp_path / "links").mkdir()
    with Outbox(real, 1 << 20) as ob:
        ob.begin_boot()
        ob.enqueue_numbered(lambda seq: msg(seq))
        (tmp_path / "links" / "o.db").symlink_to(real)
        (tmp_path / "dirlink").symlink_to(tmp_path / "real")
        for other in (tmp_path / "links" / "o.db", tmp_path / "dirlink" / "o.db"):
            with pytest.raises(OutboxError, match="in use"):
                Outbox(other, 1 << 20)
        assert [s.message.msg_id for s in ob.next_batch(0, 10)] == ["m1"]


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutboxError, match="cannot create outbox"):
        Outbox(blocker / "sub" / "o.db", 1 << 20)


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from edge.mqtt.outbox import Outbox
    from edge.mqtt.outbox_records import OutboxMessage
    ob = Outbox(Path(sys.argv[1]), 1 << 30)
    ob.begin_boot()
    i = 0
    while True:
        seq, _ = ob.enqueue_numbered(
            lambda s: OutboxMessage(topic="t", payload=b"p" * 200, msg_id=f"id-{s}"))
        if seq % 50 == 0:
            print(seq, flush=True)   # committed before it is printed
    """
)


def test_sigkill_during_writes_loses_no_committed_row(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    last = 0
    deadline = time.monotonic() + 30
    while last < 300 and time.monotonic() < deadline:
        last = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last >= 300
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    with Outbox(path, 1 << 30) as ob:  # the lock died with the process
        ids = [s.message.msg_id for s in ob.next_batch(0, 100_000)]
    assert ids[:last] == [f"id-{i}" for i in range(1, last + 1)]
    assert ids == [f"id-{i}" for i in range(1, len(ids) + 1)]  # in order, no gaps
