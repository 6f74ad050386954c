"""The broker check behind `edge doctor`: one real connection with the configured TLS and credentials.

It connects synchronously with a bare client from `edge.mqtt.connection` (the same TLS, credentials
and protocol as the daemon, but not its reconnecting wrapper), because only a synchronous connect
surfaces the exact reason a connection fails (certificate chain, host name, refused port, DNS)
instead of a retry loop, and it reports the broker's CONNACK reason in words.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from typing import Any

from edge.cli.doctor.checks import CheckResult
from edge.config.settings import MqttSettings
from edge.core.errors import ConfigError
from edge.mqtt.connection import cannot_resolve, is_loopback, new_client, refused_protocol

# --------------------------------------------------------------------------- broker

# CONNACK reason codes (MQTT 5; paho maps 3.1.1 return codes onto the same values) -> fix.
_REFUSAL_FIX = {
    132: 'the broker does not speak this MQTT version: set mqtt.protocol = "auto" (or "3.1.1")',
    133: "set mqtt.client_id to something the broker accepts",
    134: "check mqtt.username and mqtt.password (or the mqtt_password credential)",
    # mosquitto answers a wrong password with 135 under MQTT 5
    135: "check mqtt.username and mqtt.password (or the mqtt_password credential)",
    136: "the broker is up but not serving: check its logs",
    137: "the broker is busy: check its logs",
    138: "this client is banned on the broker",
    140: "the broker wants another authentication method",
}


def check_broker(settings: MqttSettings, device_id: str, timeout_s: float = 10.0) -> CheckResult:
    """Connect once, with the configured TLS and credentials, and report the broker's answer.

    `mqtt.protocol = "auto"` tries MQTT 5 and, when the broker says it does not speak it (or hangs up
    without a CONNACK), MQTT 3.1.1, as the daemon does; the result says which one was accepted."""
    if settings.protocol != "auto":
        return _check(settings, device_id, timeout_s)[0]
    first, refused = _check(settings.model_copy(update={"protocol": "5"}), device_id, timeout_s)
    if not refused:
        return first
    second, _ = _check(settings.model_copy(update={"protocol": "3.1.1"}), device_id, timeout_s)
    if second.status == "ok":
        return CheckResult(
            second.name, "ok", f"{second.detail}; the broker does not speak MQTT 5, the daemon falls back"
        )
    return second


def _check(settings: MqttSettings, device_id: str, timeout_s: float) -> tuple[CheckResult, bool]:
    """One connection attempt; True beside the result when the protocol version looks refused."""
    name = "broker"
    where = f"{settings.host}:{settings.port}"
    how = ", ".join(
        [
            "TLS" if settings.tls else "plain",
            f"MQTT {settings.protocol}",
            f"user {settings.username}" if settings.username else "anonymous",
        ]
    )
    try:
        # Never the daemon's client id: the broker would disconnect the running daemon to let us in.
        client = new_client(settings, f"edge-doctor-{device_id}-{os.getpid()}")
    except ConfigError as err:
        return CheckResult(name, "fail", "; ".join(err.problems), _config_fix(err)), False
    answers: list[Any] = []
    closed: list[Any] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: answers.append(rc)
    client.on_disconnect = lambda _c, _u, _f, rc, _p: closed.append(rc)
    client.connect_timeout = timeout_s
    try:
        client.connect(settings.host, settings.port, keepalive=max(10, int(timeout_s) * 2))
    except OSError as err:
        detail, fix = _connect_error(err, settings, timeout_s)
        return CheckResult(name, "fail", f"{where} ({how}): {detail}", fix), False
    try:
        deadline = time.monotonic() + timeout_s
        while not answers and not closed and time.monotonic() < deadline:
            client.loop(timeout=0.1)
    finally:
        if answers and not answers[0].is_failure:
            client.disconnect()
        else:
            sock = client.socket()
            if sock is not None:
                sock.close()
    if not answers:
        why = (
            "closed the connection without a CONNACK"
            if closed
            else f"sent no CONNACK within {timeout_s:.0f} s"
        )
        fix = "is this a TLS port? configure [mqtt.tls]" if settings.tls is None else "check mqtt.port"
        if closed and settings.protocol == "5":  # RabbitMQ 3.x hangs up on an MQTT 5 CONNECT
            fix = f'the broker may not speak MQTT 5: set mqtt.protocol = "auto"; else {fix}'
        return CheckResult(name, "fail", f"{where} ({how}): the broker {why}", fix), bool(closed)
    rc = answers[0]
    if rc.is_failure:
        code = int(rc.value)
        return CheckResult(
            name,
            "fail",
            f"{where} ({how}): the broker refused the connection: {rc} (code {code})",
            _REFUSAL_FIX.get(code, "check the broker's log for why"),
        ), refused_protocol(code)
    detail = f"{where} ({how}) accepted the connection"
    if settings.tls is None and not is_loopback(settings.host):
        return CheckResult(
            name, "warn", f"{detail}, but over plain TCP to another host", "configure [mqtt.tls] (port 8883)"
        ), False
    if settings.tls is not None and settings.tls.insecure:
        return CheckResult(
            name,
            "warn",
            f"{detail}, but mqtt.tls.insecure skips the certificate check",
            "set mqtt.tls.ca instead",
        ), False
    return CheckResult(name, "ok", detail), False


def _config_fix(err: ConfigError) -> str:
    if all(p.startswith("mqtt.password") for p in err.problems):
        return "make the mqtt_password credential readable by this user"
    return "point mqtt.tls.* at readable PEM files"


def _connect_error(err: OSError, settings: MqttSettings, timeout_s: float) -> tuple[str, str]:
    if isinstance(err, ssl.SSLCertVerificationError):
        why = err.verify_message or str(err)
        if "hostname" in why.lower() or "ip address mismatch" in why.lower():
            return f"TLS: {why}", f"connect by a name the certificate lists, not {settings.host!r}"
        return (
            f"TLS: certificate verify failed: {why}",
            "set mqtt.tls.ca to the CA that signed the broker's certificate",
        )
    if isinstance(err, ssl.SSLError):
        why = err.reason or str(err)
        if "WRONG_VERSION_NUMBER" in str(why).upper() or "record layer" in str(err):
            return (
                f"TLS handshake failed: {why}",
                "this port does not speak TLS: check mqtt.port or remove [mqtt.tls]",
            )
        return (
            f"TLS handshake failed: {why}",
            "check mqtt.tls.cert/key: the broker may require a client certificate",
        )
    if isinstance(err, ConnectionRefusedError):
        return (
            "connection refused: nothing listens there",
            "check mqtt.host and mqtt.port, and that the broker runs",
        )
    if isinstance(err, socket.gaierror):
        return cannot_resolve(settings.host, err), "check mqtt.host and DNS"
    if isinstance(err, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout_s:.0f} s", "check mqtt.host, the network and firewalls"
    return f"{err.strerror or err}", "check mqtt.host, mqtt.port and the network"
