"""A consumer's connection: subscribe to topic filters (optionally as a member of a shared
subscription group) and hand every message to a callback, reconnecting until stopped.

It is built by the one connection factory (`connection.new_client`), so `edge watch` and the
consumer library read the daemon's own TLS, credential and protocol settings. Paho stays inside
`edge.mqtt`: the callback receives plain (topic, payload, retain).

Sessions: by default a clean session (a live view: what was published while away is not wanted).
`session_expiry_s > 0` makes it persistent (MQTT 5 session expiry, MQTT 3.1.1 clean_session off):
the broker queues QoS 1 messages while the consumer is away, so a consumer that must not lose
anything (a data pipeline, the far side of a bridge) gets them on reconnect. A persistent session
needs a stable `client_id`.

Shared subscriptions (`group`): each filter becomes `$share/{group}/{filter}` and the broker gives each
message to one member of the group; several consumers split a fleet's stream. MQTT 5 names the
syntax; mosquitto (2.0+), EMQX, HiveMQ and VerneMQ accept it.

Protocol: as the daemon's, `mqtt.protocol = "auto"` starts with MQTT 5 and falls back to 3.1.1 once
when the broker does not speak 5 (NATS, RabbitMQ 3.x), so a consumer works against the same brokers
as the daemon with the same settings.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config.settings import MqttSettings
from edge.core.errors import EdgeError
from edge.core.names import check_name
from edge.mqtt.connection import (
    SILENT_CLOSES,
    Client,
    Message,
    downgrade_to_v311,
    new_client,
    refused_protocol,
    wants_v5,
)

log = logging.getLogger(__name__)

MessageCallback = Callable[[str, bytes, bool], None]  # topic, payload, retain
# topic, payload, retain, MQTT 5 user properties ({} on MQTT 3.1.1): for consumers that join a
# message to another by what the daemon names there (an image's `id` is its result's id)
PropertiesCallback = Callable[[str, bytes, bool, dict[str, str]], None]


class SubscribeError(EdgeError):
    """The consumer could not connect or subscribe (refused, unreachable, not authorized)."""


def shared(topic_filter: str, group: str | None) -> str:
    """`$share/{group}/{filter}`, or the filter itself without a group."""
    return f"$share/{check_name(group, reserved=False)}/{topic_filter}" if group else topic_filter


class Subscriber:
    """Subscribes on every (re)connect; `on_message` runs in paho's thread and must not block."""

    def __init__(
        self,
        settings: MqttSettings,
        filters: Sequence[str],
        on_message: MessageCallback,
        *,
        client_id: str,
        group: str | None = None,
        qos: int = 1,
        session_expiry_s: int = 0,
        on_connection: Callable[[bool], None] | None = None,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        on_message_props: PropertiesCallback | None = None,
    ) -> None:
        self.settings = settings
        self.filters = [shared(f, group) for f in filters]
        self.qos = qos
        self.v5 = wants_v5(settings)
        self.pinned = settings.protocol != "auto"
        self._silent_closes = 0
        self.persistent = session_expiry_s > 0
        self.session_expiry_s = session_expiry_s
        self._on_message = on_message
        self._on_message_props = on_message_props
        self._on_connection = on_connection
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self.refusal: str | None = None
        self.connects = 0
        self.received = 0
        c = new_client(settings, client_id, clean_session=not self.persistent)
        c.suppress_exceptions = True
        c.reconnect_delay_set(reconnect_min_s, reconnect_max_s)  # type: ignore[arg-type]
        c.on_connect = self._connect
        c.on_disconnect = self._disconnect
        c.on_subscribe = self._suback
        c.on_message = self._message
        self._client: Client = c

    def start(self, timeout_s: float = 10.0) -> Subscriber:
        """Connect and wait for the first SUBACK; SubscribeError if none came within `timeout_s`."""
        props = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.session_expiry_s
        kw: dict[str, Any] = {"clean_start": not self.persistent} if self.v5 else {}
        self._client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive_s,
            properties=props,
            **kw,
        )
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.stop()
            where = f"{self.settings.host}:{self.settings.port}"
            why = f": {self.refusal}" if self.refusal else ""
            raise SubscribeError(f"no subscription on {where} within {timeout_s:.0f} s{why}")
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _connect(self, client: Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self._silent_closes = 0
        if rc.is_failure:
            if self.v5 and not self.pinned and refused_protocol(int(rc.value)):
                self._fall_back(str(rc))
                return
            self.refusal = f"refused: {rc}"
            if refused_protocol(int(rc.value)):
                self.refusal += f' (mqtt.protocol = "{self.settings.protocol}" is pinned; try "auto")'
            return
        self.connects += 1
        self._connected.set()
        client.subscribe([(f, self.qos) for f in self.filters])
        if self._on_connection is not None:
            self._on_connection(True)

    def _fall_back(self, why: str) -> None:
        downgrade_to_v311(self._client, clean_session=not self.persistent)
        self.v5 = False
        log.info(
            "MQTT broker %s:%d does not speak MQTT 5 (%s): using MQTT 3.1.1",
            self.settings.host,
            self.settings.port,
            why,
        )

    def _disconnect(self, *_a: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if not was and self.v5 and not self.pinned:  # hung up on the MQTT 5 CONNECT, no CONNACK
            self._silent_closes += 1
            if self._silent_closes >= SILENT_CLOSES:
                self._fall_back("no CONNACK to an MQTT 5 CONNECT")
        if was and self._on_connection is not None:
            self._on_connection(False)

    def _suback(self, _c: Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        bad = [str(c) for c in codes if getattr(c, "is_failure", False)]
        if bad:
            self.refusal = f"subscription refused: {', '.join(bad)}"
            log.error("%s (filters %s)", self.refusal, ", ".join(self.filters))
            return
        self._subscribed.set()

    def _message(self, _c: Client, _u: Any, msg: Message) -> None:
        self.received += 1
        try:
            if self._on_message_props is not None:
                user = getattr(msg.properties, "UserProperty", None) if msg.properties else None
                props = {str(k): str(v) for k, v in (user or [])}
                self._on_message_props(msg.topic, bytes(msg.payload), bool(msg.retain), props)
            else:
                self._on_message(msg.topic, bytes(msg.payload), bool(msg.retain))
        except Exception:
            log.exception("consumer callback failed on a message on %s", msg.topic)
