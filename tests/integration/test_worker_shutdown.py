"""Shutdown: SIGTERM during a long generation, a stalled worker at shutdown, no orphaned workers.

A real subprocess (tests/helpers/mini_daemon.py) wires Supervisor + Notifier + WatchdogPinger the
way `edge run` does, with a real AF_UNIX datagram socket as NOTIFY_SOCKET.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers.notify import NotifyListener
from tests.helpers.supervision import fake_model, in_thread, job, running, wait_until, watchdog

ROOT = Path(__file__).resolve().parents[2]


class Daemon:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.mini_daemon", *args],
            cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[dict[str, Any]] = []

    def wait_line(self, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if all(line.get(k) == v for k, v in match.items()):
                return line
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            raw = self.proc.stdout.readline()
            if not raw:
                break
            line = json.loads(raw)
            self.lines.append(line)
            if all(line.get(k) == v for k, v in match.items()):
                return line
        raise AssertionError(f"no line matching {match}; got {self.lines}")

    def finish(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        assert self.proc.stdout is not None
        self.lines += [json.loads(raw) for raw in self.proc.stdout.read().splitlines() if raw.strip()]
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    lst = NotifyListener(tmp_path, watchdog_usec=200_000)
    yield lst
    lst.close()


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def test_sigterm_during_long_generation_finishes_at_the_soft_deadline(notify: NotifyListener) -> None:
    d = Daemon(notify.env, "--generation-s", "1.5", "--total-s", "4", "--stop-timeout", "6")
    try:
        ready = d.wait_line(step="ready")
        notify.wait_for("READY", "1")
        d.wait_line(step="job_started", job_id="j1")
        time.sleep(0.4)  # mid-generation
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert d.finish(timeout=10) == 0
        took = time.monotonic() - t0
        assert took < 6 + 2  # inside the stop budget (TimeoutStopSec would be above it)
        outcome = d.wait_line(step="outcome", job_id="j1")
        assert outcome["ok"] is True and outcome["stop_reason"] == "deadline"  # partial text kept
        assert d.wait_line(step="exit")["jobs_thread_alive"] is False
        stopping = notify.wait_for("STOPPING", "1")
        assert notify.times_of("READY", "1")[0] < stopping
        assert len([t for t in notify.times_of("WATCHDOG", "1") if t < stopping]) >= 2
        assert _gone(ready["worker_pid"])
    finally:
        d.kill()


def test_sigterm_with_a_short_stop_budget_cancels_and_keeps_the_partial_text(notify: NotifyListener) -> None:
    d = Daemon(notify.env, "--generation-s", "8", "--total-s", "10", "--stop-timeout", "1.5")
    try:
        ready = d.wait_line(step="ready")
        d.wait_line(step="job_started", job_id="j1")
        time.sleep(0.3)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert d.finish(timeout=10) == 0
        assert time.monotonic() - t0 < 1.5 + 2
        outcome = d.wait_line(step="outcome", job_id="j1")
        assert outcome["ok"] is True and outcome["stop_reason"] == "cancelled"
        assert _gone(ready["worker_pid"])
    finally:
        d.kill()


def test_sigterm_with_a_stalled_worker_exits_in_bounded_time(notify: NotifyListener) -> None:
    d = Daemon(
        notify.env, "--wd-token-s", "30", "--total-s", "40", "--generation-s", "35", "--stop-timeout", "1.5"
    )
    try:
        ready = d.wait_line(step="ready")
        d.wait_line(step="job_started", job_id="j1")
        time.sleep(0.3)
        os.kill(ready["worker_pid"], signal.SIGSTOP)  # hung in a native call: cancel cannot work
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert d.finish(timeout=10) == 0
        assert time.monotonic() - t0 < 1.5 + 2
        outcome = d.wait_line(step="outcome", job_id="j1")
        assert outcome["ok"] is False and outcome["failure"] == "stopped"
        assert _gone(ready["worker_pid"])
    finally:
        d.kill()


def test_no_orphan_when_the_main_process_is_killed(notify: NotifyListener) -> None:
    d = Daemon(notify.env)
    try:
        ready = d.wait_line(step="ready")
        d.wait_line(step="job_started", job_id="j1")
        d.proc.kill()  # SIGKILL: no handler, no cleanup in the parent
        d.proc.wait(5)
        assert _gone(ready["worker_pid"], within=5.0)
    finally:
        d.kill()


def test_no_watchdog_ping_while_the_worker_is_stalled(notify: NotifyListener) -> None:
    d = Daemon(notify.env, "--wd-token-s", "2.0", "--within-s", "0.3", "--stop-timeout", "1.0")
    try:
        ready = d.wait_line(step="ready")
        d.wait_line(step="job_started", job_id="j1")
        time.sleep(0.6)
        os.kill(ready["worker_pid"], signal.SIGSTOP)
        stalled = time.monotonic()
        restart = d.wait_line(event="worker_restart", timeout=10)
        assert restart["reason"] == "token_timeout"
        d.wait_line(step="job_started", job_id="j2")
        time.sleep(0.6)
        d.proc.send_signal(signal.SIGTERM)
        assert d.finish(timeout=10) == 0
        pings = notify.times_of("WATCHDOG", "1")
        before = [t for t in pings if t < stalled]
        assert len(before) >= 3  # healthy cadence: every 0.1 s
        assert max(b - a for a, b in zip(before, before[1:], strict=False)) < 0.5
        # the pinger stops within `within_s` + one interval of the stall, and stays quiet until the
        # supervisor has killed the worker at its token deadline (2 s after the stall)
        assert not [t for t in pings if stalled + 0.5 < t < stalled + 1.8]
        assert [t for t in pings if t > stalled + 2.0]  # resumed once the worker was replaced
    finally:
        d.kill()


def test_stop_while_idle_and_while_loading_is_quick() -> None:
    with running(fake_model(), watchdog()) as sup:
        pid = sup.stats().worker_pid
        assert pid is not None
        t0 = time.monotonic()
        sup.stop(5.0)
        assert time.monotonic() - t0 < 2.0
        assert _gone(pid) and sup.stats().state == "stopped"
        assert not sup.progressing()
        after = sup.submit(job("late"))
        assert after.failure is not None and after.failure.reason == "stopped"
    with running(fake_model(load_s="60"), watchdog(), ready=False) as sup:
        wait_until(lambda: sup.stats().mode == "loading", timeout=10)
        time.sleep(0.5)
        pending, box = in_thread(lambda: sup.submit(job("queued")))
        time.sleep(0.2)
        t0 = time.monotonic()
        sup.stop(5.0)
        assert time.monotonic() - t0 < 3.0
        pending.join(5)
        assert box[0].failure is not None and box[0].failure.reason == "stopped"
