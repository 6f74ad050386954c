"""Values that passed `config check` and then broke the daemon at run time."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config.settings import MAX_PERIOD_S, MqttSettings, TaskSettings
from edge.config.sources import load_settings
from edge.core.errors import ConfigError
from edge.mqtt.commands import CommandError, parse_json_object, parse_set


def _problems(**overrides: str) -> list[str]:
    sets = [f"{k}={v}" for k, v in overrides.items()]
    with pytest.raises(ConfigError) as info:
        load_settings(overrides=sets, environ={})
    return info.value.problems


def test_a_client_id_longer_than_mqtt_allows_is_refused() -> None:
    problems = _problems(**{"mqtt.client_id": '"' + "x" * 70_000 + '"'})
    assert len(problems) == 1 and "mqtt.client_id" in problems[0] and "65535" in problems[0]
    assert MqttSettings(client_id="é" * 32767).client_id  # 65534 bytes: at the limit
    with pytest.raises(ValueError, match="65535"):
        MqttSettings(client_id="é" * 32768)
    for bad in ("", "a\nb"):
        with pytest.raises(ValueError):
            MqttSettings(client_id=bad)


@pytest.mark.parametrize("prefix", ["home/+/x", "home/#", "", "/ha", "ha/", "a//b"])
def test_discovery_prefix_must_be_a_topic_to_publish_to(prefix: str) -> None:
    problems = _problems(**{"mqtt.discovery_prefix": f'"{prefix}"'})
    assert any("mqtt.discovery_prefix" in p for p in problems), problems


def test_a_nested_discovery_prefix_is_fine() -> None:
    assert MqttSettings(discovery_prefix="site-1/homeassistant").discovery_prefix == "site-1/homeassistant"


@pytest.mark.parametrize("value", ["1e308", "inf", "nan"])
def test_absurd_or_non_finite_periods_are_refused(value: str) -> None:
    problems = _problems(**{"tasks": f'[{{name = "t", trigger = "interval", interval_s = {value}}}]'})
    assert any("interval_s" in p for p in problems), problems
    problems = _problems(**{"gate.cooldown_s": value})
    assert any("gate.cooldown_s" in p for p in problems), problems


def test_cmd_set_refuses_absurd_and_non_finite_values() -> None:
    for raw in (1e308, math.inf, math.nan):
        with pytest.raises(CommandError, match="interval_s"):
            parse_set({"tasks.cap.interval_s": raw}, ["cap"])
        with pytest.raises(CommandError, match="cooldown_s"):
            parse_set({"gate.cooldown_s": raw}, None)
    # JSON itself may carry them: Python's json reads Infinity and NaN
    body = parse_json_object(b'{"tasks.cap.interval_s": Infinity}')
    with pytest.raises(CommandError):
        parse_set(body, ["cap"])
    assert parse_set({"tasks.cap.interval_s": MAX_PERIOD_S}, ["cap"]).values
    with pytest.raises(ValueError):
        TaskSettings(name="t", trigger="interval", interval_s=1e308)


def test_deeply_nested_json_is_a_clear_refusal() -> None:
    payload = b"[" * 32_000 + b"]" * 32_000  # 64 KB, within the default size limit
    assert len(payload) <= 65536
    with pytest.raises(CommandError, match="nested too deeply"):
        parse_json_object(payload)
    with pytest.raises(CommandError, match="nested too deeply"):
        parse_json_object(b'{"prompt": ' + b"[" * 32_000 + b"]" * 32_000 + b"}")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin"},
        timeout=60,
    )


def test_a_config_file_that_is_not_utf8_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('device_id = "caméra"\n'.encode("latin-1"))
    res = run_cli("config", "check", "--config", str(bad))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "UTF-8" in lines[0], lines
    assert "internal error" not in res.stderr


def test_a_config_file_nested_too_deeply_is_a_config_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 32_000 + "]" * 32_000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_settings(config=deep, environ={})


@pytest.mark.parametrize("key", ["MQTT.host", "Device_Id", "DEVICE_NAME"])
def test_a_top_level_key_in_other_case_is_an_unknown_key_not_a_silent_one(key: str) -> None:
    """Top-level keys are as case-sensitive as every section's: `MQTT.host` beside the profile's [mqtt]
    was once dropped without a word (pydantic-settings matched both names to `mqtt`, kept one)."""
    problems = _problems(**{key: '"x"'})
    top = key.split(".")[0]
    assert problems == [f"{top}: unknown key (from --set {key})"], problems
