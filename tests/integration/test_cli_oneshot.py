"""The one-shot commands as a user runs them: a subprocess, settings from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from edge.core.messages import ResultPayload

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


def edge(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, env=environ, timeout=120
    )


def test_caption_from_the_camera_prints_one_result_payload() -> None:
    res = edge(
        "caption",
        "--camera",
        "--json",
        EDGE_MODEL__PATH=str(MODELS / "ort-phi3v-fp32"),
        EDGE_MODEL__MAX_NEW_TOKENS="6",
        EDGE_MODEL__NUM_CROPS="1",
    )
    assert res.returncode == 0, res.stderr
    (line,) = res.stdout.strip().splitlines()
    payload = ResultPayload.model_validate(json.loads(line))
    assert payload.trigger == "command" and payload.captured_at is not None
    # the random fixture's words are noise: it may even end at once on some frames (EOS first)
    assert payload.stats.image_tokens == 313 and 0 <= payload.stats.new_tokens <= 6
    assert payload.stats.stop_reason in ("eos", "max_tokens")


def test_caption_of_a_truncated_jpeg_is_one_line_and_exit_1(tmp_path: Path) -> None:
    ok, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 127, np.uint8))
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(buf.tobytes()[: len(buf) // 2])
    res = edge("caption", str(bad), EDGE_MODEL__PATH=str(MODELS / "ort-phi3v-fp32"))
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"edge: error: {bad}: JPEG is truncated (no end-of-image marker)"
    ]


def test_missing_model_folder_is_one_line(tmp_path: Path) -> None:
    res = edge("ask", "hello", EDGE_MODEL__PATH=str(tmp_path / "nope"))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge: error:") and "nope" in lines[0]
    assert "Traceback" not in res.stderr


def test_help_lists_every_subcommand_of_the_contract() -> None:
    res = edge("--help")
    assert res.returncode == 0
    for cmd in ("run", "caption", "ask", "config", "devices", "doctor", "bench", "service"):
        assert f"    {cmd}" in res.stdout
    assert edge("--version").stdout.startswith("edge ")
    assert edge().returncode == 2


def test_mqtt_forget_clears_the_retained_discovery_config(mosquitto) -> None:
    from tests.plugins.mosquitto import Collector

    topic = "homeassistant/device/cam-x/config"
    pub = Collector(mosquitto, "x/none").start()
    pub.publish(topic, b'{"dev":{}}', retain=True)
    res = edge("mqtt", "forget", "--set", "device_id=cam-x", "--set", f"mqtt.port={mosquitto.port}")
    assert res.returncode == 0, res.stderr
    late = Collector(mosquitto, topic).start()
    try:
        import time

        time.sleep(0.5)
        assert late.on(topic) == []  # the empty retained payload removed it
    finally:
        late.stop()
        pub.stop()
