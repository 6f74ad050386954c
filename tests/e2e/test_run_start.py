"""`edge run` start-up as a board owner meets it: what is refused, what is waited for, what is said.

A model folder that is there but fails to load is not a config error: the daemon starts degraded
and retries with backoff (a driver or a file being copied may come right later). Only a folder that
is not there at all is refused at start (tests/unit/test_config_check.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.harness import DaemonProcess, base_settings, start_daemon
from tests.plugins.models import model_dir


def wait_log(d: DaemonProcess, text: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while text not in d.log():
        assert d.alive(), d.log()[-3000:]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in the log within {timeout:.0f} s:\n{d.log()[-3000:]}")
        time.sleep(0.3)
    return d.log()


def test_a_model_that_fails_to_load_keeps_the_backoff(tmp_path: Path, mosquitto) -> None:
    broken = tmp_path / "broken-model"
    shutil.copytree(model_dir("ort-phi3v-fp32"), broken)
    for onnx in broken.glob("*.onnx"):
        onnx.write_bytes(b"not an onnx graph")  # genai_config.json is intact: config check passes
    cfg = base_settings(tmp_path, mosquitto)
    cfg["model"]["path"] = str(broken)
    d = start_daemon(tmp_path, cfg)
    try:
        log = wait_log(d, "running:")
        assert "model not loaded" in log and "retrying with backoff" in log, log[-3000:]
        assert d.alive() and "config error" not in log
        # the running line says the model is not loaded, not "model X on None"
        running = next(line for line in log.splitlines() if "running:" in line)
        assert "broken-model (not loaded yet)" in running and "None" not in running, running
    finally:
        d.stop()


def test_a_second_run_names_the_outbox_setting(tmp_path: Path, mosquitto) -> None:
    d = start_daemon(tmp_path, base_settings(tmp_path, mosquitto))
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 60)
        second = subprocess.run(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(d.config)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert second.returncode == 1, second.stderr[-2000:]
        last = second.stderr.strip().splitlines()[-1]
        assert f"mqtt.outbox_path ({d.config})" in last and "in use by another process" in last, last
    finally:
        d.stop()


def test_a_missing_video_device_is_said_at_once_and_not_waited_for(tmp_path: Path, mosquitto) -> None:
    if not sys.platform.startswith("linux") or Path("/dev/video97").exists():
        pytest.skip("needs Linux without /dev/video97")
    cfg = base_settings(tmp_path, mosquitto)
    cfg["camera"]["source"] = "/dev/video97"
    d = start_daemon(tmp_path, cfg)
    try:
        log = wait_log(d, "running:")
        said = log.index("/dev/video97 does not exist; not waiting for it")
        assert said < log.index("running:")
        assert "no frame from camera" not in log  # no 30 s wait for a frame that cannot come
    finally:
        d.stop()


@pytest.mark.parametrize("own_model", [True, False])
def test_the_demo_notice_is_about_the_demo_model(tmp_path: Path, mosquitto, own_model: bool) -> None:
    cfg = base_settings(tmp_path, mosquitto)
    if not own_model:
        del cfg["model"]["path"]  # the demo profile's packaged stand-in
    d = start_daemon(tmp_path, cfg, args=("--profile", "demo"))
    try:
        log = wait_log(d, "running:")
        assert ("tiny stand-in" in log) is (not own_model), log[-3000:]
    finally:
        d.stop()
