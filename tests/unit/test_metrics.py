"""The Prometheus endpoint at its seams: the collector's output for a health snapshot, the histograms
fed by the meters, off by default, the missing extra, the listen address (edge.daemon.metrics)."""

from __future__ import annotations

import logging
import socket
import sys
import urllib.request
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from edge import __version__
from edge.config.settings import MetricsSettings, Settings
from edge.core.errors import ConfigError
from edge.core.messages import CameraHealth, HealthPayload, Percentiles
from edge.daemon import metrics as metrics_mod
from edge.daemon.health import HealthSources, Meters
from edge.daemon.metrics import MetricsServer, build_registry


def _health(**over: Any) -> HealthPayload:
    fields: dict[str, Any] = {
        "device": "cam-1",
        "at": "2025-01-01T00:00:00Z",
        "state": "running",
        "uptime_s": 12.5,
        "frames": 100,
        "frames_dropped": 2,
        "gated": 40,
        "jobs": 7,
        "failures": 1,
        "restarts": 1,
        "ttft_ms": Percentiles(p50=None, p95=None),
        "decode_tok_s": Percentiles(p50=None, p95=None),
        "outbox_depth": 3,
        "dropped": 4,
        "rss_mb": 100.0,
        "worker_rss_mb": 50.0,
        "cpu_temp_c": 48.5,
        "throttled": None,
        "camera": "ok",
        "storage": "ok",
        "storage_errors": 0,
        "cameras": {
            "gate": CameraHealth(state="ok", frames=60, dropped=1, gated=30, jobs_dropped=2, fps=10.0),
            "yard": CameraHealth(state="ok", frames=40, dropped=1, gated=10, jobs_dropped=0, fps=5.0),
        },
    }
    return HealthPayload(**{**fields, **over})


def _samples(registry: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sources(meters: Meters | None = None) -> HealthSources:
    def unread() -> Any:
        raise AssertionError("not scraped in this test")

    never: Any = unread  # stands in for the outbox and gate sources too: any call fails the test
    return HealthSources(
        pipeline=unread, meters=meters or Meters(), queues=(), outbox=never, gate=never, state=unread
    )


def test_counters_and_gauges_come_from_the_health_snapshot() -> None:
    current = [_health()]
    registry = build_registry(lambda: current[0], Meters())
    got = _samples(registry)
    assert got[("edge_frames_total", ())] == 100
    assert got[("edge_frames_dropped_total", ())] == 2
    assert got[("edge_gated_total", ())] == 40
    assert got[("edge_jobs_total", ())] == 7
    assert got[("edge_failures_total", ())] == 1
    assert got[("edge_worker_restarts_total", ())] == 1
    assert got[("edge_dropped_total", ())] == 4
    assert got[("edge_storage_errors_total", ())] == 0
    assert got[("edge_outbox_depth", ())] == 3
    assert got[("edge_rss_bytes", ())] == 100 * 2**20
    assert got[("edge_worker_rss_bytes", ())] == 50 * 2**20
    assert got[("edge_cpu_temperature_celsius", ())] == 48.5
    assert got[("edge_uptime_seconds", ())] == 12.5
    assert got[("edge_camera_up", (("camera", "gate"),))] == 1
    assert got[("edge_camera_up", (("camera", "yard"),))] == 1
    assert got[("edge_camera_frames_total", (("camera", "gate"),))] == 60
    assert got[("edge_camera_gated_total", (("camera", "yard"),))] == 10
    assert got[("edge_camera_jobs_dropped_total", (("camera", "gate"),))] == 2
    assert got[("edge_camera_fps", (("camera", "yard"),))] == 5.0
    assert got[("edge_storage_ok", ())] == 1
    assert got[("edge_state", (("state", "running"),))] == 1
    assert got[("edge_state", (("state", "degraded"),))] == 0
    assert ("edge_info", (("device", "cam-1"), ("version", __version__))) in got
    assert not any(name == "edge_throttled" for name, _ in got), "an unknown reading is left out"

    lost = CameraHealth(state="lost", frames=40, dropped=1, gated=10, jobs_dropped=0, fps=0.0)
    cams = {**_health().cameras, "yard": lost}
    current[0] = _health(jobs=8, camera="lost", state="degraded", cpu_temp_c=None, cameras=cams)
    got = _samples(registry)  # read at scrape time: nothing is counted twice
    assert got[("edge_jobs_total", ())] == 8
    assert got[("edge_camera_up", (("camera", "gate"),))] == 1
    assert got[("edge_camera_up", (("camera", "yard"),))] == 0
    assert got[("edge_state", (("state", "degraded"),))] == 1
    assert not any(name == "edge_cpu_temperature_celsius" for name, _ in got)


def test_histograms_observe_the_meters_where_they_are_fed() -> None:
    meters = Meters()
    registry = build_registry(_health, meters)
    meters.ttft.add(120.0)
    meters.ttft.add(3000.0)
    meters.generation.add(900.0)
    meters.latency.add(1500.0)
    got = _samples(registry)
    assert got[("edge_ttft_seconds_count", ())] == 2
    assert got[("edge_ttft_seconds_sum", ())] == pytest.approx(3.12)
    assert got[("edge_ttft_seconds_bucket", (("le", "0.25"),))] == 1
    assert got[("edge_generation_seconds_count", ())] == 1
    assert got[("edge_frame_to_outbox_seconds_sum", ())] == pytest.approx(1.5)
    assert meters.ttft.percentiles().p50 is not None, "the rolling window still has its samples"


def test_jobs_failures_and_timings_are_labelled_by_task_and_camera() -> None:
    meters = Meters()
    registry = build_registry(_health, meters)
    for task, camera in (("caption", "gate"), ("caption", "gate"), ("caption", "yard"), ("plates", "gate")):
        meters.by_task.inc("jobs", task, camera)
        meters.by_task.observe("ttft", task, camera, 200.0)
    meters.by_task.inc("failures", "plates", "gate")
    meters.by_task.observe("latency", "caption", "yard", 1500.0)
    got = _samples(registry)
    jobs = {labels: v for (name, labels), v in got.items() if name == "edge_task_jobs_total"}
    assert jobs == {
        (("camera", "gate"), ("task", "caption")): 2,
        (("camera", "yard"), ("task", "caption")): 1,
        (("camera", "gate"), ("task", "plates")): 1,
    }
    assert got[("edge_task_failures_total", (("camera", "gate"), ("task", "plates")))] == 1
    assert got[("edge_task_ttft_seconds_count", (("camera", "gate"), ("task", "caption")))] == 2
    assert got[("edge_task_frame_to_outbox_seconds_sum", (("camera", "yard"), ("task", "caption")))] == 1.5


def test_off_by_default_and_loopback_by_default() -> None:
    settings = Settings()
    assert settings.metrics.port is None
    assert settings.metrics.host == "127.0.0.1" and settings.metrics.loopback
    server = MetricsServer(settings.metrics, _sources())
    server.start()
    assert server.registry is None and server.port is None
    server.stop()


@pytest.mark.parametrize("bad", [{"port": 0}, {"port": 70000}, {"host": ""}, {"path": "/x"}])
def test_settings_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MetricsSettings(**bad)


def test_port_without_the_extra_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # `import` raises ImportError
    with pytest.raises(ConfigError) as err:
        MetricsServer(MetricsSettings(port=9100), _sources())
    (line,) = err.value.problems
    assert "metrics.port" in line and "edge-vlm-agent[metrics]" in line and "\n" not in line


def test_serves_metrics_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_mod, "snapshot", lambda _sources: _health(jobs=5))
    server = MetricsServer(MetricsSettings(port=_free_port()), _sources())
    server.start()
    try:
        assert server.port is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
        assert "edge_jobs_total 5.0" in body
    finally:
        server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port or 1}/metrics", timeout=2)


def test_non_loopback_host_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    settings = MetricsSettings(port=_free_port(), host="0.0.0.0")
    assert not settings.loopback
    caplog.set_level(logging.WARNING, logger="edge.daemon.metrics")
    for _ in range(2):
        server = MetricsServer(settings, _sources())
        server.start()
        server.stop()
    warned = [r for r in caplog.records if "no authentication" in r.getMessage()]
    assert len(warned) == 1


def test_a_taken_port_is_logged_and_the_daemon_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MetricsServer(MetricsSettings(port=port), _sources())
        server.start()
        assert server.port is None
        server.stop()
    assert any("cannot listen" in r.getMessage() for r in caplog.records)
