"""A real mosquitto per test, on a free loopback port, with a generated config.

Variants: plain (anonymous), TLS (CA, server and client certificates generated here with
`cryptography` in tls_certs.py; optionally mutual TLS) and password file + ACL. The broker can be stopped (SIGTERM,
it saves its persistence file), killed (SIGKILL) and started again on the same port, for fault tests.

`Collector` is a subscriber that records every message with its MQTT 5 properties, so tests can
assert delivery, order, retain flags and correlation data against a real broker.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.plugins.tls_certs import TlsFiles, make_tls_files

__all__ = ["USERS", "ACL", "Broker", "Collector", "Received", "TlsFiles", "make_tls_files", "free_port"]

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
HOST = "127.0.0.1"

# Users of the password + ACL broker. `edge` may write everything under edge/ except the
# edge/{device}/{camera}/denied/# subtree (to test ACL denial); `reader` may only read; `admin` (what a Collector
# uses by default) may read and write everything, e.g. to send commands.
USERS = {"edge": "edge-secret", "reader": "reader-secret", "admin": "admin-secret"}
ACL = """\
user edge
topic deny edge/+/+/denied/#
topic readwrite edge/#
topic readwrite homeassistant/#

user reader
topic read #

user admin
topic readwrite #
"""


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free port BELOW the kernel's ephemeral range.

    Outgoing connections take their source port from the ephemeral range; a client retrying a
    stopped broker on a port in that range can connect to itself (TCP self-connect), which both
    fakes a broker and blocks the real one from binding again. Ports outside the range cannot.
    """
    low, _ = _ephemeral_range()
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(max(1024, low - 12000), low - 1)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def mosquitto_password_hash(password: str, *, salt: bytes | None = None) -> str:
    """mosquitto 2.0's `$7$` format: PBKDF2-SHA512, 101 iterations, base64 salt and hash.

    Generated here so the harness does not depend on mosquitto_passwd being installed.
    """
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


# --------------------------------------------------------------------------- the broker


@dataclass
class Broker:
    """One mosquitto process. `stop()` then `start()` keeps the port (and persisted sessions)."""

    directory: Path
    port: int = field(default_factory=free_port)
    host: str = HOST
    tls: TlsFiles | None = None
    require_client_cert: bool = False
    users: dict[str, str] | None = None
    acl: str | None = None
    persistence: bool = True
    websockets: bool = False  # the listener speaks MQTT over websockets (mosquitto built with it)
    # lines appended after the listener, e.g. a bridge (`connection ...` and its options)
    extra_config: list[str] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.log_path.exists():  # start() waits for this run's "running" line; keep the last run's
            self.log_path.replace(self.log_path.with_suffix(".log.previous"))
        lines = [
            "per_listener_settings false",
            f"allow_anonymous {'false' if self.users else 'true'}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp_format %H:%M:%S",
            "max_queued_messages 20000",
            "max_inflight_messages 0",
        ]
        if os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")  # stay root: tmp dirs are not readable otherwise
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.directory}/", "autosave_interval 3600"]
        if self.users:
            pw = self.directory / "passwd"
            pw.write_text("".join(f"{u}:{mosquitto_password_hash(p)}\n" for u, p in self.users.items()))
            lines.append(f"password_file {pw}")
        if self.acl is not None:
            acl = self.directory / "acl"
            acl.write_text(self.acl)
            lines.append(f"acl_file {acl}")
        lines.append(f"listener {self.port} {self.host}")
        if self.websockets:
            lines.append("protocol websockets")
        if self.tls:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                f"require_certificate {'true' if self.require_client_cert else 'false'}",
            ]
        lines += self.extra_config
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        self.write_config()
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}: {err}{self.log_text()}")
            # mosquitto logs "... running" once every listener is open; a failed listener makes it
            # exit instead (after briefly holding the port), so the log line is the signal.
            if " running" in self.log_text():
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                        if s.getsockname() != s.getpeername() and self._proc.poll() is None:
                            return
                except OSError:
                    pass
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port}: {self.log_text()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: a clean broker shutdown (sessions and retained messages are saved)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            self._proc.send_signal(signal.SIGCONT)  # in case it was paused
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._close()

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without saving anything."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._close()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing is read or acknowledged (messages in flight)."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        if down_s:
            time.sleep(down_s)
        self.start()

    def _close(self) -> None:
        if self._proc is not None and self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # ---- convenience for tests

    def mqtt_settings(self, **overrides: Any) -> Any:
        """An `edge.config.settings.MqttSettings` pointing at this broker (TLS files, first user)."""
        from edge.config.settings import MqttSettings, TLSSettings

        values: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.tls:
            tls: dict[str, Any] = {"ca": self.tls.ca}
            if self.require_client_cert:
                tls |= {"cert": self.tls.client_cert, "key": self.tls.client_key}
            values["tls"] = TLSSettings(**tls)
        if self.users:
            values["username"] = "edge"
            values["password"] = self.users["edge"]
        values.update(overrides)
        return MqttSettings(**values)

    def paho_client(
        self,
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        protocol: MQTTProtocolVersion = mqtt.MQTTv5,
        client_cert: bool | None = None,
        cafile: Path | None = None,
    ) -> mqtt.Client:
        """An unconnected paho client set up for this broker (TLS and credentials)."""
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{uuid.uuid4().hex[:10]}",
            protocol=protocol,
        )
        if self.tls:
            ctx = ssl.create_default_context(cafile=str(cafile or self.tls.ca))
            if client_cert if client_cert is not None else self.require_client_cert:
                ctx.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
            client.tls_set_context(ctx)
        if username is not None:
            client.username_pw_set(username, password)
        return client


# --------------------------------------------------------------------------- collector


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    content_type: str | None = None
    correlation_data: bytes | None = None
    response_topic: str | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    message_expiry: int | None = None
    at: float = 0.0

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        import json

        return json.loads(self.payload)

    @property
    def user(self) -> dict[str, str]:
        return dict(self.user_properties)


class Collector:
    """A subscriber that records everything it receives, with the MQTT 5 properties.

    `persistent=True` keeps the session on the broker (clean_start off, long session expiry,
    QoS 1), so messages published while this collector is disconnected, e.g. during a broker
    restart, are queued for it instead of lost.
    """

    def __init__(
        self,
        broker: Broker,
        topics: str | list[str] = "#",
        *,
        persistent: bool = False,
        username: str | None = None,
        password: str | None = None,
        qos: int = 1,
    ) -> None:
        self.broker = broker
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.qos = qos
        self._messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        if username is None and broker.users:
            username, password = "admin", broker.users["admin"]
        self.client = broker.paho_client(username=username, password=password)
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self._persistent = persistent
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def start(self, timeout: float = 10.0) -> Collector:
        props = None
        if self._persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.client.connect_async(
            self.broker.host,
            self.broker.port,
            keepalive=10,
            clean_start=not self._persistent,
            properties=props,
        )
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise AssertionError(f"collector did not subscribe within {timeout}s")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            return
        self._connected.set()
        client.subscribe([(t, self.qos) for t in self.topics])

    def _on_disconnect(self, *args: Any) -> None:
        self._connected.clear()

    def _on_subscribe(self, *args: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        p = msg.properties
        rec = Received(
            topic=msg.topic,
            payload=bytes(msg.payload),
            retain=bool(msg.retain),
            qos=msg.qos,
            content_type=getattr(p, "ContentType", None),
            correlation_data=getattr(p, "CorrelationData", None),
            response_topic=getattr(p, "ResponseTopic", None),
            user_properties=tuple(tuple(kv) for kv in getattr(p, "UserProperty", []) or []),
            message_expiry=getattr(p, "MessageExpiryInterval", None),
            at=time.monotonic(),
        )
        with self._cond:
            self._messages.append(rec)
            self._cond.notify_all()

    # ---- queries

    @property
    def messages(self) -> list[Received]:
        with self._cond:
            return list(self._messages)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if mqtt.topic_matches_sub(topic, m.topic)]

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def wait_for(
        self,
        predicate: Callable[[list[Received]], bool],
        timeout: float = 10.0,
        what: str = "condition",
    ) -> list[Received]:
        """Wait until `predicate(all messages so far)` is true; return the messages."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(list(self._messages)):
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = [(m.topic, m.payload[:80]) for m in self._messages[-5:]]
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {what}; "
                        f"{len(self._messages)} messages, last: {tail}"
                    )
                self._cond.wait(min(left, 0.2))
            return list(self._messages)

    def wait_topic(self, topic: str, count: int = 1, timeout: float = 10.0) -> list[Received]:
        """Wait for at least `count` messages matching the topic filter; return those."""
        self.wait_for(
            lambda ms: sum(mqtt.topic_matches_sub(topic, m.topic) for m in ms) >= count,
            timeout,
            what=f"{count} message(s) on {topic}",
        )
        return self.on(topic)

    def publish(
        self,
        topic: str,
        payload: bytes | str | None,
        *,
        qos: int = 1,
        retain: bool = False,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> None:
        props = None
        if response_topic is not None or correlation_data is not None:
            props = Properties(PacketTypes.PUBLISH)
            if response_topic is not None:
                props.ResponseTopic = response_topic
            if correlation_data is not None:
                props.CorrelationData = correlation_data
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        info.wait_for_publish(5)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


BrokerFactory = Callable[..., Broker]


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[BrokerFactory]:
    """Start brokers with any combination of options; all are stopped at teardown."""
    started: list[Broker] = []

    def make(**kwargs: Any) -> Broker:
        broker = Broker(directory=tmp_path / f"broker{len(started)}", **kwargs)
        started.append(broker)
        broker.start()
        return broker

    yield make
    for broker in started:
        broker.kill()


@pytest.fixture
def mosquitto(broker_factory: BrokerFactory) -> Broker:
    """Plain broker, anonymous access."""
    return broker_factory()


@pytest.fixture
def mosquitto_tls(broker_factory: BrokerFactory, tls_files: TlsFiles) -> Broker:
    """TLS broker (server certificate signed by the generated CA), anonymous access."""
    return broker_factory(tls=tls_files)


@pytest.fixture
def mosquitto_mtls(broker_factory: BrokerFactory, tls_files: TlsFiles) -> Broker:
    """Mutual TLS: the broker requires a client certificate signed by the generated CA."""
    return broker_factory(tls=tls_files, require_client_cert=True)


@pytest.fixture
def mosquitto_auth(broker_factory: BrokerFactory) -> Broker:
    """Password file + ACL (see USERS and ACL); anonymous clients are refused."""
    return broker_factory(users=dict(USERS), acl=ACL)


@pytest.fixture
def collector_factory() -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(broker: Broker, topics: str | list[str] = "#", **kwargs: Any) -> Collector:
        c = Collector(broker, topics, **kwargs)
        made.append(c)
        return c.start()

    yield make
    for c in made:
        c.stop()
