"""sd_notify over a real AF_UNIX datagram socket, and the progress-gated watchdog pinger."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.daemon.liveness import Liveness
from edge.daemon.systemd import Notifier, WatchdogPinger, extending_timeout
from tests.helpers.notify import NotifyListener


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    lst = NotifyListener(tmp_path, watchdog_usec=100_000)
    yield lst
    lst.close()


def test_no_socket_is_a_silent_no_op() -> None:
    n = Notifier(env={})
    assert not n.enabled
    assert n.ready("x") is False
    assert n.watchdog() is False
    assert n.watchdog_interval_s is None
    pinger = WatchdogPinger(n, lambda: True)
    assert pinger.start() is False
    assert not pinger.active


def test_ready_status_stopping_reach_the_socket(listener: NotifyListener) -> None:
    n = Notifier(env=listener.env)
    assert n.enabled
    assert n.ready("model loaded\nfirst frame read")
    assert n.status("running: 3 jobs")
    assert n.stopping("stopping")
    listener.wait_for("STOPPING", "1")
    fields = listener.fields()
    assert fields[0] == {"READY": "1", "STATUS": "model loaded first frame read"}  # one line
    assert fields[1] == {"STATUS": "running: 3 jobs"}
    assert fields[2]["STOPPING"] == "1"
    n.close()


def test_abstract_socket_name(tmp_path: Path) -> None:
    lst = NotifyListener(tmp_path, abstract=True)
    try:
        assert lst.address.startswith("@")
        n = Notifier(env=lst.env)
        assert n.watchdog()
        lst.wait_for("WATCHDOG", "1")
    finally:
        lst.close()


def test_reloading_carries_monotonic_usec(listener: NotifyListener) -> None:
    n = Notifier(env=listener.env)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    listener.wait_for("RELOADING", "1")
    usec = int(listener.fields()[0]["MONOTONIC_USEC"])
    assert before <= usec <= before + 5_000_000


def test_extend_timeout_and_extending_block(listener: NotifyListener) -> None:
    n = Notifier(env=listener.env)
    n.extend_timeout(90)
    with extending_timeout(n, step_s=0.1):
        time.sleep(0.35)
    values = [int(f["EXTEND_TIMEOUT_USEC"]) for f in listener.fields() if "EXTEND_TIMEOUT_USEC" in f]
    assert values[0] == 90_000_000
    assert values[1:] and all(v == 100_000 for v in values[1:])
    assert 3 <= len(values[1:]) <= 9  # every step/2 (0.05 s) while the block ran (0.35 s)
    count = len(values)
    time.sleep(0.15)
    assert len([f for f in listener.fields() if "EXTEND_TIMEOUT_USEC" in f]) == count


def test_watchdog_interval_is_half_of_watchdog_usec(listener: NotifyListener) -> None:
    assert Notifier(env=listener.env).watchdog_interval_s == pytest.approx(0.05)
    other = dict(listener.env, WATCHDOG_PID=str(os.getpid() + 1))
    assert Notifier(env=other).watchdog_interval_s is None  # meant for another process
    mine = dict(listener.env, WATCHDOG_PID=str(os.getpid()))
    assert Notifier(env=mine).watchdog_interval_s == pytest.approx(0.05)


def test_send_failure_is_logged_not_raised(tmp_path: Path) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.enabled
    assert n.ready() is False
    assert n.watchdog() is False


def test_relative_socket_path_disables() -> None:
    assert not Notifier(env={"NOTIFY_SOCKET": "relative.sock"}).enabled


def test_pinger_pings_only_while_progressing(listener: NotifyListener) -> None:
    progressing = {"ok": True}
    n = Notifier(env=listener.env)
    pinger = WatchdogPinger(n, lambda: progressing["ok"])
    assert pinger.interval_s == pytest.approx(0.05)
    assert pinger.start()
    time.sleep(0.5)
    progressing["ok"] = False
    stalled_at = time.monotonic()
    time.sleep(0.5)
    progressing["ok"] = True
    resumed_at = time.monotonic()
    time.sleep(0.3)
    pinger.stop()
    pings = listener.times_of("WATCHDOG", "1")
    healthy = [t for t in pings if t < stalled_at]
    assert len(healthy) >= 5  # ~10 at 0.05 s; generous for a loaded box
    gaps = [b - a for a, b in zip(healthy, healthy[1:], strict=False)]
    assert max(gaps) < 0.3
    # one ping may already be in flight at the flip; nothing after that while stalled
    assert not [t for t in pings if stalled_at + 0.06 < t < resumed_at]
    assert [t for t in pings if t > resumed_at]
    assert pinger.skipped >= 5


def test_pinger_treats_a_raising_check_as_no_progress(listener: NotifyListener) -> None:
    def broken() -> bool:
        raise RuntimeError("health check bug")

    pinger = WatchdogPinger(Notifier(env=listener.env), broken)
    assert pinger.start()
    time.sleep(0.3)
    pinger.stop()
    assert listener.times_of("WATCHDOG") == []
    assert pinger.skipped >= 3


def test_pinger_stops_when_a_needed_thread_dies(listener: NotifyListener, caplog) -> None:
    """Regression: the pings went on after a pipeline thread died."""
    live = Liveness()
    # a loop that returns stands in for one that raised (the e2e test raises in the real daemon)
    thread = threading.Thread(target=lambda: time.sleep(0.3), name="edge-triggers", daemon=True)
    thread.start()
    live.add("edge-triggers", thread.is_alive)
    pinger = WatchdogPinger(Notifier(env=listener.env), lambda: True, problem=live.problem)
    assert pinger.start()
    thread.join(5)
    died_at = time.monotonic()
    time.sleep(0.4)
    pinger.stop()
    assert [t for t in listener.times_of("WATCHDOG", "1") if t < died_at]
    assert not [t for t in listener.times_of("WATCHDOG", "1") if t > died_at + 0.06]
    assert pinger.problem == "thread edge-triggers died"
    statuses = [f["STATUS"] for f in listener.fields() if "STATUS" in f]
    assert statuses == ["thread edge-triggers died; watchdog withheld"]  # said once
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [
        "thread edge-triggers died; withholding WATCHDOG=1 so that systemd restarts the service"
    ]
