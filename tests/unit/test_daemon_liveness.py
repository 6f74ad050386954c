"""The liveness registry the systemd watchdog consults: dead threads and stuck loops, by name."""

from __future__ import annotations

import threading

from edge.daemon.liveness import Liveness


def test_all_well_is_none_and_the_first_problem_is_named() -> None:
    now = [100.0]
    live = Liveness(clock=lambda: now[0])
    beats = {"loop": 100.0}
    alive = {"a": True}
    live.add("a", lambda: alive["a"])
    live.add("loop", lambda: True, lambda: beats["loop"], stale_s=10.0)
    assert live.names == ["a", "loop"]
    assert live.problem() is None
    now[0] = 111.0
    assert live.problem() == "thread loop stuck for 11s"
    beats["loop"] = 110.5  # it came round again
    assert live.problem() is None
    alive["a"] = False
    assert live.problem() == "thread a died"


def test_stale_limit_may_follow_settings_and_a_raising_probe_is_a_problem() -> None:
    limit = [5.0]
    live = Liveness(clock=lambda: 10.0)
    live.add("exec", lambda: True, lambda: 0.0, stale_s=lambda: limit[0])
    assert live.problem() == "thread exec stuck for 10s"
    limit[0] = 60.0  # a reload raised watchdog.total_s
    assert live.problem() is None

    def broken() -> bool:
        raise RuntimeError("boom")

    live.add("exec", broken)  # the same name replaces the source
    assert live.problem() == "thread exec: liveness check failed: RuntimeError('boom')"


def test_a_real_thread_that_returns_is_dead() -> None:
    live = Liveness()
    t = threading.Thread(target=lambda: None, name="edge-exec-vision")
    t.start()
    t.join()
    live.add("edge-exec-vision", t.is_alive)
    assert live.problem() == "thread edge-exec-vision died"
