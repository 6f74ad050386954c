"""Backoff growth and the restart window: the logic that keeps a broken model from spinning."""

from __future__ import annotations

from edge.inference.restart_policy import RestartPolicy


def test_backoff_doubles_to_the_cap_and_resets_after_success() -> None:
    p = RestartPolicy(max_restarts=100, window_s=60, backoff_initial_s=0.5, backoff_max_s=4)
    assert p.backoff_s == 0.0
    delays = [p.record_failure(float(i)) for i in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    p.record_success()
    assert p.record_failure(10.0) == 0.5


def test_window_counts_only_recent_failures() -> None:
    p = RestartPolicy(max_restarts=2, window_s=10, backoff_initial_s=1, backoff_max_s=1)
    for t in (0.0, 1.0, 2.0):
        p.record_failure(t)
    assert p.in_window(2.0) == 3
    assert p.exceeded(2.0)
    assert not p.exceeded(10.5)  # the first one fell out of the window
    assert p.in_window(100.0) == 0
    p.record_failure(100.0)
    p.reset_window()
    assert p.in_window(100.0) == 0


def test_many_failures_do_not_overflow() -> None:
    p = RestartPolicy(max_restarts=1, window_s=1, backoff_initial_s=1, backoff_max_s=60)
    for i in range(2000):
        p.record_failure(float(i))
    assert p.backoff_s == 60
    assert p.consecutive == 2000
