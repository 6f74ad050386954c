"""Log hygiene: the same words in `run` and `doctor`, and the console shows the text."""

from __future__ import annotations

import logging

import pytest

from edge.cli.doctor.broker import check_broker
from edge.config.settings import MqttSettings
from edge.core.messages import Generation, ModelPayload, ResultPayload, StatsPayload
from edge.mqtt.client import MqttClient
from edge.mqtt.topics import Topics
from edge.pipeline.results import ResultInput, build_result, console_line

HOST = "no-such-broker.invalid"  # RFC 6761: never resolves


def test_run_and_doctor_both_say_cannot_resolve(caplog: pytest.LogCaptureFixture) -> None:
    settings = MqttSettings(host=HOST)
    client = MqttClient(settings, Topics("edge", "cam-1"))
    with caplog.at_level(logging.WARNING, logger="edge.mqtt.client"):
        client._on_connect_fail(None, None)
    assert f"cannot resolve '{HOST}'" in caplog.text, caplog.text
    result = check_broker(settings, "cam-1", timeout_s=2.0)
    assert result.status == "fail" and f"cannot resolve '{HOST}'" in result.detail, result


def _payload(text: str) -> ResultPayload:
    stats = StatsPayload(
        prompt_tokens=1,
        image_tokens=0,
        new_tokens=3,
        ttft_ms=1,
        decode_tok_s=1,
        total_ms=5,
        stop_reason="eos",
    )
    item = ResultInput(
        device="cam-1",
        task="caption",
        camera="main",
        trigger="interval",
        generation=Generation(text=text, stats=stats),
        model=ModelPayload(name="m", backend="ort-genai", provider="cpu"),
        captured_at=None,
    )
    return build_result(item, seq=7, result_id="cam-1-1-7")


def test_the_console_echo_shows_the_text_on_one_safe_line() -> None:
    line = console_line(_payload("A red ball\non the grass.\x1b[2J"))
    assert line.startswith("[7] caption (interval)")
    assert "A red ball on the grass." in line
    assert "\x1b" not in line and "\n" not in line
    assert console_line(_payload("")).endswith("(no text)")
