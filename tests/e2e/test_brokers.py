"""The contract's end-to-end checks against the brokers fleets run: mosquitto, NATS, RabbitMQ.

Each test runs `edge run` from a config that says nothing about the protocol (`mqtt.protocol =
"auto"`) against one engine (one broker per engine per module: tests/plugins/brokers.py). mosquitto
speaks MQTT 5; NATS 2.9 and RabbitMQ 3.10 speak 3.1.1 only, and the daemon must fall back to it with
one log line. What 3.1.1 changes is asserted where it shows: replies at `reply/{verb}` (there is no
response topic), no PUBLISH properties.

Engine differences the tests pin down (docs/brokers.md has the table):
- RabbitMQ 3.10 delivers retained messages only to a subscription on the exact topic, never to one
  with a wildcard: a late `edge/{device}/#` subscriber gets no retained `state` or `status` there.
- RabbitMQ 3.10 hangs up on an MQTT 5 CONNECT without a CONNACK; NATS answers 0x84.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge.consumer import Tracker
from edge.consumer.stream import Consumer
from edge.core.messages import ResultPayload, StatePayload
from tests.e2e.harness import REPO, base_settings, start_daemon
from tests.plugins.brokers import Engine

pytestmark = pytest.mark.slow

FALLBACK = "falling back to MQTT 3.1.1"


def wait_until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def edge_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def watch(config: Path, device: str, seconds: float) -> subprocess.Popen[str]:
    """`edge watch --expect-complete` with the daemon's own config (so the same protocol setting)."""
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "watch", "--config", str(config), "--expect-complete", "--for", str(seconds), device],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=edge_env(),
        cwd=REPO,
    )  # fmt: skip


def retained(engine: Engine, topic_filter: str, settle_s: float = 2.0) -> dict[str, bytes]:
    """What a subscriber arriving now gets as retained on `topic_filter` (waits `settle_s`)."""
    late = engine.collector(topic_filter)
    try:
        time.sleep(settle_s)
        return {m.topic: m.payload for m in late.messages if m.retain}
    finally:
        late.stop()


@pytest.mark.timeout(300)
def test_default_config_negotiates_and_keeps_the_contract(engine: Engine, tmp_path: Path) -> None:
    """Results complete per `edge watch --expect-complete`, state/status/discovery retained,
    commands answered, the LWT on a crash; one protocol line in the log, and `state.mqtt` says it."""
    dev = f"cam-{engine.name}"
    root = f"edge/{dev}"
    sub = engine.collector([f"{root}/#", "homeassistant/device/#", "client/replies"])
    cfg = base_settings(tmp_path, engine.broker, device_id=dev, mqtt={"discovery": True})
    d = start_daemon(tmp_path, cfg)
    workers: list[int] = []
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 90)
        sub.wait_topic(f"{root}/main/caption/result", count=1, timeout=60)
        w = watch(d.config, dev, 12)
        # commands: MQTT 5 replies on the response topic; 3.1.1 has none, so on reply/{verb}
        if engine.v5:
            sub.publish(f"{root}/cmd/capture", "{}", response_topic="client/replies", correlation_data=b"c-1")
            reply = sub.wait_topic("client/replies", timeout=30)[0]
            assert reply.correlation_data == b"c-1"
        else:
            sub.publish(f"{root}/cmd/capture", "{}")
            reply = sub.wait_topic(f"{root}/reply/capture", timeout=30)[0]
            assert reply.correlation_data is None and reply.content_type is None
        assert json.loads(reply.payload)["ok"] is True
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, f"{engine.name}: edge watch --expect-complete failed\n{out[-2000:]}\n{err}"
        assert " 0 missing" in out, out[-1000:]
        workers = d.worker_pids()
        # a crash: the broker publishes the will (MQTT 5: after the 5 s will delay)
        d.proc.kill()
        d.proc.wait(10)
        sub.wait_for(
            lambda ms: any(m.topic == f"{root}/status" and m.payload == b"offline" for m in ms),
            45,
            f"{engine.name}: the will (offline) after SIGKILL",
        )
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        d.stop()
        sub.stop()
    log = d.log()
    assert log.count(FALLBACK) == (0 if engine.v5 else 1), log[-3000:]
    if not engine.v5:
        assert "does not speak MQTT 5" in log and "no response topics" in log
    results = [ResultPayload.model_validate_json(m.payload) for m in sub.on(f"{root}/main/+/result")]
    assert results and all(r.device == dev for r in results)
    msg = sub.on(f"{root}/main/caption/result")[0]
    if engine.v5:  # properties only exist in MQTT 5
        assert msg.content_type == "application/json" and msg.message_expiry is not None
    else:
        assert msg.content_type is None and msg.message_expiry is None and msg.user_properties == ()
    states = [StatePayload.model_validate_json(m.payload) for m in sub.on(f"{root}/state")]
    assert states and all(s.mqtt is not None for s in states)
    info = states[-1].mqtt
    assert info is not None and info.protocol == engine.protocol
    assert info.fallback is (not engine.v5) and bool(info.lacks) is (not engine.v5)

    # retained: state, status (the will's offline) and the discovery config, for a late subscriber
    exact: dict[str, bytes] = {}
    for topic in (f"{root}/state", f"{root}/status", f"homeassistant/device/{dev}/config"):
        exact |= retained(engine, topic)
    assert exact[f"{root}/status"] == b"offline"
    assert StatePayload.model_validate_json(exact[f"{root}/state"]).device == dev
    discovery = json.loads(exact[f"homeassistant/device/{dev}/config"])
    assert discovery["availability_topic"] == f"{root}/status" and discovery["components"]
    wildcard = retained(engine, f"{root}/#")
    if engine.name == "rabbitmq":
        # RabbitMQ 3.10: retained messages reach exact-topic subscriptions only.
        assert wildcard == {}, "RabbitMQ now delivers retained messages to wildcards: update docs/brokers.md"
    else:
        assert {f"{root}/state", f"{root}/status"} <= set(wildcard)


@pytest.mark.timeout(300)
def test_broker_restart_loses_nothing(engine: Engine, tmp_path: Path) -> None:
    """The broker stalls (messages in flight, unacknowledged) and restarts while results keep
    coming: a persistent consumer (the consumer library) sees every seq; what QoS 1 sends twice is
    counted as a duplicate, never as a new result or a gap."""
    dev = f"restart-{engine.name}"
    settings = engine.broker.mqtt_settings()
    tracker = Tracker(from_start=True)
    consumer = Consumer(
        settings, client_id=f"t-keep-{engine.name}", tracker=tracker, devices=[dev], session_expiry_s=3600
    ).start(30)
    cfg = base_settings(tmp_path, engine.broker, device_id=dev)
    d = start_daemon(tmp_path, cfg)
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 90)
        wait_until(lambda: tracker.report().results >= 2, 60, "2 results before the restart")
        engine.broker.pause()  # PUBLISHes go out and sit unacknowledged
        time.sleep(3)
        engine.broker.stop()
        time.sleep(3)  # results go on into the outbox
        engine.broker.start()
        before = tracker.report().results
        # NATS delivers a QoS 1 message it sent before the restart again only when JetStream's ack
        # wait (30 s) runs out, not on resume (docs/brokers.md): wait for the gap to close, not a count.
        wait_until(
            lambda: (r := tracker.report()).results >= before + 4 and r.missing == 0,
            150,
            "4 more results after the restart, and no seq missing",
        )
    finally:
        rc = d.stop()
        time.sleep(2)  # the clean stop's last results and offline
        consumer.stop()
    assert rc == 0, d.log()[-3000:]
    report = tracker.report()
    assert report.missing == 0 and report.gaps == (), f"{engine.name}: {report.to_dict()}"
    boots = report.boots
    assert len(boots) == 1 and boots[0].first_seq == 1 and boots[0].received == boots[0].last_seq
    print(f"{engine.name}: {report.results} results, {report.duplicates} duplicate(s) after the restart")


def test_a_pinned_protocol_the_broker_refuses_is_one_config_error(engine: Engine, tmp_path: Path) -> None:
    """`mqtt.protocol = "5"` against a 3.1.1 broker: no fallback, one ERROR naming the key; pinning
    what the broker speaks connects with no protocol line at all."""
    from edge.mqtt.client import MqttClient
    from edge.mqtt.topics import Topics

    pinned = "5" if not engine.v5 else "3.1.1"  # mosquitto speaks both: pinning 3.1.1 must just work
    client = MqttClient(
        engine.broker.mqtt_settings(protocol=pinned),
        Topics("edge", f"pin-{engine.name}"),
        reconnect_min_s=0.2,
        reconnect_max_s=0.5,
    )
    client.start()
    try:
        if engine.v5:
            assert client.wait_connected(30) and client.protocol == "3.1.1" and client.fell_back is None
            return
        wait_until(lambda: client.refusals >= 3, 60, "three refused connects")
        assert not client.is_connected and client.protocol == "5" and client.fell_back is None
        assert client.last_refusal is not None and 'mqtt.protocol = "5"' in client.last_refusal.reason
    finally:
        client.stop()


def test_consumer_and_watch_negotiate_like_the_daemon(engine: Engine) -> None:
    """The consumer library with default settings subscribes on every engine, over the protocol
    the engine speaks; a message published then arrives."""
    got: list[str] = []
    consumer = Consumer(
        engine.broker.mqtt_settings(), lambda d, _obs: got.append(d.topic), client_id=f"t-neg-{engine.name}"
    ).start(30)
    try:
        assert consumer.subscriber.v5 is engine.v5
        pub = engine.broker.paho_client(protocol=mqtt.MQTTv5 if engine.v5 else mqtt.MQTTv311)
        pub.connect(engine.broker.host, engine.broker.port)
        pub.loop_start()
        pub.publish(f"edge/neg-{engine.name}/status", b"online", qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        wait_until(lambda: bool(got), 30, "the message through the consumer")
    finally:
        consumer.stop()


def _session_client(
    engine: Engine, client_id: str, *, manual_ack: bool
) -> tuple[mqtt.Client, list[mqtt.MQTTMessage]]:
    """A persistent-session QoS 1 subscriber on `client_id` (MQTT 5 or 3.1.1, as the engine speaks)."""
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    got: list[mqtt.MQTTMessage] = []
    if engine.v5:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        kw: dict = {"clean_start": False, "properties": props}
    else:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False
        )
        kw = {}
    c.manual_ack_set(manual_ack)
    c.on_message = lambda _c, _u, msg: got.append(msg)
    c.connect(engine.broker.host, engine.broker.port, keepalive=10, **kw)
    c.loop_start()
    return c, got


@pytest.mark.timeout(300)
def test_qos1_delivery_not_acknowledged_is_redelivered(engine: Engine) -> None:
    """QoS 1 at the consumer end: a delivery the consumer never acknowledged (it went away first)
    comes again when its persistent session resumes, flagged DUP; the consumer library counts such a
    repeat as a duplicate (tests/integration/test_consumer_watch.py), never as a new result."""
    topic = f"edge/qos-{engine.name}/main/caption/result"
    cid = f"t-redeliver-{engine.name}"
    first, got = _session_client(engine, cid, manual_ack=True)
    try:
        first.subscribe(topic, 1)
        time.sleep(1.0)  # the SUBACK, before the publish
        pub = engine.broker.paho_client(protocol=mqtt.MQTTv5 if engine.v5 else mqtt.MQTTv311)
        pub.connect(engine.broker.host, engine.broker.port)
        pub.loop_start()
        pub.publish(topic, b"once", qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        wait_until(lambda: bool(got), 30, "the first delivery")
    finally:
        first.loop_stop()
        sock = first.socket()
        assert sock is not None
        sock.close()  # gone without a PUBACK (a crash)
    resumed = time.monotonic()
    again, got2 = _session_client(engine, cid, manual_ack=False)
    try:
        # NATS redelivers when the JetStream ack wait (mqtt.ack_wait, 30 s by default) runs out,
        # not when the session resumes: allow for it.
        wait_until(lambda: bool(got2), 120, f"{engine.name}: the redelivery of the unacknowledged message")
        assert got2[0].payload == b"once" and got2[0].dup, f"{engine.name}: redelivered without DUP"
        print(f"{engine.name}: redelivered {time.monotonic() - resumed:.1f} s after the session resumed")
    finally:
        again.disconnect()
        again.loop_stop()


def test_doctor_says_which_protocol_the_broker_accepted(engine: Engine) -> None:
    """`edge doctor`'s broker check negotiates as the daemon does and says so on a 3.1.1 engine;
    with MQTT 5 pinned there, it fails with the fix."""
    from edge.cli.doctor.broker import check_broker

    auto = check_broker(engine.broker.mqtt_settings(), "doc", timeout_s=10.0)
    assert auto.status == "ok", auto
    assert ("MQTT 3.1.1" in auto.detail and "does not speak MQTT 5" in auto.detail) is (not engine.v5), auto
    if not engine.v5:
        pinned = check_broker(engine.broker.mqtt_settings(protocol="5"), "doc", timeout_s=10.0)
        assert pinned.status == "fail" and "MQTT 5" in pinned.detail and pinned.fix, pinned
        assert 'mqtt.protocol = "auto"' in pinned.fix, pinned
