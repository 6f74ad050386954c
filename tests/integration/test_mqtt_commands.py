"""Commands over a real broker: every malformed command gets its error reply; ask/capture answer
with a result on the camera's task topic and a reply carrying the request's correlation data."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from edge.mqtt.commands import AskCommand, CaptureCommand, CommandRouter, Reply, SetCommand
from edge.mqtt.publisher import Publisher
from tests.integration.mqtt_stack import DEVICE, Stack, committed, make_stack, result_builder
from tests.plugins.mosquitto import Broker, Collector

ROOT = f"edge/{DEVICE}"
TASKS = {"caption", "ask", "pause"}  # a task named like a verb is allowed


class FakeRuntime:
    """The seam: records calls and, like the runtime, answers ask/capture later from its own thread."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.calls: list[tuple[str, Any]] = []

    def _later(self, task: str, text: str, reply: Reply) -> None:
        def job() -> None:
            result = committed(self.publisher.publish_result(result_builder(task=task, text=text)))
            reply.ok({"id": result.id, "task": result.task, "text": result.text})

        threading.Thread(target=job, name="fake-job").start()

    def on_ask(self, cmd: AskCommand, reply: Reply) -> None:
        self.calls.append(("ask", cmd))
        self._later(cmd.task or "ask", cmd.prompt, reply)

    def on_capture(self, cmd: CaptureCommand, reply: Reply) -> None:
        self.calls.append(("capture", cmd))
        self._later(cmd.task or "caption", "captured", reply)

    def on_pause(self, reply: Reply) -> None:
        self.calls.append(("pause", None))
        reply.ok({"state": "paused"})

    def on_resume(self, reply: Reply) -> None:
        self.calls.append(("resume", None))
        reply.ok({"state": "running"})

    def on_set(self, cmd: SetCommand, reply: Reply) -> None:
        self.calls.append(("set", cmd.values))
        reply.ok({"applied": sorted(cmd.values)})

    def on_reload(self, reply: Reply) -> None:
        self.calls.append(("reload", None))
        reply.ok()


@pytest.fixture
def wired(mosquitto: Broker, collector_factory: Any, tmp_path: Path) -> Any:
    stack: Stack = make_stack(mosquitto.mqtt_settings(max_command_bytes=512), tmp_path / "o.db")
    runtime = FakeRuntime(stack.publisher)
    CommandRouter(stack.client, stack.topics, runtime, max_bytes=512, task_names=lambda: TASKS)
    stack.start()
    assert stack.client.wait_connected(10)
    sub: Collector = collector_factory(mosquitto, [f"{ROOT}/#", "replies/#"])
    # `online` is published in on_connect after the subscriptions, and the broker handles one client's
    # packets in order: once it is seen, commands reach the router (wait_connected alone races).
    sub.wait_topic(f"{ROOT}/status")
    yield stack, runtime, sub
    stack.stop()


MALFORMED = [
    ("ask", b"{not json", "malformed JSON"),
    ("ask", b"[1, 2]", "JSON object"),
    ("ask", b"\xff\xfe", "UTF-8"),
    ("ask", b"{}", "prompt"),  # missing prompt
    ("ask", b'{"prompt": 42}', "prompt"),  # wrong type
    ("ask", b'{"prompt": ""}', "prompt"),  # empty
    ("ask", b'{"prompt": "hi", "colour": "red"}', "colour"),  # unknown key
    ("ask", b'{"prompt": "hi", "image": "yes"}', "image"),  # wrong type
    ("ask", b'{"prompt": "hi", "task": "nope"}', "nope"),  # unknown task
    ("ask", json.dumps({"prompt": "x" * 600}).encode(), "too large"),  # over max_command_bytes
    ("capture", b'{"task": 7}', "task"),
    ("pause", b'{"now": true}', "now"),
    ("set", b"{}", "at least one"),
    ("set", b'{"mqtt.host": "evil"}', "mqtt.host"),  # not settable: the broker is off limits
    ("set", b'{"model.path": "/tmp/x"}', "model.path"),  # nor files
    ("set", b'{"gate.cooldown_s": "5"}', "gate.cooldown_s"),  # a string is not a number
    ("set", b'{"gate.motion_threshold": 3}', "gate.motion_threshold"),  # out of range
    ("set", b'{"tasks.nope.prompt": "hi"}', "nope"),
    ("set", b'{"paused": true, "gate.cooldown_s": 1}', "paused"),
    ("explode", b"{}", "unknown command"),
]


@pytest.mark.parametrize(
    ("verb", "payload", "mentions"), MALFORMED, ids=[f"{v}-{i}" for i, (v, _, _) in enumerate(MALFORMED)]
)
def test_malformed_command_gets_an_error_reply(wired: Any, verb: str, payload: bytes, mentions: str) -> None:
    stack, runtime, sub = wired
    sub.publish(f"{ROOT}/cmd/{verb}", payload)
    (reply,) = sub.wait_topic(f"{ROOT}/reply/{verb}")
    body = reply.json()
    assert body["ok"] is False and mentions in body["error"]
    assert runtime.calls == []
    # With a response topic and correlation data (MQTT 5), the error goes there instead.
    sub.publish(f"{ROOT}/cmd/{verb}", payload, response_topic="replies/me", correlation_data=b"c-1")
    (direct,) = sub.wait_topic("replies/me")
    assert direct.correlation_data == b"c-1" and direct.json()["ok"] is False
    assert stack.client.is_connected  # nothing in paho's thread broke


def test_retained_command_is_refused_not_replayed(
    mosquitto: Broker, collector_factory: Any, tmp_path: Path
) -> None:
    sub: Collector = collector_factory(mosquitto, [f"{ROOT}/cmd/#", f"{ROOT}/reply/#"])
    sub.publish(f"{ROOT}/cmd/pause", b"{}", retain=True)  # would pause the device on every reconnect
    stack: Stack = make_stack(mosquitto.mqtt_settings(), tmp_path / "o.db")
    runtime = FakeRuntime(stack.publisher)
    CommandRouter(stack.client, stack.topics, runtime)
    stack.start()
    try:
        (reply,) = sub.wait_topic(f"{ROOT}/reply/pause")
    finally:
        stack.stop()
    assert reply.json()["ok"] is False and "retained" in reply.json()["error"]
    assert runtime.calls == []


def test_retained_command_published_while_connected_is_refused_too(wired: Any) -> None:
    """A live retained publish is forwarded with its retain flag cleared unless the subscription
    asks for retain-as-published (MQTT 5); with it, the router sees the flag and refuses."""
    stack, runtime, sub = wired
    sub.publish(f"{ROOT}/cmd/pause", b"{}", retain=True)
    (reply,) = sub.wait_topic(f"{ROOT}/reply/pause")
    assert reply.json()["ok"] is False and "retained" in reply.json()["error"]
    sub.publish(f"{ROOT}/cmd/pause", b"", retain=True)  # clear the retained message
    sub.publish(f"{ROOT}/cmd/resume", b"{}")
    (resumed,) = sub.wait_topic(f"{ROOT}/reply/resume")
    assert resumed.json()["ok"] is True
    assert all(r.json()["ok"] is False for r in sub.on(f"{ROOT}/reply/pause"))
    assert runtime.calls == [("resume", None)]


@pytest.mark.parametrize(
    ("verb", "body", "task"), [("ask", {"prompt": "Is the door open?"}, "ask"), ("capture", {}, "caption")]
)
def test_ask_and_capture_publish_a_result_and_echo_correlation(
    wired: Any, verb: str, body: dict[str, Any], task: str
) -> None:
    stack, runtime, sub = wired
    sub.publish(
        f"{ROOT}/cmd/{verb}", json.dumps(body), response_topic="replies/app", correlation_data=b"\x00req-7"
    )
    (reply,) = sub.wait_topic("replies/app")
    (result,) = sub.wait_topic(f"{ROOT}/main/{task}/result")
    assert reply.correlation_data == b"\x00req-7"
    assert reply.content_type == "application/json"
    answer = reply.json()
    assert answer["ok"] is True and answer["result"]["id"] == result.json()["id"]
    assert result.json()["task"] == task
    assert [c[0] for c in runtime.calls] == [verb]


def test_the_daemon_never_reads_its_own_publications_as_commands(wired: Any) -> None:
    """v1 replied on cmd/{verb}/reply and a task named `cmd` published into cmd/#; in v2 a task named
    like a verb publishes on {camera}/{task}/result, and a response topic inside cmd/# is not used."""
    stack, runtime, sub = wired
    sub.publish(
        f"{ROOT}/cmd/capture",
        b'{"task": "pause"}',
        response_topic=f"{ROOT}/cmd/resume",
        correlation_data=b"x",
    )
    (result,) = sub.wait_topic(f"{ROOT}/main/pause/result")
    (reply,) = sub.wait_topic(f"{ROOT}/reply/capture")
    assert reply.correlation_data == b"x" and reply.json()["result"]["id"] == result.json()["id"]
    sub.publish(f"{ROOT}/cmd/reload", b"")  # a probe: once it is answered, anything misread would be too
    sub.wait_topic(f"{ROOT}/reply/reload")
    assert [c[0] for c in runtime.calls] == ["capture", "reload"]
    assert not sub.on(f"{ROOT}/reply/pause") and not sub.on(f"{ROOT}/reply/resume")


def test_response_topics_inside_the_device_are_refused(wired: Any) -> None:
    """A requester naming the device's own result or status topic as the response
    topic gets the reply on reply/{verb}; nothing lands on the topics consumers trust."""
    stack, runtime, sub = wired
    own = [f"{ROOT}/main/caption/result", f"{ROOT}/status", f"homeassistant/device/{DEVICE}/config", "x/#"]
    for i, topic in enumerate(own):
        sub.publish(f"{ROOT}/cmd/pause", b"", response_topic=topic, correlation_data=b"%d" % i)
    replies = sub.wait_topic(f"{ROOT}/reply/pause", count=len(own))
    assert sorted(r.correlation_data for r in replies) == [b"%d" % i for i in range(len(own))]
    assert all(r.json()["ok"] for r in replies)
    sub.publish(f"{ROOT}/cmd/reload", b"")  # a probe: anything misdirected would have arrived before it
    sub.wait_topic(f"{ROOT}/reply/reload")
    assert not sub.on(f"{ROOT}/main/caption/result")
    assert [m.text for m in sub.on(f"{ROOT}/status")] == ["online"]
    assert [c[0] for c in runtime.calls] == ["pause"] * len(own) + ["reload"]
    assert stack.client.is_connected


def test_valid_control_commands_reach_the_handler(wired: Any) -> None:
    stack, runtime, sub = wired
    sub.publish(f"{ROOT}/cmd/pause", b"")
    sub.publish(f"{ROOT}/cmd/resume", b"{}")
    sub.publish(f"{ROOT}/cmd/set", b'{"gate.cooldown_s": 2.5, "tasks.caption.prompt": "Describe."}')
    sub.publish(f"{ROOT}/cmd/set", b'{"paused": true}')  # what the Home Assistant switch sends
    sub.publish(f"{ROOT}/cmd/reload", b"")
    for verb, count in (("pause", 1), ("resume", 1), ("set", 2), ("reload", 1)):
        assert all(r.json()["ok"] for r in sub.wait_topic(f"{ROOT}/reply/{verb}", count))
    assert [c[0] for c in runtime.calls] == ["pause", "resume", "set", "pause", "reload"]
    assert runtime.calls[2][1] == {"gate.cooldown_s": 2.5, "tasks.caption.prompt": "Describe."}


def test_commands_under_mqtt_311_reply_on_the_reply_topic(
    mosquitto: Broker, collector_factory: Any, tmp_path: Path
) -> None:
    stack: Stack = make_stack(mosquitto.mqtt_settings(protocol="3.1.1"), tmp_path / "o.db")
    runtime = FakeRuntime(stack.publisher)
    CommandRouter(stack.client, stack.topics, runtime, task_names=lambda: TASKS)
    stack.start()
    sub: Collector = collector_factory(mosquitto, f"{ROOT}/#")
    try:
        assert stack.client.wait_connected(10)
        # `online` is published in on_connect after the subscriptions, and the broker handles one client's
        # packets in order: once it is seen, commands reach the router (wait_connected alone races).
        sub.wait_topic(f"{ROOT}/status")
        sub.publish(f"{ROOT}/cmd/ask", b"{oops")
        sub.publish(f"{ROOT}/cmd/capture", b"{}")
        (bad,) = sub.wait_topic(f"{ROOT}/reply/ask")
        (good,) = sub.wait_topic(f"{ROOT}/reply/capture")
        (result,) = sub.wait_topic(f"{ROOT}/main/caption/result")
    finally:
        stack.stop()
    assert bad.json()["ok"] is False and bad.correlation_data is None
    assert good.json()["ok"] is True and good.json()["result"]["id"] == result.json()["id"]
