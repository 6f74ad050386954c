"""FaultTracker: which events a sequence of worker failures produces, and the provider chain."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from edge.config.settings import WatchdogSettings
from edge.inference.faults import FaultTracker


def _tracker(providers: list[str], **wd: Any) -> tuple[FaultTracker, list[tuple[str, dict[str, Any]]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    values: dict[str, Any] = {
        "max_restarts": 2,
        "restart_window_s": 60,
        "backoff_initial_s": 1,
        "backoff_max_s": 8,
    }
    settings = WatchdogSettings(**{**values, **wd})
    return FaultTracker(settings, providers, lambda k, d: events.append((k, d))), events


def test_every_fault_is_an_event_with_a_growing_backoff() -> None:
    ft, events = _tracker(["cpu"])
    job = SimpleNamespace(id="j1", task="caption")
    assert [ft.fault("crashed", "worker killed by SIGSEGV", job, 11, "cpu") for _ in range(2)] == [1, 2]
    kinds = [k for k, _ in events]
    assert kinds == ["worker_restart", "worker_restart"]
    assert events[0][1]["job_id"] == "j1" and events[0][1]["reason"] == "crashed"
    assert ft.degraded is None and ft.restarts == 2


def test_too_many_restarts_degrade_fall_back_once_and_stay_degraded() -> None:
    ft, events = _tracker(["QNN", "cpu"])
    for _ in range(3):
        ft.fault("token_timeout", "no token", None, 1, "qnn")  # the backend may spell it differently
    kinds = [k for k, _ in events]
    assert kinds == ["worker_restart"] * 3 + ["degraded", "provider_fallback"]
    assert events[-1][1]["from"] == "qnn" and events[-1][1]["to"] == "cpu"
    assert ft.providers == ["cpu"] and ft.degraded_kind == "fallback"
    ft.job_succeeded()
    assert ft.degraded is not None  # on the fallback provider for good
    for _ in range(3):
        ft.fault("crashed", "again", None, 2, "cpu")
    assert [k for k, _ in events].count("provider_fallback") == 1  # nothing after cpu


def test_restart_storm_without_fallback_recovers_once_the_window_is_clean() -> None:
    ft, events = _tracker(["cpu"], restart_window_s=0.2)
    for _ in range(3):
        ft.fault("crashed", "x", None, 1, "cpu")
    assert ft.degraded_kind == "restarts"
    ft.job_succeeded()
    assert ft.degraded is not None  # still 3 in the window
    time.sleep(0.25)
    ft.job_succeeded()
    assert ft.degraded is None and [k for k, _ in events][-1] == "recovered"


def test_load_failure_degrades_at_once_and_a_good_load_recovers() -> None:
    ft, events = _tracker(["cpu"])
    ft.fault("load_failed", "ModelError: model.onnx: Protobuf parsing failed", None, 5, None)
    assert ft.load_error and ft.degraded_kind == "load"
    assert [k for k, _ in events] == ["worker_restart", "degraded"]
    assert "Protobuf" in events[1][1]["reason"]
    ft.fault("load_failed", "same", None, 6, None)
    assert [k for k, _ in events].count("degraded") == 1
    ft.loaded()
    assert ft.load_error is None and ft.degraded is None
    assert [k for k, _ in events][-1] == "recovered"


def test_a_crash_while_loading_counts_toward_fallback() -> None:
    ft, events = _tracker(["NPU", "CPU"])
    for _ in range(3):
        ft.fault("load_crashed", "worker killed by SIGSEGV while loading", None, 1, None)
    assert ft.providers == ["CPU"]
    assert ("provider_fallback" in [k for k, _ in events]) and ft.load_error is not None
