"""A pipeline thread that dies inside the real daemon stops WATCHDOG=1.

The fault is real: a `sitecustomize` on the daemon's PYTHONPATH makes one of its threads raise a few
seconds after it started (the trigger loop through the scheduler it calls every round; paho's
network loop through its `_loop`). Everything else keeps running, which is exactly why only the
watchdog can tell systemd.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.e2e.harness import base_settings, start_daemon

SITECUSTOMIZE = """
import os
import time

_KILL = os.environ.get("LIVE_TEST_KILL")
_AFTER_S = float(os.environ.get("LIVE_TEST_AFTER_S", "3"))


def _dies_later(func, what):
    first = []

    def wrapper(*args, **kwargs):
        now = time.monotonic()
        first[:] = first or [now]
        if now - first[0] > _AFTER_S:
            raise RuntimeError(f"injected: {what} dies")
        return func(*args, **kwargs)

    return wrapper


if _KILL == "triggers":
    import edge.pipeline.jobs as _jobs

    _jobs.Scheduler.on_tick = _dies_later(_jobs.Scheduler.on_tick, "the trigger loop")
elif _KILL == "paho":
    import paho.mqtt.client as _paho

    _paho.Client._loop = _dies_later(_paho.Client._loop, "the paho network loop")
"""


@pytest.mark.parametrize(
    ("kill", "thread"),
    [("triggers", "edge-triggers"), ("paho", "paho network loop")],
)
def test_a_dead_pipeline_thread_stops_the_watchdog(tmp_path: Path, mosquitto, kill: str, thread: str) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "LIVE_TEST_KILL": kill, "LIVE_TEST_AFTER_S": "3"}
    d = start_daemon(tmp_path, base_settings(tmp_path, mosquitto), env=env)
    try:
        assert d.notify is not None
        ready = d.notify.wait_for("READY", "1", 60)
        line = f"thread {thread} died; withholding WATCHDOG=1"
        deadline = time.monotonic() + 30
        while line not in d.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        seen = time.monotonic()
        assert line in d.log(), d.log()[-3000:]
        time.sleep(3.0)  # WATCHDOG_USEC=2s: the pinger would have pinged three times by now
        pings = d.notify.times_of("WATCHDOG", "1")
        assert [t for t in pings if t > ready], "the watchdog never pinged while all was well"
        assert not [t for t in pings if t > seen], "WATCHDOG=1 went on after the thread died"
        statuses = [f["STATUS"] for f in d.notify.fields() if "STATUS" in f]
        assert any(s.startswith(f"thread {thread} died") for s in statuses), statuses[-5:]
        log = d.log()
        assert "crashed: RuntimeError('injected:" in log  # the thread's traceback went to the log
        assert "Traceback" in log
        assert d.alive()  # the process itself lives on: only the watchdog can tell
    finally:
        rc = d.stop(timeout=30)
    assert rc == 0, d.log()[-3000:]
