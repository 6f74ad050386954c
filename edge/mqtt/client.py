"""MQTT connection lifecycle on paho-mqtt 2.x: TLS, auth, last will, birth, reconnect.

paho's network thread runs every callback here. A callback that raises would kill that thread (paho
re-raises unless told otherwise), so each one is wrapped, and nothing here blocks: on_connect only
queues the subscriptions and the retained `state` + `online` publishes, then notifies listeners
(the publisher wakes its own thread; discovery publishes its config).

Birth and death: the will is `offline` (retained, QoS 1; MQTT 5 with a short will delay, so a quick
reconnect does not flap Home Assistant). On every connect the retained `state` goes out first, then
`online`. A clean `stop()` publishes `offline` itself before disconnecting, since a normal
DISCONNECT discards the will.

Reconnects back off exponentially from 1 s to at most `RECONNECT_MAX_S` (5 s): after an outage the
daemon is back within a few seconds of the broker, not up to a minute later.

Session takeover: a broker allows one connection per client id and drops the older one when another
connects with the same id (two daemons with one device_id). Both reconnect at once and fight, about
once a second, and paho says only "Unspecified error". A disconnect with reason 142 ("Session taken
over"), or `TAKEOVER_DROPS` connections each dropped within `SHORT_SESSION_S` of being made inside
`TAKEOVER_WINDOW_S`, is called a takeover: one ERROR line says so, listeners are told (the publisher
sends a `session_takeover` event), and reconnects back off to `TAKEOVER_BACKOFF_S` (doubling to
`TAKEOVER_BACKOFF_MAX_S`, with jitter) until a connection stays up for `STABLE_S`.

Protocol negotiation: `mqtt.protocol = "auto"` (the default) connects with MQTT 5. A broker that
does not speak it (NATS, RabbitMQ 3.x) answers "unsupported protocol version" (CONNACK 0x84, or the
3.1.1 return code 1), or closes the connection without a CONNACK (`SILENT_CLOSES` times in a row);
then the client falls back to MQTT 3.1.1, once, for the life of the process, with one WARNING line,
and the retained `state` says which protocol is in use and what it lacks. A pinned protocol ("5" or
"3.1.1") is never changed: the same answer then is one ERROR line naming `mqtt.protocol`, and the
client keeps retrying quietly (the broker may be upgraded, or the config fixed and reloaded).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.config.settings import MqttSettings
from edge.core.messages import MqttProtocolInfo, StatePayload
from edge.mqtt.connection import (
    SILENT_CLOSES,
    V311_LACKS,
    downgrade_to_v311,
    is_loopback,
    new_client,
    refused_protocol,
    resolve_error,
    wants_v5,
)
from edge.mqtt.topics import Topics
from edge.mqtt.wire import connect_bytes, publish_bytes

log = logging.getLogger(__name__)

AckCallback = Callable[[int, int, str], None]  # (mid, reason code value, reason in words)
MessageHandler = Callable[[paho.MQTTMessage], None]

# MQTT 3.1.1 CONNACK return codes in words (MQTT 5 reason codes carry their own names).
_V311_CONNACK = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class _PahoNoise(logging.Filter):
    """paho 2.2 logs "Client is not connected" at ERROR whenever its loop runs without a socket,
    which is every disconnect; our own on_disconnect already says that, once, at the right level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith("Client is not connected"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 5.0
SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason code
SHORT_SESSION_S = 5.0
TAKEOVER_DROPS = 3
TAKEOVER_WINDOW_S = 30.0
TAKEOVER_BACKOFF_S = 15.0
TAKEOVER_BACKOFF_MAX_S = 300.0
STABLE_S = 60.0

TakeoverCallback = Callable[[int, float, str], None]  # (drops in the window, backoff s, broker's reason)

_PAHO_LOG = logging.getLogger("edge.mqtt.paho")
_WARNED_PLAIN: set[tuple[str, int]] = set()  # plain TCP to a remote broker: said once per process


@dataclass(frozen=True)
class ConnectRefusal:
    """Why the broker said no, for `edge doctor` and health: code and the reason in words."""

    code: int
    reason: str
    at: float


class MqttClient:
    """One broker connection for the daemon. Thread-safe; `start()` never blocks."""

    def __init__(
        self,
        settings: MqttSettings,
        topics: Topics,
        *,
        client_id: str | None = None,
        will_delay_s: int = 5,
        reconnect_min_s: float = RECONNECT_MIN_S,
        reconnect_max_s: float = RECONNECT_MAX_S,
        birth: bool = True,
        takeover_backoff_s: float = TAKEOVER_BACKOFF_S,
        stable_s: float = STABLE_S,
    ) -> None:
        """`birth=False` makes a tool connection (e.g. `edge mqtt forget`): no will, no `online`,
        no command subscription, nothing published on stop."""
        self.settings = settings
        self.birth = birth
        self.topics = topics
        self.v5 = wants_v5(settings)  # False after a fallback; read at every publish
        self.pinned = settings.protocol != "auto"
        self.fell_back: str | None = None  # why the client fell back to 3.1.1, or None
        self._silent_closes = 0  # closes without a CONNACK in a row, under MQTT 5
        self._pinned_said = False
        self.client_id = client_id or settings.client_id or f"edge-{topics.device_id}"
        self.will_delay_s = will_delay_s
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stopping = False
        self._state_payload: StatePayload | None = None
        self._subscriptions: dict[str, int] = {}
        self._connect_listeners: list[Callable[[], None]] = []
        self._disconnect_listeners: list[Callable[[], None]] = []
        self._ack_listeners: list[AckCallback] = []
        self.connects = 0
        self.refusals = 0
        self.connect_failures = 0
        self.last_refusal: ConnectRefusal | None = None
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.takeover_backoff_s = takeover_backoff_s
        self.stable_s = stable_s
        self.takeovers = 0  # episodes detected
        self.takeover_backoff: float | None = None  # in force now, or None
        self._connected_at = 0.0
        self._short_drops: deque[float] = deque()
        self._takeover_listeners: list[TakeoverCallback] = []
        self._byte_counter: Callable[[int], None] | None = None

        c = new_client(settings, self.client_id)
        c.suppress_exceptions = True  # a backstop: every callback below also catches its own errors
        if not any(isinstance(f, _PahoNoise) for f in _PAHO_LOG.filters):
            _PAHO_LOG.addFilter(_PahoNoise())
        c.enable_logger(_PAHO_LOG)
        if settings.tls is not None and settings.tls.insecure:
            log.warning(
                "mqtt.tls.insecure is on: the broker's certificate and host name are NOT verified; "
                "anyone on the path can read and forge messages"
            )
        plain_remote = settings.tls is None and not is_loopback(settings.host)
        if plain_remote and (settings.host, settings.port) not in _WARNED_PLAIN:
            _WARNED_PLAIN.add((settings.host, settings.port))
            log.warning(
                "MQTT to %s:%d is plain TCP: messages%s travel unencrypted; configure [mqtt.tls]",
                settings.host,
                settings.port,
                " and the password" if settings.username else "",
            )
        will_props = None
        if self.v5 and birth and will_delay_s > 0:
            will_props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
            will_props.WillDelayInterval = will_delay_s
        if birth:
            c.will_set(topics.status, b"offline", qos=1, retain=True, properties=will_props)
        c.reconnect_delay_set(reconnect_min_s, reconnect_max_s)  # type: ignore[arg-type]
        # Our own publisher bounds what is in flight; paho's limit only has to stay out of its way.
        c.max_inflight_messages_set(1000)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_publish = self._on_publish
        c.on_message = self._on_unhandled_message
        self._client = c

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background; paho retries with exponential backoff until stop()."""
        props = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            # The will delay only applies while the session lives: keep it at least that long.
            props.SessionExpiryInterval = max(self.will_delay_s, 0) if self.birth else 0
        log.info(
            "MQTT connecting to %s:%d (%s, MQTT %s, client id %s)",
            self.settings.host,
            self.settings.port,
            "TLS" if self.settings.tls else "plain",
            self.settings.protocol if self.pinned else "5, 3.1.1 if the broker refuses 5",
            self.client_id,
        )
        self._client.connect_async(
            self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s, properties=props
        )
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish `offline` ourselves (a clean DISCONNECT discards the will), then disconnect."""
        self._stopping = True
        if self.birth and self._connected.is_set():
            self._count(self.topics.status, b"offline", 1, None)
            info = self._client.publish(self.topics.status, b"offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as err:
                log.warning("could not publish offline before disconnecting: %s", err)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        log.info("MQTT disconnected")

    @property
    def network_alive(self) -> bool:
        """paho's network thread runs (it ends only on stop(), or when something in it raised)."""
        thread = self._client._thread  # paho sets it in loop_start and clears it when the loop ends
        return thread is not None and thread.is_alive()

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # ------------------------------------------------------------------ wiring for other components

    def add_connect_listener(self, callback: Callable[[], None]) -> None:
        """Called in paho's thread after each successful connect (after state and online)."""
        self._connect_listeners.append(callback)

    def add_disconnect_listener(self, callback: Callable[[], None]) -> None:
        self._disconnect_listeners.append(callback)

    def add_takeover_listener(self, callback: TakeoverCallback) -> None:
        """Called in paho's thread when a session takeover is detected (once per episode)."""
        self._takeover_listeners.append(callback)

    def add_ack_listener(self, callback: AckCallback) -> None:
        """Called in paho's thread with (mid, reason code, reason) for every completed publish."""
        self._ack_listeners.append(callback)

    def set_byte_counter(self, counter: Callable[[int], None]) -> None:
        """`counter(n)` gets the wire size of every PUBLISH handed to paho (and an estimate of each
        CONNECT): this class is the one place that calls paho's publish, so nothing escapes it."""
        self._byte_counter = counter

    def _count(self, topic: str, payload: bytes | str | None, qos: int, props: Properties | None) -> None:
        if self._byte_counter is not None:
            self._byte_counter(publish_bytes(topic, payload, qos, v5=self.v5, properties=props))

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> None:
        """Route messages on `topic_filter` to `handler` (in paho's thread; it must not block)."""

        def safe(_client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
            try:
                handler(msg)
            except Exception:
                log.exception("handler for %s failed on a message on %s", topic_filter, msg.topic)

        self._client.message_callback_add(topic_filter, safe)
        with self._lock:
            self._subscriptions[topic_filter] = qos
        if self._connected.is_set():
            self._client.subscribe(self._with_options([(topic_filter, qos)]))

    def _with_options(
        self, subs: list[tuple[str, int]]
    ) -> list[tuple[str, SubscribeOptions]] | list[tuple[str, int]]:
        """MQTT 5: retain-as-published, so a retained message published while we are subscribed
        still arrives with its retain flag (handlers can refuse it); MQTT 3.1.1 clears it."""
        if self.v5:
            return [(f, SubscribeOptions(qos=q, retainAsPublished=True)) for f, q in subs]
        return subs

    # ------------------------------------------------------------------ publishing

    def set_state(self, state: StatePayload) -> None:
        """Remember the retained `state`; publish it now if connected, and on every connect."""
        with self._lock:
            self._state_payload = state
        if self._connected.is_set():
            self.publish(
                self.topics.state,
                self._state_bytes(state),
                qos=1,
                retain=True,
                properties=self.json_properties(),
            )

    @property
    def protocol(self) -> str:
        """The protocol the next (or current) connection speaks: "5" or "3.1.1"."""
        return "5" if self.v5 else "3.1.1"

    def protocol_info(self) -> MqttProtocolInfo:
        """For `state`: which protocol is in use, whether negotiation chose it, what it lacks."""
        return MqttProtocolInfo(
            protocol="5" if self.v5 else "3.1.1",
            fallback=self.fell_back is not None,
            lacks=[] if self.v5 else list(V311_LACKS),
        )

    def _state_bytes(self, state: StatePayload) -> bytes:
        return state.model_copy(update={"mqtt": self.protocol_info()}).model_dump_json().encode()

    def publish(
        self,
        topic: str,
        payload: bytes | str | None,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> paho.MQTTMessageInfo:
        """Thread-safe, non-blocking. While disconnected paho holds QoS 1 messages in memory and
        sends them on reconnect; anything that must survive a restart goes through the outbox."""
        self._count(topic, payload, qos, properties)
        return self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)

    def properties(
        self,
        *,
        content_type: str | None = None,
        user: tuple[tuple[str, str], ...] = (),
        expiry_s: int | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> Properties | None:
        """MQTT 5 PUBLISH properties; None under 3.1.1 (which has none)."""
        if not self.v5:
            return None
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if content_type:
            props.ContentType = content_type
        if user:
            props.UserProperty = list(user)
        if expiry_s is not None:
            props.MessageExpiryInterval = max(1, int(expiry_s))
        if response_topic:
            props.ResponseTopic = response_topic
        if correlation_data is not None:
            props.CorrelationData = correlation_data
        return props

    def json_properties(self) -> Properties | None:
        return self.properties(content_type="application/json")

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(self, client: paho.Client, _ud: Any, _flags: Any, rc: ReasonCode, _props: Any) -> None:
        try:
            self._silent_closes = 0
            if rc.is_failure:
                code = int(rc.value)
                words = str(rc) if self.v5 else _V311_CONNACK.get(code, str(rc))
                if refused_protocol(code):
                    self._protocol_refused(f"{words}, code {code}", code, words)
                    return
                self.refusals += 1
                self.last_refusal = ConnectRefusal(code, words, time.time())
                log.error(
                    "MQTT broker %s:%d refused the connection: %s (code %d); retrying with backoff",
                    self.settings.host,
                    self.settings.port,
                    words,
                    code,
                )
                return
            self.connects += 1
            self.last_refusal = None
            self._connected_at = time.monotonic()
            log.info("MQTT connected to %s:%d", self.settings.host, self.settings.port)
            with self._lock:
                subs = list(self._subscriptions.items())
                state = self._state_payload
            if subs:
                client.subscribe(self._with_options(subs))
            if self._byte_counter is not None:
                self._byte_counter(connect_bytes(self.client_id, self.topics.status, b"offline", self.v5))
            if state is not None:
                props = self.json_properties()
                payload = self._state_bytes(state)
                self._count(self.topics.state, payload, 1, props)
                client.publish(self.topics.state, payload, qos=1, retain=True, properties=props)
            self._count(self.topics.status, b"online", 1, None)
            client.publish(self.topics.status, b"online", qos=1, retain=True)
            self._connected.set()
            for listener in list(self._connect_listeners):
                self._call(listener)
        except Exception:
            log.exception("MQTT on_connect failed")

    def _on_disconnect(self, _c: Any, _ud: Any, _flags: Any, rc: ReasonCode, _props: Any) -> None:
        try:
            was = self._connected.is_set()
            self._connected.clear()
            if not was and not self._stopping and self.v5:
                # TCP was up and the CONNECT sent (a failed TCP connect goes to on_connect_fail),
                # but the broker hung up without a CONNACK.
                self._silent_closes += 1
                if self._silent_closes >= SILENT_CLOSES:
                    self._silent_closes = 0
                    why = f"closed the connection {SILENT_CLOSES} times without answering an MQTT 5 CONNECT"
                    self._protocol_refused(why, 132, "no CONNACK to an MQTT 5 CONNECT")
            if was and not self._stopping and not self._check_takeover(rc):
                log.warning("MQTT connection lost (%s); reconnecting with backoff", rc)
            if was:
                for listener in list(self._disconnect_listeners):
                    self._call(listener)
        except Exception:
            log.exception("MQTT on_disconnect failed")

    def _protocol_refused(self, why: str, code: int, words: str) -> None:
        """The broker does not speak the protocol tried: fall back to 3.1.1 (auto), or say that the
        pinned `mqtt.protocol` is wrong, once (later refusals are only counted)."""
        where = f"{self.settings.host}:{self.settings.port}"
        self.refusals += 1
        if self.v5 and not self.pinned:
            downgrade_to_v311(self._client)
            self.v5 = False
            self.fell_back = why
            self.last_refusal = None
            log.warning(
                "MQTT broker %s does not speak MQTT 5 (%s): falling back to MQTT 3.1.1, which has no %s;"
                ' set mqtt.protocol = "3.1.1" to skip the MQTT 5 attempt',
                where,
                why,
                ", no ".join(V311_LACKS),
            )
            return
        fix = '"auto" or "3.1.1"' if self.v5 else '"auto" or "5"'
        self.last_refusal = ConnectRefusal(
            code, f'{words}: mqtt.protocol = "{self.protocol}" is not spoken by this broker', time.time()
        )
        if self._pinned_said:
            log.debug("MQTT broker %s refused MQTT %s again (%s)", where, self.protocol, why)
            return
        self._pinned_said = True
        log.error(
            'config error: mqtt.protocol = "%s" is pinned, but the broker %s does not speak MQTT %s (%s);'
            " set mqtt.protocol = %s. Retrying quietly.",
            self.protocol,
            where,
            self.protocol,
            why,
            fix,
        )

    def _check_takeover(self, rc: ReasonCode) -> bool:
        """Runs before paho picks its next reconnect delay. True: a takeover (said once per episode)."""
        now = time.monotonic()
        lasted = now - self._connected_at
        if lasted >= self.stable_s and self.takeover_backoff is not None:
            log.info("MQTT session stayed up %.0f s: takeover backoff ends", lasted)
            self.takeover_backoff = None
            self._short_drops.clear()
            self._client.reconnect_delay_set(self.reconnect_min_s, self.reconnect_max_s)  # type: ignore[arg-type]
        code = int(rc.value) if hasattr(rc, "value") else -1
        if lasted < SHORT_SESSION_S:
            self._short_drops.append(now)
        while self._short_drops and now - self._short_drops[0] > TAKEOVER_WINDOW_S:
            self._short_drops.popleft()
        taken = code == SESSION_TAKEN_OVER or len(self._short_drops) >= TAKEOVER_DROPS
        if not taken:
            return False
        if self.takeover_backoff is not None:  # already backing off: one line per episode
            backoff = min(self.takeover_backoff * 2, TAKEOVER_BACKOFF_MAX_S)
            self.takeover_backoff = backoff
            self._client.reconnect_delay_set(backoff, backoff)  # type: ignore[arg-type]
            log.debug("MQTT session taken over again; next connect in %.0f s", backoff)
            return True
        self.takeovers += 1
        backoff = self.takeover_backoff_s * random.uniform(1.0, 1.5)
        self.takeover_backoff = backoff
        self._client.reconnect_delay_set(backoff, backoff)  # type: ignore[arg-type]
        drops = len(self._short_drops)
        log.error(
            "MQTT session taken over: the broker %s:%d dropped client id %r for another client with the"
            " same id (%d drop(s) within %.0f s, last: %s); is a second daemon running with this device_id"
            " or mqtt.client_id? backing off %.0f s between connects instead of fighting",
            self.settings.host,
            self.settings.port,
            self.client_id,
            drops,
            TAKEOVER_WINDOW_S,
            rc,
            backoff,
        )
        for listener in list(self._takeover_listeners):
            try:
                listener(drops, backoff, str(rc))
            except Exception:
                log.exception("MQTT takeover listener failed")
        return True

    def _on_connect_fail(self, _c: Any, _ud: Any) -> None:
        self.connect_failures += 1
        n = self.connect_failures
        if n == 1 or n % 10 == 0:
            why = resolve_error(self.settings.host, self.settings.port) or "unreachable"
            log.warning(
                "MQTT broker %s:%d: %s (attempt %d); retrying with backoff",
                self.settings.host,
                self.settings.port,
                why,
                n,
            )

    def _on_publish(self, _c: Any, _ud: Any, mid: int, rc: ReasonCode, _props: Any) -> None:
        for listener in self._ack_listeners:
            try:
                listener(mid, int(rc.value), str(rc))
            except Exception:
                log.exception("MQTT ack listener failed")

    def _on_unhandled_message(self, _c: Any, _ud: Any, msg: paho.MQTTMessage) -> None:
        log.debug("MQTT message on %s with no handler", msg.topic)

    @staticmethod
    def _call(listener: Callable[[], None]) -> None:
        try:
            listener()
        except Exception:
            log.exception("MQTT connection listener failed")


def publish_ok(info: paho.MQTTMessageInfo) -> bool:
    """paho queued the message (sent now, or held for the reconnect)."""
    return info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)
