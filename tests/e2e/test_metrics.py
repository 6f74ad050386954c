"""`[metrics] port`: `edge run` as a subprocess, /metrics scraped over HTTP; off, nothing listens."""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.daemon.metrics import MISSING
from tests.e2e.harness import DaemonProcess, base_settings, start_daemon

RESULT = "edge/cam-e2e/main/caption/result"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {
        s.name + "".join(f"{{{k}={v}}}" for k, v in sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _listening(d: DaemonProcess) -> list[int]:
    proc = psutil.Process(d.pid)
    conns = proc.net_connections("inet") if hasattr(proc, "net_connections") else proc.connections("inet")
    return [c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN]


def test_metrics_endpoint_is_scraped_and_counts_results(tmp_path: Path, mosquitto, sub) -> None:
    port = _free_port()
    d = start_daemon(tmp_path, base_settings(tmp_path, mosquitto, metrics={"port": port}))
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 60)
        assert _listening(d) == [port], "loopback only, the one port"
        sub.wait_topic(RESULT, count=1, timeout=30)
        first = _scrape(port)
        for name in (
            "edge_frames_total",
            "edge_frames_dropped_total",
            "edge_gated_total",
            "edge_jobs_total",
            "edge_failures_total",
            "edge_worker_restarts_total",
            "edge_dropped_total",
            "edge_storage_errors_total",
            "edge_outbox_depth",
            "edge_rss_bytes",
            "edge_uptime_seconds",
            "edge_camera_up{camera=main}",
            "edge_camera_frames_total{camera=main}",
            "edge_task_jobs_total{camera=main}{task=caption}",
            "edge_task_ttft_seconds_count{camera=main}{task=caption}",
            "edge_state{state=running}",
            "edge_ttft_seconds_count",
            "edge_generation_seconds_count",
            "edge_frame_to_outbox_seconds_count",
        ):
            assert name in first, (name, sorted(first))
        assert first["edge_jobs_total"] >= 1 and first["edge_ttft_seconds_count"] >= 1
        seen = len(sub.on(RESULT))
        sub.wait_topic(RESULT, count=seen + 2, timeout=30)
        deadline = time.monotonic() + 10
        while True:  # the result reaches the broker a moment after the meters count it
            later = _scrape(port)
            if later["edge_jobs_total"] >= first["edge_jobs_total"] + 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert later["edge_jobs_total"] >= first["edge_jobs_total"] + 2
        assert later["edge_ttft_seconds_count"] > first["edge_ttft_seconds_count"]
        assert later["edge_generation_seconds_count"] > first["edge_generation_seconds_count"]
        assert later["edge_frames_total"] > first["edge_frames_total"]
    finally:
        rc = d.stop(timeout=30)
    assert rc == 0, d.log()[-3000:]
    assert "metrics: serving http://127.0.0.1" in d.log()
    with pytest.raises(OSError):
        _scrape(port)


def test_metrics_off_nothing_listens(tmp_path: Path, mosquitto) -> None:
    d = start_daemon(tmp_path, base_settings(tmp_path, mosquitto))
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 60)
        assert _listening(d) == []
    finally:
        rc = d.stop(timeout=30)
    assert rc == 0, d.log()[-3000:]
    assert "metrics:" not in d.log()


def test_port_set_without_the_extra_fails_with_one_config_line(tmp_path: Path, mosquitto) -> None:
    shadow = tmp_path / "shadow" / "prometheus_client"  # a python without the metrics extra
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    path = os.pathsep.join(p for p in (str(shadow.parent), os.environ.get("PYTHONPATH", "")) if p)
    d = start_daemon(
        tmp_path,
        base_settings(tmp_path, mosquitto, metrics={"port": _free_port()}),
        notify=False,
        env={"PYTHONPATH": path},
    )
    assert d.proc.wait(30) == 2, d.log()[-3000:]
    errors = [line for line in d.log().splitlines() if line.startswith("edge: config error:")]
    assert errors == [f"edge: config error: {MISSING}"], d.log()[-3000:]
