"""`edge caption` / `edge ask` logic on the fixture models, both backends, in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.cli.oneshot import ask, caption
from edge.config.settings import OpenVINOModelSettings, Settings, model_settings
from edge.core.errors import ConfigError, FrameError
from edge.core.messages import ResultPayload
from tests.plugins.models import model_dir


def _settings(name: str, backend: str, **kw: Any) -> Settings:
    return Settings(
        device_id="cam-01",
        model=model_settings(path=model_dir(name), backend=backend, max_new_tokens=8),
        **kw,
    )


@pytest.fixture
def jpeg(tmp_path: Path) -> Path:
    path = tmp_path / "frame.jpg"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8))
    return path


@pytest.mark.parametrize(("name", "backend"), [("ort-phi3v-fp32", "ort-genai"), ("ov-phi3v", "openvino")])
def test_caption_json_is_one_result_payload(name: str, backend: str, jpeg: Path, capsys) -> None:
    assert caption(_settings(name, backend), jpeg, None, as_json=True) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    payload = ResultPayload.model_validate_json(lines[0])
    assert (payload.seq, payload.trigger, payload.device, payload.task) == (0, "command", "cam-01", "caption")
    assert payload.model.backend == backend and payload.model.name == name
    assert payload.stats.image_tokens == 757 and payload.captured_at is not None
    assert json.loads(lines[0])["v"] == 2


def test_ask_text_uses_text_model_and_prints_plain_text(capsys) -> None:
    settings = _settings("ort-phi3v-fp32", "ort-genai")
    settings.text_model = OpenVINOModelSettings(
        path=model_dir("ov-phi3"), backend="openvino", max_new_tokens=4
    )
    assert ask(settings, "Count the people.", None, as_json=True) == 0
    payload = ResultPayload.model_validate_json(capsys.readouterr().out)
    assert payload.model.name == "ov-phi3" and payload.stats.image_tokens == 0 and payload.captured_at is None
    assert ask(settings, "Count the people.", None, as_json=False) == 0
    assert capsys.readouterr().out.endswith("\n")


def test_errors_propagate_for_the_cli(tmp_path: Path, jpeg: Path) -> None:
    with pytest.raises(ConfigError):
        caption(Settings(), jpeg, None, as_json=False)  # model.path not set
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(jpeg.read_bytes()[:500])
    with pytest.raises(FrameError):
        caption(_settings("ort-phi3v-fp32", "ort-genai"), bad, "x", as_json=False)
