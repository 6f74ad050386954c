"""A model folder that is there but fails to load is not a config error: the daemon starts
degraded and retries with backoff (a driver or a file being copied may come right later). Only a
folder that is not there at all is refused at start (tests/unit/test_config_check.py)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tests.e2e.harness import base_settings, start_daemon
from tests.plugins.models import model_dir


def test_a_model_that_fails_to_load_keeps_the_backoff(tmp_path: Path, mosquitto) -> None:
    broken = tmp_path / "broken-model"
    shutil.copytree(model_dir("ort-phi3v-fp32"), broken)
    for onnx in broken.glob("*.onnx"):
        onnx.write_bytes(b"not an onnx graph")  # genai_config.json is intact: config check passes
    cfg = base_settings(tmp_path, mosquitto)
    cfg["model"]["path"] = str(broken)
    d = start_daemon(tmp_path, cfg)
    try:
        deadline = time.monotonic() + 90
        while "model not loaded" not in d.log() and time.monotonic() < deadline:
            assert d.alive(), d.log()[-3000:]
            time.sleep(0.5)
        assert "model not loaded" in d.log() and "retrying with backoff" in d.log(), d.log()[-3000:]
        assert d.alive() and "config error" not in d.log()
    finally:
        d.stop()
