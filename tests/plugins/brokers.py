"""The MQTT engines fleets already run, started by the tests on 127.0.0.1 beside mosquitto.

- NATS (`nats-server`, Debian 2.9): MQTT 3.1.1 on JetStream; sessions and retained messages are
  JetStream streams in the node's own store directory. Ready in well under a second.
- RabbitMQ (`rabbitmq-server`, Debian 3.10) with the rabbitmq_mqtt plugin: MQTT 3.1.1; a private
  node (own name, own mnesia and log directories, own AMQP, MQTT and distribution ports), so the
  system node on 5672/25672 is never touched. A node takes 10-30 s to start: one per test module.

Each engine is an `Engine`: the broker process plus what a test needs to talk to it the way the
daemon does (`mqtt_settings()`, `collector()`). mosquitto's `Broker` from tests/plugins/mosquitto.py
is wrapped the same way, so one test can be parametrized over all three (`engine` fixture).

Stopping is graceful by default (SIGTERM: NATS flushes JetStream, Erlang runs init:stop, mosquitto
saves its persistence file), so a restart keeps persistent sessions and retained messages.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.plugins.mosquitto import Broker, Collector, free_port

__all__ = ["Engine", "NatsBroker", "RabbitBroker", "Collector311", "ENGINES", "start_engine"]

HOST = "127.0.0.1"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
RABBITMQ_SERVER = shutil.which("rabbitmq-server") or "/usr/sbin/rabbitmq-server"
ENGINES = ("mosquitto", "nats", "rabbitmq")


class MqttBroker(Protocol):
    host: str
    port: int
    users: dict[str, str] | None
    tls: Any

    def start(self, timeout: float = ...) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...
    def kill(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def log_text(self) -> str: ...
    def mqtt_settings(self, **overrides: Any) -> Any: ...


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            return s.getsockname() != s.getpeername()
    except OSError:
        return False


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@dataclass
class _Process:
    """A broker started as a subprocess (possibly through wrapper scripts and `su`)."""

    directory: Path
    port: int = field(default_factory=free_port)
    host: str = HOST
    users: dict[str, str] | None = None
    tls: Any = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> tuple[list[str], dict[str, str] | None]:
        raise NotImplementedError

    def server_pids(self) -> list[int]:
        """The processes that are the broker (the tail of the wrapper chain)."""
        return [p.pid for p in _tree(self._proc.pid)] if self._proc else []

    def start(self, timeout: float = 90.0) -> None:
        if self.running:
            return
        argv, env = self.command()
        out = (self.directory / "stdout.log").open("ab")
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"{argv[0]} exited with {self._proc.returncode}:\n{self.log_text()[-3000:]}"
                )
            if _listening(self.host, self.port):
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"{argv[0]} did not listen on {self.host}:{self.port}:\n{self.log_text()[-3000:]}")

    def _signal(self, sig: int) -> None:
        for pid in self.server_pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).send_signal(sig)

    def _wait_gone(self, timeout: float) -> bool:
        procs = _tree(self._proc.pid) if self._proc else []
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        return not alive

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful: sessions and retained messages are kept for the next start."""
        if self._proc is None:
            return
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        if not self._wait_gone(timeout):
            self.kill()
        self._proc = None

    def kill(self) -> None:
        if self._proc is None:
            return
        for p in _tree(self._proc.pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        self._wait_gone(10)
        self._proc.wait(10)
        self._proc = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is read or acknowledged."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        if down_s:
            time.sleep(down_s)
        self.start()

    def log_text(self) -> str:
        parts = []
        for path in sorted(self.directory.rglob("*.log")):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def mqtt_settings(self, **overrides: Any) -> Any:
        from edge.config.settings import MqttSettings

        return MqttSettings(**{"host": self.host, "port": self.port, **overrides})

    def paho_client(
        self,
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        **_: Any,
    ) -> mqtt.Client:
        """An MQTT 3.1.1 client (neither engine speaks 5), clean session."""
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{uuid.uuid4().hex[:10]}",
            protocol=mqtt.MQTTv311,
        )
        if username is not None:
            client.username_pw_set(username, password)
        return client


@dataclass
class NatsBroker(_Process):
    """nats-server with JetStream (its store under `directory`) and an MQTT listener on `port`."""

    client_port: int = field(default_factory=free_port)

    def command(self) -> tuple[list[str], dict[str, str] | None]:
        store = self.directory / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "nats.conf"
        conf.write_text(
            f"listen: {self.host}:{self.client_port}\n"
            "server_name: edgetest\n"
            f'jetstream {{ store_dir: "{store}" }}\n'
            f"mqtt {{ listen: {self.host}:{self.port} }}\n"
        )
        return [NATS_SERVER, "-c", str(conf), "-l", str(self.directory / "nats.log")], None

    @staticmethod
    def version() -> str:
        out = subprocess.run([NATS_SERVER, "--version"], capture_output=True, text=True, check=False).stdout
        return out.strip().split()[-1].lstrip("v") if out.strip() else "?"


@dataclass
class RabbitBroker(_Process):
    """A private RabbitMQ node with rabbitmq_mqtt. Debian's start script drops to the `rabbitmq`
    user, so the node's directory must be that user's to write."""

    amqp_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)  # never the default AMQP port + 20000
    node: str = field(default_factory=lambda: f"edgetest-{uuid.uuid4().hex[:8]}@localhost")

    def command(self) -> tuple[list[str], dict[str, str] | None]:
        import os

        for sub in ("mnesia", "log"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        conf = self.directory / "rabbitmq.conf"
        conf.write_text(
            f"listeners.tcp.1 = {self.host}:{self.amqp_port}\n"
            f"mqtt.listeners.tcp.1 = {self.host}:{self.port}\n"
            "mqtt.allow_anonymous = true\n"
            "loopback_users = none\n"
        )
        (self.directory / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.directory)], check=True)
        env = dict(os.environ)
        env.update(
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_CONFIG_FILE=str(conf),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.directory / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(self.directory / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.directory / "log"),
            RABBITMQ_DIST_PORT=str(self.dist_port),
        )
        return [RABBITMQ_SERVER], env

    def server_pids(self) -> list[int]:
        # SIGTERM to the Erlang VM is a graceful init:stop(); the wrappers (sh, su) just wait for it.
        return [p.pid for p in _tree(self._proc.pid) if p.name().startswith("beam")] if self._proc else []

    @staticmethod
    def version() -> str:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return out.split("-")[0] or "?"


class Collector311(Collector):
    """`Collector` over MQTT 3.1.1 (what NATS and RabbitMQ speak): no properties; `persistent`
    is clean_session off, so the broker queues QoS 1 messages while this collector is away."""

    def __init__(
        self,
        broker: Any,
        topics: str | list[str] = "#",
        *,
        persistent: bool = False,
        qos: int = 1,
        client_id: str | None = None,
    ) -> None:
        super().__init__(broker, topics, persistent=persistent, qos=qos)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{uuid.uuid4().hex[:10]}",
            protocol=mqtt.MQTTv311,
            clean_session=not persistent,
        )
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def start(self, timeout: float = 10.0) -> Collector311:
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise AssertionError(f"collector did not subscribe within {timeout}s")
        return self


@dataclass
class Engine:
    """One broker under test and what the daemon ends up speaking with it."""

    name: str
    broker: Any  # Broker | NatsBroker | RabbitBroker
    version: str
    protocol: str  # what `mqtt.protocol = "auto"` settles on: "5" or "3.1.1"

    @property
    def v5(self) -> bool:
        return self.protocol == "5"

    def collector(self, topics: str | list[str] = "#", **kwargs: Any) -> Collector:
        c = (
            Collector(self.broker, topics, **kwargs)
            if self.v5
            else Collector311(self.broker, topics, **kwargs)
        )
        return c.start()


def _mosquitto_version() -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "mosquitto"], capture_output=True, text=True, check=False
    ).stdout
    return out.split("-")[0] or "?"


def start_engine(name: str, directory: Path) -> Engine:
    directory.mkdir(parents=True, exist_ok=True)
    if name == "mosquitto":
        broker = Broker(directory=directory)
        broker.start()
        return Engine(name, broker, _mosquitto_version(), "5")
    if name == "nats":
        nats = NatsBroker(directory=directory)
        nats.start()
        return Engine(name, nats, NatsBroker.version(), "3.1.1")
    if name == "rabbitmq":
        # Its own folder outside pytest's 0700 tree: the node runs as the `rabbitmq` user.
        rabbit = RabbitBroker(directory=Path(tempfile.mkdtemp(prefix="edge-rabbitmq-")))
        rabbit.start(timeout=120.0)
        return Engine(name, rabbit, RabbitBroker.version(), "3.1.1")
    raise ValueError(f"unknown MQTT engine {name!r}")


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One broker per engine per test module (a RabbitMQ node takes 10-30 s to start)."""
    e = start_engine(request.param, tmp_path_factory.mktemp(f"engine-{request.param}"))
    try:
        yield e
    finally:
        e.broker.kill()
        if isinstance(e.broker, RabbitBroker):
            shutil.rmtree(e.broker.directory, ignore_errors=True)
