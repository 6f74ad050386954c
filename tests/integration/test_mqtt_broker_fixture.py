"""The mosquitto fixture itself, in all three variants: it must really enforce what it claims."""

from __future__ import annotations

import ssl
import threading
from typing import Any

import pytest

from tests.plugins.mosquitto import USERS, Broker, Collector


def connect_result(client: Any, broker: Broker, host: str | None = None, timeout: float = 5.0) -> Any:
    """Connect once (no retries); return the CONNACK reason code, or the exception raised."""
    done = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        result["rc"] = rc
        done.set()

    def on_disconnect(*_a: Any) -> None:
        result.setdefault("rc", ConnectionError("closed before CONNACK"))
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.reconnect_delay_set(0.1, 0.1)
    try:
        client.connect(host or broker.host, broker.port, keepalive=10)
    except (OSError, ssl.SSLError) as err:
        return err
    client.loop_start()
    try:
        if not done.wait(timeout):
            return TimeoutError("no CONNACK")
        return result["rc"]
    finally:
        client.disconnect()
        client.loop_stop()


def test_plain_broker_delivers_with_properties(mosquitto: Broker, collector_factory: Any) -> None:
    sub: Collector = collector_factory(mosquitto, "t/#")
    pub: Collector = collector_factory(mosquitto, "unused")
    pub.publish("t/a", b"hello", response_topic="t/reply", correlation_data=b"\x01\x02")
    pub.publish("t/r", b"kept", retain=True)
    got = sub.wait_topic("t/#", 2)
    assert [m.payload for m in got] == [b"hello", b"kept"]
    assert got[0].correlation_data == b"\x01\x02" and got[0].response_topic == "t/reply"
    # A late subscriber sees the retained message flagged as retained.
    late: Collector = collector_factory(mosquitto, "t/r")
    (msg,) = late.wait_topic("t/r")
    assert msg.retain and msg.payload == b"kept"


def test_broker_restarts_on_same_port_keeping_retained(mosquitto: Broker, collector_factory: Any) -> None:
    pub: Collector = collector_factory(mosquitto, "unused")
    pub.publish("keep/me", b"1", retain=True)
    port = mosquitto.port
    pub.stop()
    mosquitto.stop()
    assert not mosquitto.running
    mosquitto.start()
    assert mosquitto.port == port and mosquitto.running
    late: Collector = collector_factory(mosquitto, "keep/me")
    assert late.wait_topic("keep/me")[0].retain


def test_tls_handshake_with_generated_ca(mosquitto_tls: Broker) -> None:
    rc = connect_result(mosquitto_tls.paho_client(), mosquitto_tls, host="localhost")
    assert not isinstance(rc, Exception), rc
    assert not rc.is_failure


def test_tls_rejects_unknown_ca(mosquitto_tls: Broker) -> None:
    assert mosquitto_tls.tls is not None
    client = mosquitto_tls.paho_client(cafile=mosquitto_tls.tls.other_ca)
    rc = connect_result(client, mosquitto_tls)
    assert isinstance(rc, ssl.SSLCertVerificationError), rc


def test_mutual_tls_needs_client_certificate(mosquitto_mtls: Broker) -> None:
    ok = connect_result(mosquitto_mtls.paho_client(client_cert=True), mosquitto_mtls)
    assert not isinstance(ok, Exception) and not ok.is_failure, ok
    refused = connect_result(mosquitto_mtls.paho_client(client_cert=False), mosquitto_mtls)
    # TLS 1.3 reports the missing certificate after the handshake: the connection just closes.
    assert isinstance(refused, Exception) or refused.is_failure, refused


@pytest.mark.parametrize(
    ("username", "password", "accepted"),
    [
        ("edge", USERS["edge"], True),
        ("reader", USERS["reader"], True),
        ("edge", "wrong", False),
        (None, None, False),  # anonymous
    ],
)
def test_password_broker_checks_credentials(
    mosquitto_auth: Broker, username: str | None, password: str | None, accepted: bool
) -> None:
    rc = connect_result(mosquitto_auth.paho_client(username=username, password=password), mosquitto_auth)
    assert not isinstance(rc, Exception), rc
    assert rc.is_failure is not accepted
    if not accepted:
        assert rc.value == 135  # mosquitto 2.0 answers "Not authorized" to bad credentials


def test_acl_denies_publish_with_reason_code(mosquitto_auth: Broker) -> None:
    client = mosquitto_auth.paho_client(username="edge", password=USERS["edge"])
    acks: dict[int, int] = {}
    done = threading.Event()

    def on_publish(_c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        acks[mid] = rc.value
        if len(acks) == 2:
            done.set()

    client.on_publish = on_publish
    client.connect(mosquitto_auth.host, mosquitto_auth.port)
    client.loop_start()
    try:
        denied = client.publish("edge/dev/main/denied/result", b"x", qos=1).mid
        allowed = client.publish("edge/dev/main/caption/result", b"y", qos=1).mid
        assert done.wait(5)
    finally:
        client.disconnect()
        client.loop_stop()
    assert acks[denied] == 135
    assert acks[allowed] < 128
