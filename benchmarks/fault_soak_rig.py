"""The pieces benchmarks/fault_soak.py drives: a recording consumer, the daemon under test, and
read-only looks into an outbox file.

The consumer is the consumer library (`edge.consumer.Consumer` with a persistent session and a
`Tracker(from_start=True)`): every result id and every event is recorded with its arrival time, so a
fault's window can be cut out of one run afterwards. The daemon is started through the e2e harness
(`tests/e2e/harness.py`), the broker is the test `Broker` (`tests/plugins/mosquitto.py`) and the
camera the test `MjpegServer` (`tests/plugins/streams.py`): the same fault injections the tests use.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge.consumer import EventPayload, HealthPayload, Report, Tracker  # noqa: E402
from edge.consumer.stream import Consumer  # noqa: E402
from edge.core.messages import iso_epoch  # noqa: E402
from tests.e2e.harness import DaemonProcess, base_settings, start_daemon  # noqa: E402
from tests.plugins.mosquitto import Broker  # noqa: E402

FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
DEVICE = "soak-cam"

# what an event says was lost: the key in `detail` that counts results, else `count`
LOSS_EVENTS = ("outbox_dropped", "outbox_damaged", "results_dropped")


epoch = iso_epoch


@dataclass(frozen=True)
class Seen:
    """One delivery the consumer got: a result, an event or a health message."""

    at: float  # monotonic arrival
    kind: str
    boot: int = 0
    seq: int = 0
    rid: str = ""
    status: str = ""  # the tracker's verdict for a result: new, late, duplicate, invalid
    captured: float | None = None  # a result's captured_at (epoch; the daemon's clock, maybe faked)
    event: EventPayload | None = None
    depth: int | None = None  # health: outbox_depth
    health_at: float | None = None  # health: its `at` (epoch)


def reported_lost(ev: EventPayload) -> int | None:
    """Results an event says were lost: 0 for any other event, None when it says "an unknown number"
    (an `outbox_damaged` whose rows could not be read)."""
    if ev.event not in LOSS_EVENTS:
        return 0
    d = ev.detail or {}
    for key in ("results", "count"):
        if isinstance(d.get(key), int):
            return int(d[key])
    return None


class Recorder:
    """A persistent-session consumer of one device: the tracker plus a timeline of what arrived."""

    def __init__(self, broker: Broker, device: str = DEVICE) -> None:
        self.tracker = Tracker(from_start=True)
        self.seen: list[Seen] = []
        self.ids: set[str] = set()
        self._lock = threading.Lock()
        self.consumer = Consumer(
            broker.mqtt_settings(),
            self._on,
            client_id="soak-consumer",
            tracker=self.tracker,
            devices=[device],
            session_expiry_s=3600,
        )

    def start(self) -> Recorder:
        self.consumer.start(15)
        return self

    def stop(self) -> None:
        self.consumer.stop()

    def _on(self, d: Any, obs: Any) -> None:
        now = time.monotonic()
        rec: Seen | None = None
        if d.result is not None and obs is not None:
            r = d.result
            rec = Seen(now, "result", obs.boot, obs.seq, r.id, obs.status, epoch(r.captured_at))
            with self._lock:
                self.ids.add(r.id)
        elif isinstance(d.payload, EventPayload):
            rec = Seen(now, "event", event=d.payload)
        elif isinstance(d.payload, HealthPayload):
            rec = Seen(now, "health", depth=d.payload.outbox_depth, health_at=epoch(d.payload.at))
        if rec is not None:
            with self._lock:
                self.seen.append(rec)

    # ---- queries

    def count(self) -> int:
        with self._lock:
            return len(self.seen)

    def between(self, i0: int, i1: int | None = None) -> list[Seen]:
        with self._lock:
            return self.seen[i0:i1]

    def received(self, rid: str) -> bool:
        with self._lock:
            return rid in self.ids

    def report(self) -> Report:
        return self.tracker.report()

    def highest(self) -> dict[int, int]:
        """boot -> highest seq seen so far."""
        return {b.boot: b.last_seq for b in self.report().boots}

    def wait(self, pred: Any, timeout: float, step: float = 0.1) -> float | None:
        """Seconds until pred() held, or None on timeout."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if pred():
                return time.monotonic() - t0
            time.sleep(step)
        return None

    def fresh_result(self, i0: int, since_wall: float) -> Seen | None:
        """The first result after index i0 captured at or after `since_wall` (by the true clock)."""
        for s in self.between(i0):
            fresh = s.captured is not None and since_wall - 0.5 <= s.captured <= since_wall + 3600
            if s.kind == "result" and s.status in ("new", "late") and fresh:
                return s
        return None

    def drained(self, i0: int, since_wall: float) -> Seen | None:
        """The first health message after i0, stamped after since_wall, with an empty outbox."""
        for s in self.between(i0):
            if s.kind == "health" and s.depth == 0 and (s.health_at or 0) >= since_wall:
                return s
        return None


# --------------------------------------------------------------------------- the daemon


class Daemons:
    """Starts `edge run` processes of one device through the e2e harness; each start gets its own
    config, log and notify socket (`<name>-<n>`), so every boot's log is kept."""

    def __init__(self, root: Path, broker: Broker, camera_url: str, outbox: Path) -> None:
        self.root = root
        self.broker = broker
        self.starts = 0
        self.settings = base_settings(
            root,
            broker,
            device_id=DEVICE,
            camera={"source": camera_url, "stall_s": 2, "reconnect_s": 1},
            mqtt={"keepalive_s": 10, "message_expiry_s": 300, "outbox_path": str(outbox)},
        )

    def start(self, name: str, *, outbox: Path | None = None, faketime: str | None = None) -> DaemonProcess:
        settings = {**self.settings, "mqtt": dict(self.settings["mqtt"])}
        if outbox is not None:
            settings["mqtt"]["outbox_path"] = str(outbox)
        env = {"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": faketime} if faketime else None
        self.starts += 1
        d = start_daemon(self.root, settings, env=env, name=f"{name}-{self.starts}")
        assert d.notify is not None
        try:
            d.notify.wait_for("READY", "1", 90)
        except AssertionError:
            d.stop(10)
            raise RuntimeError(f"{name} not ready within 90 s:\n{d.log()[-3000:]}") from None
        return d

    @staticmethod
    def stop(d: DaemonProcess) -> int:
        try:
            return d.stop(timeout=30)
        finally:
            if d.notify is not None:
                d.notify.close()


# --------------------------------------------------------------------------- outbox files


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5)


def queued_results(path: Path) -> list[str]:
    """Result ids waiting in a (stopped daemon's) outbox, after folding its WAL into the file."""
    if not path.exists():
        return []
    db = _connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return [r[0] for r in db.execute("SELECT msg_id FROM outbox WHERE kind = 'result' ORDER BY row")]
    except sqlite3.Error:
        return []
    finally:
        db.close()


def damage_rows_page(path: Path) -> int:
    """Overwrite the page the queued rows start from (the outbox table's root) with garbage, as
    `dd if=/dev/urandom of=outbox.sqlite bs=4096 seek=N count=1 conv=notrunc` would; the page number."""
    import os

    db = _connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'outbox'").fetchone()
    finally:
        db.close()
    with path.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(os.urandom(page_size))
    return int(root)
