"""Client lifecycle against real brokers: plain, TLS, mutual TLS, password + ACL; birth and death."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from edge.config.settings import MqttSettings, TLSSettings
from edge.mqtt.client import MqttClient
from edge.mqtt.topics import Topics
from tests.integration.mqtt_stack import DEVICE, committed, make_stack, result_builder, wait_until
from tests.plugins.mosquitto import Broker, Collector

ROOT = f"edge/{DEVICE}"


@pytest.mark.parametrize("variant", ["mosquitto", "mosquitto_tls", "mosquitto_mtls", "mosquitto_auth"])
def test_connect_publish_subscribe(
    variant: str, request: pytest.FixtureRequest, collector_factory: Any, tmp_path: Path
) -> None:
    broker: Broker = request.getfixturevalue(variant)
    sub: Collector = collector_factory(broker, f"{ROOT}/#")
    stack = make_stack(broker.mqtt_settings(), tmp_path / "outbox.db").start()
    try:
        assert stack.client.wait_connected(10)
        # Birth: the retained state first, then online.
        sub.wait_topic(f"{ROOT}/status")
        births = [
            m.topic.rsplit("/", 1)[1] for m in sub.messages if m.topic in (f"{ROOT}/state", f"{ROOT}/status")
        ]
        assert births == ["state", "status"]
        payload = committed(stack.publisher.publish_result(result_builder()))
        (msg,) = sub.wait_topic(f"{ROOT}/main/caption/result")
        assert msg.json()["id"] == payload.id == f"{DEVICE}-{stack.publisher.boot}-1"
        assert msg.content_type == "application/json"
        assert msg.user["device"] == DEVICE and msg.user["backend"] == "ort-genai"
        assert msg.user["model"] == "phi-3.5-vision"
        assert msg.message_expiry is not None and 0 < msg.message_expiry <= 86400
        # Subscribed to commands: a command reaches the client (and, unrouted, is just ignored).
        received: list[str] = []
        stack.client.subscribe(f"{ROOT}/cmd/#", lambda m: received.append(m.topic))
        sub.publish(f"{ROOT}/cmd/pause", b"{}")
        wait_until(lambda: received == [f"{ROOT}/cmd/pause"], what="command delivery")
        wait_until(lambda: stack.outbox.stats().depth == 0, what="outbox drained")
    finally:
        stack.stop()


def test_mqtt_311_publishes_without_properties(
    mosquitto: Broker, collector_factory: Any, tmp_path: Path
) -> None:
    sub: Collector = collector_factory(mosquitto, f"{ROOT}/#")
    stack = make_stack(mosquitto.mqtt_settings(protocol="3.1.1"), tmp_path / "o.db").start()
    try:
        stack.publisher.publish_result(result_builder())
        (msg,) = sub.wait_topic(f"{ROOT}/main/caption/result")
        assert msg.content_type is None and msg.user_properties == ()
        assert sub.wait_topic(f"{ROOT}/status")[-1].text == "online"
    finally:
        stack.stop()


def test_wrong_password_is_reported_and_retried_with_backoff(
    mosquitto_auth: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    settings = mosquitto_auth.mqtt_settings(password="wrong")
    client = MqttClient(settings, Topics("edge", DEVICE), reconnect_min_s=0.2, reconnect_max_s=5.0)
    with caplog.at_level(logging.ERROR, logger="edge.mqtt.client"):
        client.start()
        try:
            wait_until(lambda: client.refusals >= 3, timeout=10, what="three refusals")
            time.sleep(1.0)
        finally:
            client.stop()
    assert not client.is_connected and client.connects == 0
    assert client.last_refusal is not None and client.last_refusal.code == 135
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == client.refusals
    # Backoff, not a tight loop: with delays 0.2, 0.4, 0.8, 1.6 s there are only a handful of tries.
    assert client.refusals <= 6
    gaps = [b.created - a.created for a, b in zip(refusals, refusals[1:], strict=False)]
    assert gaps[-1] > gaps[0]


def test_password_from_credentials_directory(
    mosquitto_auth: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mqtt_password").write_text("edge-secret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = mosquitto_auth.mqtt_settings(password=None)
    client = MqttClient(settings, Topics("edge", DEVICE))
    client.start()
    try:
        assert client.wait_connected(10)
    finally:
        client.stop()


def test_acl_denial_keeps_the_result_and_an_acl_fixed_later_gets_it(
    mosquitto_auth: Broker, collector_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MQTT 5 PUBACK 135 (not authorized): the row stays in the outbox, retried with backoff,
    logged once; the rest of the stream is not held up; once the broker's ACL allows the topic
    (SIGHUP reloads it) the kept result goes out."""
    sub: Collector = collector_factory(mosquitto_auth, f"{ROOT}/#")
    stack = make_stack(
        mosquitto_auth.mqtt_settings(), tmp_path / "o.db", refused_retry_min_s=0.2, refused_retry_max_s=0.5
    ).start()
    try:
        with caplog.at_level(logging.ERROR, logger="edge.mqtt.publisher"):
            denied = committed(stack.publisher.publish_result(result_builder(task="denied")))
            allowed = committed(stack.publisher.publish_result(result_builder(task="caption")))
            (msg,) = sub.wait_topic(f"{ROOT}/main/caption/result")
            assert msg.json()["id"] == allowed.id
            wait_until(lambda: stack.publisher.stats().rejected >= 3, what="three refusals (retried)")
        st = stack.publisher.stats()
        assert st.depth == 1 and st.refused_waiting + st.in_flight == 1
        said = [r for r in caplog.records if denied.id in r.getMessage() and "135" in r.getMessage()]
        assert len(said) == 1  # once per message, not once per retry
        assert sub.on(f"{ROOT}/+/denied/#") == []
        # The operator fixes the ACL; mosquitto reloads it on SIGHUP.
        acl = mosquitto_auth.directory / "acl"
        acl.write_text(acl.read_text().replace("topic deny edge/+/+/denied/#\n", ""))
        assert mosquitto_auth.pid is not None
        os.kill(mosquitto_auth.pid, signal.SIGHUP)
        (got,) = sub.wait_topic(f"{ROOT}/main/denied/result", timeout=30)
        assert got.json()["id"] == denied.id
        wait_until(lambda: stack.outbox.stats().depth == 0, what="outbox drained")
    finally:
        stack.stop()


def test_tls_refuses_unknown_ca_and_insecure_connects_with_a_warning(
    mosquitto_tls: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    assert mosquitto_tls.tls is not None
    strict = mosquitto_tls.mqtt_settings(tls=TLSSettings(ca=mosquitto_tls.tls.other_ca))
    client = MqttClient(strict, Topics("edge", DEVICE), reconnect_min_s=0.2, reconnect_max_s=0.5)
    client.start()
    try:
        wait_until(lambda: client.connect_failures >= 2, what="TLS failures")
        assert not client.is_connected
    finally:
        client.stop()
    insecure = mosquitto_tls.mqtt_settings(tls=TLSSettings(ca=mosquitto_tls.tls.other_ca, insecure=True))
    with caplog.at_level(logging.WARNING, logger="edge.mqtt.client"):
        client = MqttClient(insecure, Topics("edge", DEVICE))
    assert any("insecure" in r.getMessage() for r in caplog.records)
    client.start()
    try:
        assert client.wait_connected(10)
    finally:
        client.stop()


def test_plain_tcp_to_remote_host_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edge.mqtt.client"):
        MqttClient(MqttSettings(host="192.0.2.10", port=1884), Topics("edge", DEVICE))
        MqttClient(MqttSettings(host="192.0.2.10", port=1884), Topics("edge", DEVICE))  # once only
        MqttClient(MqttSettings(host="127.0.0.1"), Topics("edge", DEVICE))
        MqttClient(MqttSettings(host="localhost"), Topics("edge", DEVICE))
    assert [r.getMessage().split(" is ")[0] for r in caplog.records] == ["MQTT to 192.0.2.10:1884"]


def test_websockets_transport(broker_factory: Any, tmp_path: Path) -> None:
    try:
        broker = broker_factory(websockets=True)
    except RuntimeError as err:
        if "listen" in str(err):
            pytest.skip("this mosquitto is built without websockets support")
        raise
    stack = make_stack(broker.mqtt_settings(transport="websockets"), tmp_path / "o.db").start()
    try:
        assert stack.client.wait_connected(10)
        stack.publisher.publish_result(result_builder())
        wait_until(lambda: stack.outbox.stats().depth == 0, what="published over websockets")
    finally:
        stack.stop()


def test_clean_stop_publishes_offline_and_restart_publishes_state_then_online(
    mosquitto: Broker, collector_factory: Any, tmp_path: Path
) -> None:
    sub: Collector = collector_factory(mosquitto, [f"{ROOT}/status", f"{ROOT}/state"])
    stack = make_stack(mosquitto.mqtt_settings(), tmp_path / "o.db").start()
    sub.wait_for(lambda ms: [m.text for m in ms if m.topic.endswith("status")] == ["online"])
    stack.stop()
    sub.wait_for(lambda ms: [m.text for m in ms if m.topic.endswith("status")] == ["online", "offline"])
    late: Collector = collector_factory(mosquitto, f"{ROOT}/status")
    (retained,) = late.wait_topic(f"{ROOT}/status")
    assert retained.retain and retained.text == "offline"

    sub.clear()
    stack = make_stack(mosquitto.mqtt_settings(), tmp_path / "o.db").start()
    try:
        sub.wait_topic(f"{ROOT}/status")
        assert [m.topic.rsplit("/", 1)[1] for m in sub.messages][:2] == ["state", "status"]
        assert sub.on(f"{ROOT}/status")[0].text == "online"
    finally:
        stack.stop()
