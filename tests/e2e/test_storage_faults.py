"""`edge run` as a subprocess against storage, clock and identity faults: a full disk, a
damaged outbox, a clock two days behind across a restart, and two daemons with one device_id."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.core.messages import EventPayload, HealthPayload, ResultPayload
from edge.mqtt.outbox import Outbox
from edge.mqtt.outbox_records import OutboxMessage
from tests.e2e.harness import base_settings, start_daemon
from tests.plugins.mosquitto import Collector

ROOT = "edge/cam-e2e"
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


def results(collector: Collector, task: str = "caption") -> list[ResultPayload]:
    return [ResultPayload.model_validate_json(m.payload) for m in collector.on(f"{ROOT}/main/{task}/result")]


def events(collector: Collector, kind: str | None = None) -> list[EventPayload]:
    evs = [EventPayload.model_validate_json(m.payload) for m in collector.on(f"{ROOT}/event")]
    return [e for e in evs if kind is None or e.event == kind]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "small"
    where.mkdir()
    rc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], capture_output=True, text=True
    )
    if rc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {rc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(where: Path) -> Path:
    """Fill the filesystem to the last block, as another program's log would."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def _unstored(collector: Collector, task: str = "caption") -> list[ResultPayload]:
    return [
        ResultPayload.model_validate_json(m.payload)
        for m in collector.on(f"{ROOT}/main/{task}/result")
        if m.user.get("persisted") == "false"
    ]


def test_full_disk_costs_durability_not_delivery(tmp_path: Path, mosquitto, sub, small_fs: Path) -> None:
    """Before: with the outbox on a 256 KiB filesystem (below a fixed 4 MiB reserve) nothing was ever
    stored; held results waited for the disk to free, and published nothing for minutes after the
    broker came back. Now the reserve follows the filesystem; a disk filled by someone else sends
    results directly (persisted=false) while the broker is there, and held ones when it returns."""
    settings = base_settings(tmp_path, mosquitto)
    settings["mqtt"]["outbox_path"] = str(small_fs / "outbox.sqlite")
    settings["tasks"] = [
        {"name": "caption", "kind": "caption", "trigger": "interval", "interval_s": 1, "publish_image": True}
    ]
    d = start_daemon(tmp_path, settings)
    filler: Path | None = None
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 60)
        sub.wait_topic(f"{ROOT}/main/caption/result", count=2, timeout=60)
        assert results(sub) and not _unstored(sub) and not events(sub, "storage_full")  # stored: room enough

        filler = _fill(small_fs)
        sub.wait_for(lambda ms: events(sub, "storage_full"), 60, "storage_full event")
        full = events(sub, "storage_full")[0]
        assert full.detail["path"].endswith("outbox.sqlite") and full.detail["free_bytes"] is not None
        sub.wait_for(lambda ms: len(_unstored(sub)) >= 2, 60, "results sent unstored")
        sub.wait_for(
            lambda ms: any(
                HealthPayload.model_validate_json(m.payload).storage == "full"
                for m in sub.on(f"{ROOT}/health")
            ),
            10,
            "health says storage full",
        )
        sub.publish(f"{ROOT}/cmd/capture", "{}", response_topic="me/replies", correlation_data=b"c1")
        (reply,) = sub.wait_topic("me/replies", 1, timeout=30)
        assert json.loads(reply.payload)["ok"] is True

        mosquitto.stop()  # the broker goes away for a while; the disk stays full
        time.sleep(4)
        before = len(_unstored(sub))
        mosquitto.start()
        sub.wait_for(lambda ms: len(_unstored(sub)) >= before + 4, 60, "held results sent on return")
        assert d.alive()
        log = d.log()
        assert log.count("storage full: cannot write the outbox") == 1 and "bytes free" in log

        filler.unlink()  # space returns
        sub.wait_for(lambda ms: events(sub, "recovered"), 60, "recovered event")
        n = len(results(sub))
        sub.wait_topic(f"{ROOT}/main/caption/result", count=n + 2, timeout=60)
        wal = Path(f"{small_fs}/outbox.sqlite-wal")
        wal_size = wal.stat().st_size if wal.exists() else 0
    finally:
        if filler is not None:
            filler.unlink(missing_ok=True)
        rc = d.stop(timeout=30)
    assert rc == 0, d.log()[-3000:]
    got = results(sub)
    boot = got[0].id.rsplit("-", 2)[1]
    seqs = sorted({r.seq for r in got if r.id.rsplit("-", 2)[1] == boot})
    assert seqs == list(range(1, len(seqs) + 1))  # stored and unstored share one sequence: no gap
    assert wal_size <= 64 << 10  # the WAL bound follows the filesystem too


def _queue_results(path: Path, n: int) -> list[str]:
    with Outbox(path, 64 << 20) as ob:
        boot = ob.begin_boot()
        ids = []
        for _ in range(n):
            _, m = ob.enqueue_numbered(
                lambda s: OutboxMessage(
                    topic=f"{ROOT}/main/caption/result",
                    payload=b"{}" + b" " * 400,
                    msg_id=f"cam-e2e-{boot}-{s}",
                )
            )
            ids.append(m.msg_id)
    return ids


def test_damaged_outbox_is_moved_aside_and_the_loss_reported(tmp_path: Path, mosquitto, sub) -> None:
    """Before: the file opened, then every insert failed "database disk image is malformed"."""
    settings = base_settings(tmp_path, mosquitto)
    path = Path(settings["mqtt"]["outbox_path"])
    path.parent.mkdir(parents=True)
    _queue_results(path, 100)
    with path.open("r+b") as f:  # dd if=/dev/urandom of=outbox.sqlite bs=4096 seek=2 count=1 conv=notrunc
        f.seek(2 * 4096)
        f.write(os.urandom(4096))
    d = start_daemon(tmp_path, settings)
    try:
        sub.wait_for(lambda ms: events(sub, "outbox_damaged"), 60, "outbox_damaged event")
        sub.wait_topic(f"{ROOT}/main/caption/result", count=2, timeout=30)
    finally:
        rc = d.stop(timeout=30)
    assert rc == 0, d.log()[-3000:]
    (ev,) = events(sub, "outbox_damaged")
    assert ev.detail["count"] in (None, *range(1, 101)) and ev.detail["aside"]
    assert list(path.parent.glob("outbox.sqlite.corrupt-*"))


def _queued_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(path, timeout=1)
        try:
            return [r[0] for r in db.execute("SELECT msg_id FROM outbox WHERE kind = 'result' ORDER BY row")]
        finally:
            db.close()
    except sqlite3.Error:
        return []


@pytest.mark.skipif(
    not FAKETIME_LIB.exists(), reason="Debian's faketime is not installed (apt-get install faketime)"
)
@pytest.mark.parametrize("offset", ["-2d", "+2d"])
def test_results_queued_under_a_stepped_clock_are_delivered(
    tmp_path: Path, broker_factory, collector_factory, offset: str
) -> None:
    """Before: queued under FAKETIME=-2d, deleted at the next start as "expired", no event."""
    broker = broker_factory()
    broker.stop()  # the result waits in the outbox
    settings = base_settings(tmp_path, broker)
    settings["mqtt"]["message_expiry_s"] = 60
    # A loaded machine can stall the first frames past stall_s; the reconnect's timed wait then hangs
    # under libfaketime (its shifted clock in pthread timed waits). This test is about clock steps, not
    # about a camera loss: the camera is never declared lost.
    settings["camera"]["stall_s"] = 600
    path = Path(settings["mqtt"]["outbox_path"])
    # libfaketime shifts CLOCK_MONOTONIC too (with FAKETIME_DONT_FAKE_MONOTONIC=1 Python's sleep fails
    # with EINVAL): the outbox must also survive monotonic stamps from a clock it cannot trust.
    fake = {"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": offset}
    d = start_daemon(tmp_path, settings, env=fake, name="behind")
    try:
        deadline = time.monotonic() + 90
        while not _queued_ids(path) and time.monotonic() < deadline and d.alive():
            time.sleep(0.5)
    finally:
        assert d.stop(timeout=30) == 0, d.log()[-3000:]
    queued = _queued_ids(path)
    assert queued, d.log()[-3000:]
    broker.start()
    sub: Collector = collector_factory(broker, "edge/#")
    d2 = start_daemon(tmp_path, settings, name="true-clock")
    try:
        sub.wait_for(
            lambda ms: set(queued) <= {r.id for r in results(sub)}, 60, "the results queued two days behind"
        )
    finally:
        assert d2.stop(timeout=30) == 0, d2.log()[-3000:]
    assert "expired unpublished" not in d2.log()
    shift = -2 * 86400 if offset == "-2d" else 2 * 86400
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() + shift))
    assert all(r.captured_at and r.captured_at.startswith(day) for r in results(sub) if r.id in queued)


def test_two_daemons_with_one_device_id_give_out_different_ids(tmp_path: Path, mosquitto, sub) -> None:
    """Before: same boot number, 24 of 49 ids used twice, the broker swapping them about once a second."""
    daemons = []
    for name in ("one", "two"):
        settings = base_settings(tmp_path, mosquitto)
        settings["mqtt"]["outbox_path"] = str(tmp_path / name / "outbox.sqlite")
        daemons.append(start_daemon(tmp_path, settings, name=name))
    try:
        # until each daemon has published and the broker has swapped them at least once
        sub.wait_for(lambda ms: len({r.id.rsplit("-", 2)[1] for r in results(sub)}) >= 2, 120, "two boots")
        deadline = time.monotonic() + 120
        while "MQTT session taken over" not in "".join(d.log() for d in daemons):
            assert time.monotonic() < deadline, "no session takeover detected"
            time.sleep(0.5)
        time.sleep(5)  # a few more results, some of them under the takeover
    finally:
        for d in daemons:
            d.stop(timeout=30)
    got = results(sub)
    assert len({r.id.rsplit("-", 2)[1] for r in got}) == 2, "two boots"
    by_id: dict[str, set[str]] = {}
    for r in got:
        by_id.setdefault(r.id, set()).add(r.model_dump_json(exclude={"published_at"}))
    assert all(len(v) == 1 for v in by_id.values()), "an id was used for two different results"
    logs = "".join(d.log() for d in daemons)
    assert "MQTT session taken over" in logs
