"""Command parsing and routing as pure logic, with a recording client at the publish seam."""

from __future__ import annotations

import json
import logging
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.mqtt.commands import (
    SETTABLE_KEYS,
    AskCommand,
    CaptureCommand,
    CommandError,
    CommandRouter,
    Reply,
    SetCommand,
    parse_json_object,
    parse_set,
)
from edge.mqtt.topics import Topics

TOPICS = Topics(prefix="edge", device_id="d1")


class RecordingClient:
    """Stands in for MqttClient at the seam the router uses: subscribe, properties, publish."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Any, Any]] = []
        self.subscribed: list[str] = []

    def subscribe(self, topic_filter: str, handler: Any, qos: int = 1) -> None:
        self.subscribed.append(topic_filter)

    def properties(self, **kw: Any) -> dict[str, Any]:
        return kw

    def publish(
        self, topic: str, payload: Any, *, qos: int = 1, retain: bool = False, properties: Any = None
    ) -> None:
        if "#" in topic or "+" in topic:
            raise ValueError("Publish topic cannot contain wildcards.")
        self.published.append((topic, json.loads(payload), properties))


class Handler:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail = fail
        self.replies: list[Reply] = []

    def _record(self, name: str, arg: Any, reply: Reply) -> None:
        if self.fail:
            raise RuntimeError("boom")
        self.calls.append((name, arg))
        self.replies.append(reply)

    def on_ask(self, cmd: AskCommand, reply: Reply) -> None:
        self._record("ask", cmd, reply)

    def on_capture(self, cmd: CaptureCommand, reply: Reply) -> None:
        self._record("capture", cmd, reply)

    def on_pause(self, reply: Reply) -> None:
        self._record("pause", None, reply)

    def on_resume(self, reply: Reply) -> None:
        self._record("resume", None, reply)

    def on_set(self, cmd: SetCommand, reply: Reply) -> None:
        self._record("set", cmd.values, reply)

    def on_reload(self, reply: Reply) -> None:
        self._record("reload", None, reply)


def message(
    topic: str, payload: bytes, *, response: str | None = None, corr: bytes | None = None
) -> paho.MQTTMessage:
    msg = paho.MQTTMessage(topic=topic.encode())
    msg.payload = payload
    props = Properties(PacketTypes.PUBLISH)
    if response:
        props.ResponseTopic = response
    if corr is not None:
        props.CorrelationData = corr
    msg.properties = props
    return msg


def router(handler: Handler | None = None) -> tuple[CommandRouter, RecordingClient, Handler]:
    client = RecordingClient()
    h = handler or Handler()
    r = CommandRouter(client, TOPICS, h, max_bytes=1024, task_names=lambda: {"caption", "ask"})  # type: ignore[arg-type]
    return r, client, h


def test_router_subscribes_to_command_filter() -> None:
    _, client, _ = router()
    assert client.subscribed == ["edge/d1/cmd/#"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(b"", {}), (b"  ", {}), (b"{}", {}), (b'{"a": 1}', {"a": 1})],
)
def test_parse_json_object_accepts(payload: bytes, expected: dict[str, Any]) -> None:
    assert parse_json_object(payload) == expected


@pytest.mark.parametrize("payload", [b"{", b"null", b"[]", b'"x"', b"1", b"\xff"])
def test_parse_json_object_refuses(payload: bytes) -> None:
    with pytest.raises(CommandError):
        parse_json_object(payload)


def test_parse_set_coerces_ints_to_floats_and_checks_tasks() -> None:
    cmd = parse_set({"gate.min_interval_s": 1, "tasks.ask.interval_s": 2.5}, {"ask"})
    assert cmd.values == {"gate.min_interval_s": 1.0, "tasks.ask.interval_s": 2.5}
    assert isinstance(cmd.values["gate.min_interval_s"], float)
    with pytest.raises(CommandError, match="unknown task"):
        parse_set({"tasks.other.prompt": "x"}, {"ask"})
    with pytest.raises(CommandError, match="unknown key"):
        parse_set({"tasks.ask.schema": {}}, {"ask"})


def test_settable_keys_never_touch_files_credentials_or_broker() -> None:
    assert not any(
        k.startswith(("mqtt.", "model.", "camera.", "serial.", "watchdog.")) for k in SETTABLE_KEYS
    )


def test_valid_ask_dispatches_and_reply_goes_to_response_topic_with_correlation() -> None:
    r, client, h = router()
    r.handle(
        message("edge/d1/cmd/ask", b'{"prompt": "what?", "image": false}', response="app/r", corr=b"\x01")
    )
    assert h.calls == [("ask", AskCommand(prompt="what?", image=False))]
    assert client.published == []  # the handler answers later
    h.replies[0].ok({"id": "x"})
    h.replies[0].ok({"id": "again"})  # a second answer is ignored
    assert client.published == [
        (
            "app/r",
            {"v": 1, "ok": True, "result": {"id": "x"}},
            {"content_type": "application/json", "correlation_data": b"\x01"},
        )
    ]


def test_handler_exception_becomes_an_error_reply() -> None:
    r, client, _ = router(Handler(fail=True))
    r.handle(message("edge/d1/cmd/pause", b""))
    ((topic, body, _),) = client.published
    assert topic == "edge/d1/reply/pause"  # outside cmd/#: never read back as a command
    assert body["ok"] is False and "internal error" in body["error"]
    assert r.rejected == 1


def test_deeper_topics_are_ignored() -> None:
    r, client, h = router()
    r.handle(message("edge/d1/cmd/ask/reply", b'{"ok": true}'))  # v1's reply topic: not a command
    r.handle(message("edge/d1/cmd/ask/x/y", b"{}"))
    assert h.calls == [] and client.published == [] and r.received == 0


def test_response_topic_inside_our_commands_is_not_used() -> None:
    """A requester asking for the reply on cmd/... would make the daemon read its reply as a command."""
    r, client, h = router()
    r.handle(message("edge/d1/cmd/pause", b"", response="edge/d1/cmd/resume", corr=b"c"))
    h.replies[0].ok()
    ((topic, body, props),) = client.published
    assert topic == "edge/d1/reply/pause" and body["ok"] is True
    assert props["correlation_data"] == b"c"


def test_task_keys_in_set_follow_the_name_rule() -> None:
    with pytest.raises(CommandError, match="unknown key"):
        parse_set({"tasks.ask\n.prompt": "x"}, None)
    assert parse_set({"tasks.ask.prompt": "x"}, None).values == {"tasks.ask.prompt": "x"}


@pytest.mark.parametrize(
    "response",
    [
        "edge/d1/main/caption/result",  # a consumer of results would read the reply as a result
        "edge/d1/status",
        "edge/d1/state",
        "edge/d1/event",
        "edge/d1/health",
        "edge/d1",
        "edge/d1/reply/pause",  # another verb's replies
        "edge/d1/cmd/resume",
        "homeassistant/device/d1/config",
        "homeassistant/status",
        "edge/d2/cmd/pause",  # another device's commands
        "bad/#",
        "app/+/r",
        "$SYS/x",
        "a\x00b",
    ],
)
def test_response_topic_the_device_must_not_publish_to_is_refused(
    response: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A response topic inside the device is refused: the command runs, its reply goes to reply/{verb} with the correlation data,
    and one log line says why; nothing is published on the requested topic."""
    r, client, h = router()
    with caplog.at_level(logging.WARNING, logger="edge.mqtt.commands"):
        r.handle(message("edge/d1/cmd/reload", b"", response=response, corr=b"k"))
    h.replies[0].ok()
    ((topic, body, props),) = client.published
    assert topic == "edge/d1/reply/reload" and body["ok"] is True and props["correlation_data"] == b"k"
    (line,) = [rec.getMessage() for rec in caplog.records if rec.name == "edge.mqtt.commands"]
    assert "response topic" in line and "refused" in line and r.refused_response_topics == 1


@pytest.mark.parametrize("response", ["app/r", "edge/d1/reply/reload", "edge/d10/status", "edge/d2/reply/x"])
def test_a_foreign_response_topic_is_used(response: str, caplog: pytest.LogCaptureFixture) -> None:
    r, client, h = router()
    r.handle(message("edge/d1/cmd/reload", b"", response=response))
    h.replies[0].ok()
    assert [p[0] for p in client.published] == [response]
    assert r.refused_response_topics == 0 and not caplog.records


def test_a_verb_that_cannot_name_a_reply_topic_is_dropped_with_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r, client, h = router()
    r.handle(message("edge/d1/cmd/a b", b"{}"))
    assert client.published == [] and h.calls == [] and r.rejected == 1
    assert any("not a command verb" in rec.getMessage() for rec in caplog.records)


def test_set_paused_maps_to_pause_and_resume() -> None:
    r, _, h = router()
    r.handle(message("edge/d1/cmd/set", b'{"paused": true}'))
    r.handle(message("edge/d1/cmd/set", b'{"paused": false}'))
    assert [c[0] for c in h.calls] == ["pause", "resume"]
