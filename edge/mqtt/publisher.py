"""The daemon's one way to send: results, images and events are committed to the outbox, and a
thread drains it into the MQTT client.

Callers (the result path, the supervisor's fault events, paho's callbacks) only ever commit a row to
SQLite and wake the drain thread: publishing never waits for the network. `Publisher` is the front
that callers hold; its roles live in their own modules:
- `message_builder.MessageBuilder`: ids, topics, properties and expiry of every message (pure);
- `storage_hold.StorageHold`: what happens while the disk refuses writes (sent directly while
  connected, held in memory up to `hold_max` while not, `storage_full` / `recovered` events);
- `drain.OutboxDrain`: the thread that sends rows in order within a window, applies PUBACKs
  (deleting, or keeping a refused row for a retry with backoff) and reports what the outbox lost.

Anything lost on the way (held messages beyond the bound, rows dropped, expired, rejected or lost
with a damaged file) is reported as an event.

Threading contract: every producer method may be called from any thread; each piece states its
own contract. They share one `threading.Event` (`_wake`): producers and paho's callbacks set it, the
drain thread waits on it. `stats` reads each piece's counters without a lock (a snapshot).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from edge.core.messages import EventPayload, HealthPayload, ResultPayload
from edge.core.stats import percentile
from edge.mqtt.client import MqttClient, publish_ok
from edge.mqtt.drain import ImageGate as ImageGate
from edge.mqtt.drain import OutboxDrain
from edge.mqtt.message_builder import MessageBuilder
from edge.mqtt.outbox import Outbox
from edge.mqtt.outbox_records import OutboxMessage
from edge.mqtt.storage_hold import StorageHold
from edge.mqtt.topics import Topics


@dataclass(frozen=True)
class PublisherStats:
    depth: int
    in_flight: int
    published: int  # acknowledged by the broker, this process
    dropped: int  # drop-oldest, durable total
    expired: int  # durable total
    rejected: int  # refusals by the broker (PUBACK reason >= 128), durable total
    latency_p50_ms: float | None  # commit -> PUBACK
    latency_p99_ms: float | None
    storage: Literal["ok", "full", "error"] = "ok"
    storage_errors: int = 0  # failed writes, this process
    held: int = 0  # messages held in memory until the outbox takes them
    lost: int = 0  # held messages given up (the memory bound), this process
    refused_waiting: int = 0  # refused rows in the outbox waiting for their retry
    unstored_sent: int = 0  # sent directly, not stored, confirmed by the broker, this process


class Publisher:
    """The outbox's one producer front and the owner of its one consumer thread. Also the place
    results and events get their ids and topics (through its `MessageBuilder`)."""

    def __init__(
        self,
        client: MqttClient,
        outbox: Outbox,
        topics: Topics,
        *,
        qos: int = 1,
        message_expiry_s: int = 0,
        window: int = 32,
        drop_report_interval_s: float = 10.0,
        user_properties: tuple[tuple[str, str], ...] = (),
        clock: Callable[[], float] = time.time,
        hold_max: int = 256,
        storage_retry_s: float = 1.0,
        image_gate: ImageGate | None = None,
        refused_retry_min_s: float = 5.0,
        refused_retry_max_s: float = 300.0,
    ) -> None:
        """`image_gate`: asked before each image is handed to paho; an image it refuses is deleted
        (it counts the drop) or left in the outbox, skipped, and asked about again each round."""
        self.client = client
        self.outbox = outbox
        self.topics = topics
        self.qos = qos
        self.window = max(1, window)
        self.user_properties = user_properties
        self.boot = outbox.begin_boot()
        self.builder = MessageBuilder(
            topics,
            self.boot,
            qos=qos,
            message_expiry_s=message_expiry_s,
            user_properties=user_properties,
            clock=clock,
        )
        self._wake = threading.Event()
        self._hold = StorageHold(
            client,
            outbox,
            self.builder,
            self._wake.set,
            window=window,
            hold_max=hold_max,
            retry_s=storage_retry_s,
        )
        self._drain = OutboxDrain(
            client,
            outbox,
            self._hold,
            self.builder,
            self._wake,
            window=window,
            drop_report_interval_s=drop_report_interval_s,
            image_gate=image_gate,
            refused_retry_min_s=refused_retry_min_s,
            refused_retry_max_s=refused_retry_max_s,
        )
        client.add_ack_listener(self._drain.on_ack)
        client.add_connect_listener(self._wake.set)
        client.add_disconnect_listener(self._wake.set)
        client.add_takeover_listener(self._on_takeover)

    # ------------------------------------------------------------------ producers (any thread)

    def ttl_s(self) -> float | None:
        """How long a message may wait in the outbox (monotonic seconds), or None: forever."""
        return self.builder.ttl_s()

    def result_id(self, seq: int) -> str:
        return self.builder.result_id(seq)

    def publish_result(
        self,
        build: Callable[[int, str], ResultPayload],
        *,
        user_properties: tuple[tuple[str, str], ...] = (),
    ) -> ResultPayload | None:
        """Commit a result: `build(seq, id)` runs inside the transaction that allocates `seq`.

        The boot's sequence has no gaps: if `build` raises, no number is used. If the outbox cannot
        store it (disk full or failing) the result is held in memory, unnumbered, and stored (and
        numbered) when the disk takes writes again: None is returned then.
        """
        built: list[ResultPayload] = []

        def make(seq: int) -> OutboxMessage:
            payload = build(seq, self.builder.result_id(seq))
            message = self.builder.result(payload, seq, user_properties)
            built.append(payload)
            return message

        return built[0] if self._hold.store_numbered(make) else None

    def publish_image(
        self, camera: str, task: str, result_id: str, jpeg: bytes, part: int | None = None
    ) -> None:
        """The frame a result describes, on `{camera}/{task}/image`, through the outbox after its result.

        `part`: which of an event's key frames (0 first, 1 last); user property `frame`."""
        self._hold.store(self.builder.image(camera, task, result_id, jpeg, part))
        self._wake.set()

    def next_event_id(self) -> str:
        return self.builder.next_event_id()

    def event(self, kind: str, reason: str = "", **fields: object) -> EventPayload:
        """Build (not publish) an event with a fresh id for this device and boot."""
        return self.builder.event(kind, reason, **fields)

    def publish_event(self, event: EventPayload) -> None:
        """Store an event; never raises for storage (held in memory like a result)."""
        self._hold.store(self.builder.event_message(event))

    def publish_message(self, message: OutboxMessage) -> None:
        """Any other message that must not be lost (e.g. a retained alert state): through the outbox."""
        self._hold.store(message)

    def publish_health(self, health: HealthPayload) -> bool:
        """`health` is a snapshot, not history: sent directly at QoS 0 when connected, else skipped."""
        if not self.client.is_connected:
            return False
        m = self.builder.health(health)
        props = self.client.properties(content_type=m.content_type, user=m.user_properties)
        info = self.client.publish(m.topic, m.payload, qos=m.qos, properties=props)
        return publish_ok(info)

    def _on_takeover(self, drops: int, backoff_s: float, reason: str) -> None:
        """In paho's thread: record the event (it goes out on our next connection)."""
        event = self.builder.event(
            "session_takeover",
            reason=(
                f"another client with this client id keeps taking the broker session ({drops} drops);"
                f" backing off {backoff_s:.0f} s"
            ),
            detail={
                "client_id": self.client.client_id,
                "drops": drops,
                "backoff_s": round(backoff_s, 1),
                "broker_reason": reason,
            },
        )
        self.publish_event(event)

    # ------------------------------------------------------------------ the drain thread

    @property
    def storage(self) -> Literal["ok", "full", "error"]:
        """How the outbox takes writes: "ok", or "full"/"error" while results are held or sent unstored."""
        return self._hold.storage

    @property
    def alive(self) -> bool:
        """For the systemd watchdog (edge.daemon.liveness); `beat` is the drain loop's last round."""
        return self._drain.alive

    @property
    def beat(self) -> float:
        return self._drain.beat

    def start(self) -> None:
        self._drain.start()

    def stop(self, flush_timeout: float = 5.0) -> bool:
        """Stop after the outbox is drained or `flush_timeout` passed; True if it was drained."""
        return self._drain.stop(flush_timeout)

    # ------------------------------------------------------------------ inspection

    def stats(self) -> PublisherStats:
        st = self.outbox.stats()
        lat = list(self._drain.latencies)
        return PublisherStats(
            depth=st.depth,
            in_flight=len(self._drain.in_flight),
            published=self._drain.published,
            dropped=st.dropped_total,
            expired=st.expired_total,
            rejected=st.rejected_total,
            refused_waiting=st.refused,
            unstored_sent=self._hold.sent_unstored,
            latency_p50_ms=percentile(lat, 0.50),
            latency_p99_ms=percentile(lat, 0.99),
            storage=self._hold.storage,
            storage_errors=self._hold.errors,
            held=self._hold.held,
            lost=self._hold.lost,
        )
