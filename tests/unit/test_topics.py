"""The topic contract of DESIGN.md (v1), spelled out topic by topic."""

from __future__ import annotations

import pytest

from edge.config.settings import MqttSettings, TaskSettings
from edge.mqtt.topics import Topics


def test_contract_topics() -> None:
    t = Topics(prefix="edge", device_id="cam-01")
    assert t.status == "edge/cam-01/status"
    assert t.state == "edge/cam-01/state"
    assert t.health == "edge/cam-01/health"
    assert t.event == "edge/cam-01/event"
    assert t.result("caption") == "edge/cam-01/caption/result"
    assert t.image("caption") == "edge/cam-01/caption/image"
    assert t.command("ask") == "edge/cam-01/cmd/ask"
    assert t.command_reply("ask") == "edge/cam-01/cmd/ask/reply"
    assert t.command_filter == "edge/cam-01/cmd/#"
    assert t.discovery_config == "homeassistant/device/cam-01/config"
    assert t.ha_status == "homeassistant/status"


def test_from_settings_applies_task_topic_override() -> None:
    tasks = [TaskSettings(name="caption"), TaskSettings(name="people", topic="counts/people")]
    t = Topics.from_settings(MqttSettings(prefix="site1", discovery_prefix="ha"), "dev", tasks)
    assert t.result("caption") == "site1/dev/caption/result"
    assert t.result("people") == "site1/dev/counts/people/result"
    assert t.image("people") == "site1/dev/counts/people/image"
    assert t.discovery_config == "ha/device/dev/config"


@pytest.mark.parametrize(
    ("topic", "parsed"),
    [
        ("edge/d/cmd/ask", ("ask", False)),
        ("edge/d/cmd/bogus", ("bogus", False)),
        ("edge/d/cmd/ask/reply", ("ask", True)),
        ("edge/d/cmd/ask/other", None),
        ("edge/d/cmd/", None),
        ("edge/other/cmd/ask", None),
        ("edge/d/caption/result", None),
    ],
)
def test_parse_command(topic: str, parsed: tuple[str, bool] | None) -> None:
    assert Topics(prefix="edge", device_id="d").parse_command(topic) == parsed


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "a b"])
def test_rejects_unsafe_levels(bad: str) -> None:
    with pytest.raises(ValueError):
        Topics(prefix="edge", device_id=bad)
    with pytest.raises(ValueError):
        Topics(prefix="edge", device_id="d").result(bad)
