"""The topic contract of docs/mqtt-contract.md (v2), spelled out topic by topic."""

from __future__ import annotations

import pytest

from edge.config.settings import MqttSettings, TaskSettings
from edge.core.names import RESERVED
from edge.mqtt.topics import COMMAND_VERBS, Topics


def test_contract_topics() -> None:
    t = Topics(prefix="edge", device_id="cam-01")
    assert t.status == "edge/cam-01/status"
    assert t.state == "edge/cam-01/state"
    assert t.health == "edge/cam-01/health"
    assert t.event == "edge/cam-01/event"
    assert t.result("main", "caption") == "edge/cam-01/main/caption/result"
    assert t.image("main", "caption") == "edge/cam-01/main/caption/image"
    assert t.command("ask") == "edge/cam-01/cmd/ask"
    assert t.reply("ask") == "edge/cam-01/reply/ask"
    assert t.command_filter == "edge/cam-01/cmd/#"
    assert t.discovery_config == "homeassistant/device/cam-01/config"
    assert t.ha_status == "homeassistant/status"


def test_from_settings_applies_task_topic_override() -> None:
    tasks = [TaskSettings(name="caption"), TaskSettings(name="people", topic="counts/people")]
    t = Topics.from_settings(MqttSettings(prefix="site1", discovery_prefix="ha"), "dev", tasks)
    assert t.result("yard", "caption") == "site1/dev/yard/caption/result"
    assert t.result("yard", "people") == "site1/dev/counts/people/result"  # relative to the device root
    assert t.image("yard", "people") == "site1/dev/counts/people/image"
    assert t.discovery_config == "ha/device/dev/config"


@pytest.mark.parametrize(
    ("topic", "verb"),
    [
        ("edge/d/cmd/ask", "ask"),
        ("edge/d/cmd/bogus", "bogus"),
        ("edge/d/cmd/ask/reply", None),
        ("edge/d/cmd/ask/other", None),
        ("edge/d/cmd/", None),
        ("edge/d/reply/ask", None),
        ("edge/other/cmd/ask", None),
        ("edge/d/main/caption/result", None),
    ],
)
def test_parse_command(topic: str, verb: str | None) -> None:
    assert Topics(prefix="edge", device_id="d").parse_command(topic) == verb


@pytest.mark.parametrize("task", [*COMMAND_VERBS, "caption"])
def test_nothing_the_daemon_publishes_is_read_as_a_command(task: str) -> None:
    """A task named like a verb (or anything else) publishes outside cmd/#, and so do replies."""
    t = Topics(prefix="edge", device_id="d")
    published = [t.status, t.state, t.health, t.event, t.result("main", task), t.image("main", task)]
    published += [t.reply(v) for v in COMMAND_VERBS]
    published += [t.reply_to(v, t.command(v)) for v in COMMAND_VERBS]  # a response topic in cmd/#
    for topic in published:
        assert not t.is_command_topic(topic), topic
        assert t.parse_command(topic) is None, topic


def test_reply_to_uses_a_foreign_response_topic() -> None:
    t = Topics(prefix="edge", device_id="d")
    assert t.reply_to("ask", "app/replies/1") == "app/replies/1"
    assert t.reply_to("ask", None) == "edge/d/reply/ask"
    assert t.reply_to("ask", "edge/d/cmd") == "edge/d/reply/ask"
    # a reply never goes into the device's own publish namespace, nor to a wildcard
    for own in ("edge/d/status", "edge/d/main/caption/result", "edge/d/reply/set", "edge/+/x", "#"):
        assert t.reply_to("ask", own) == "edge/d/reply/ask", own
        assert t.refuse_response_topic("ask", own), own
    assert t.refuse_response_topic("ask", "edge/d/reply/ask") is None
    assert t.refuse_response_topic("ask", "edge/dd/status") is None  # a prefix of the name is not the device


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "a b", "ab\n", "x" * 65])
def test_rejects_unsafe_levels(bad: str) -> None:
    with pytest.raises(ValueError):
        Topics(prefix="edge", device_id=bad)
    with pytest.raises(ValueError):
        Topics(prefix="edge", device_id="d").result("main", bad)
    with pytest.raises(ValueError):
        Topics(prefix="edge", device_id="d").result(bad, "caption")


@pytest.mark.parametrize("word", sorted(RESERVED))
def test_rejects_reserved_words_below_the_device(word: str) -> None:
    with pytest.raises(ValueError, match="reserved"):
        Topics(prefix="edge", device_id=word)
    with pytest.raises(ValueError, match="reserved"):
        Topics(prefix="edge", device_id="d").result("main", word)
    with pytest.raises(ValueError, match="reserved"):
        Topics(prefix="edge", device_id="d").result(word, "caption")
    with pytest.raises(ValueError, match="reserved"):
        Topics(prefix="edge", device_id="d", task_topics=(("t", f"x/{word}"),))
    assert Topics(prefix=word, device_id="d").root == f"{word}/d"  # above the device: no collision
