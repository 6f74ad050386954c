"""Drains the outbox into the MQTT client, in order, with a bounded in-flight window.

Callers (the result path, the supervisor's fault events) only ever commit a row to SQLite and wake
this thread: publishing never waits for the network. The thread hands rows to paho while connected,
at most `window` unacknowledged at a time, and deletes a row when its PUBACK arrives. While
disconnected it hands over nothing new; paho re-sends what it already holds after the reconnect,
and after a restart the outbox replays from its first row. Acknowledgements arrive in paho's thread
and are queued here, so SQLite is only touched by this thread and the callers.

A PUBACK with a failure reason code (MQTT 5: e.g. 135 "not authorized" when an ACL denies the topic)
removes the row as rejected, counted and logged: retrying would be refused again. Under MQTT 3.1.1
brokers acknowledge denied messages as if delivered; there is no way to tell.
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edge.core.messages import EventPayload, HealthPayload, ResultPayload, utc_iso
from edge.core.stats import percentile
from edge.mqtt.client import MqttClient, publish_ok
from edge.mqtt.outbox import DropReport, Outbox, OutboxMessage, StoredMessage
from edge.mqtt.topics import Topics

log = logging.getLogger(__name__)

JSON = "application/json"


@dataclass(frozen=True)
class PublisherStats:
    depth: int
    in_flight: int
    published: int  # acknowledged by the broker, this process
    dropped: int  # drop-oldest, durable total
    expired: int  # durable total
    rejected: int  # refused by the broker (PUBACK reason >= 128), durable total
    latency_p50_ms: float | None  # commit -> PUBACK
    latency_p99_ms: float | None


class Publisher:
    """The outbox's one consumer. Also the place results and events get their ids and topics."""

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
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.topics = topics
        self.qos = qos
        self.message_expiry_s = message_expiry_s
        self.window = max(1, window)
        self.drop_report_interval_s = drop_report_interval_s
        self.user_properties = user_properties
        self._clock = clock
        self.boot = outbox.begin_boot()
        self._wake = threading.Event()
        self._acks: queue.SimpleQueue[tuple[int, int, str]] = queue.SimpleQueue()
        self._in_flight: dict[int, StoredMessage] = {}  # mid -> row handed to paho
        self._cursor = 0  # highest row handed to paho
        self._published = 0
        self._latencies: deque[float] = deque(maxlen=2048)
        self._last_drop_report = 0.0
        self._event_seq = itertools.count(1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beat = time.monotonic()
        client.add_ack_listener(self._on_ack)
        client.add_connect_listener(self._wake.set)
        client.add_disconnect_listener(self._wake.set)

    # ------------------------------------------------------------------ producers (any thread)

    def expires_at(self) -> float | None:
        return self._clock() + self.message_expiry_s if self.message_expiry_s > 0 else None

    def result_id(self, seq: int) -> str:
        return f"{self.topics.device_id}-{self.boot}-{seq}"

    def publish_result(
        self,
        build: Callable[[int, str], ResultPayload],
        *,
        user_properties: tuple[tuple[str, str], ...] = (),
    ) -> ResultPayload:
        """Commit a result: `build(seq, id)` runs inside the transaction that allocates `seq`.

        The boot's sequence has no gaps: if `build` raises, no number is used.
        """
        built: list[ResultPayload] = []

        def make(seq: int) -> OutboxMessage:
            payload = build(seq, self.result_id(seq))
            if payload.seq != seq or payload.id != self.result_id(seq):
                raise ValueError("a result must carry the seq and id it was given")
            built.append(payload)
            return OutboxMessage(
                topic=self.topics.result(payload.camera, payload.task),
                payload=payload.model_dump_json().encode(),
                msg_id=payload.id,
                kind="result",
                qos=self.qos,
                content_type=JSON,
                user_properties=self._user_props(payload, user_properties),
                expires_at=self.expires_at(),
            )

        self.outbox.enqueue_numbered(make)
        self._wake.set()
        return built[0]

    def publish_image(self, camera: str, task: str, result_id: str, jpeg: bytes) -> None:
        """The frame a result describes, on `{camera}/{task}/image`, through the outbox after its result."""
        self.outbox.enqueue(
            OutboxMessage(
                topic=self.topics.image(camera, task),
                payload=jpeg,
                msg_id=f"{result_id}-image",
                kind="image",
                qos=self.qos,
                content_type="image/jpeg",
                user_properties=(("id", result_id), *self.user_properties),
                expires_at=self.expires_at(),
            )
        )
        self._wake.set()

    def next_event_id(self) -> str:
        return f"{self.topics.device_id}-{self.boot}-e{next(self._event_seq)}"

    def publish_event(self, event: EventPayload) -> None:
        self.outbox.enqueue(self._event_message(event))
        self._wake.set()

    def event(self, kind: str, reason: str = "", **fields: object) -> EventPayload:
        """Build (not publish) an event with a fresh id for this device and boot."""
        return EventPayload(
            id=self.next_event_id(),
            device=self.topics.device_id,
            at=utc_iso(self._clock()),
            event=kind,  # type: ignore[arg-type]
            reason=reason,
            **fields,  # type: ignore[arg-type]
        )

    def publish_health(self, health: HealthPayload) -> bool:
        """`health` is a snapshot, not history: sent directly at QoS 0 when connected, else skipped."""
        if not self.client.is_connected:
            return False
        props = self.client.properties(content_type=JSON, user=(("device", health.device),))
        info = self.client.publish(
            self.topics.health, health.model_dump_json().encode(), qos=0, properties=props
        )
        return publish_ok(info)

    def _event_message(self, event: EventPayload) -> OutboxMessage:
        return OutboxMessage(
            topic=self.topics.event,
            payload=event.model_dump_json().encode(),
            msg_id=event.id,
            kind="event",
            qos=self.qos,
            content_type=JSON,
            user_properties=(("device", self.topics.device_id), *self.user_properties),
            expires_at=self.expires_at(),
        )

    def _user_props(
        self, payload: ResultPayload, extra: tuple[tuple[str, str], ...]
    ) -> tuple[tuple[str, str], ...]:
        return (
            ("device", payload.device),
            ("model", payload.model.name),
            ("backend", payload.model.backend),
            ("id", payload.id),
            *self.user_properties,
            *extra,
        )

    # ------------------------------------------------------------------ the drain thread

    @property
    def alive(self) -> bool:
        """For the systemd watchdog (edge.daemon.liveness); `beat` is the drain loop's last round."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()

    def stop(self, flush_timeout: float = 5.0) -> bool:
        """Stop after the outbox is drained or `flush_timeout` passed; True if it was drained."""
        deadline = time.monotonic() + flush_timeout
        drained = False
        while time.monotonic() < deadline:
            st = self.outbox.stats()
            if st.depth == 0:
                drained = True
                break
            if not self.client.is_connected:
                break
            self._wake.set()
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if not drained:
            log.info("publisher stopped with %d message(s) kept in the outbox", self.outbox.stats().depth)
        return drained

    def _on_ack(self, mid: int, code: int, reason: str) -> None:
        self._acks.put((mid, code, reason))
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.beat = time.monotonic()
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                self._step()
            except Exception:
                log.exception("publisher step failed; retrying")
                self._stop.wait(1.0)

    def _step(self) -> None:
        self._process_acks()
        self._maybe_report_drops()
        if not self.client.is_connected:
            return  # paho keeps what is in flight and re-sends it after the reconnect
        room = self.window - len(self._in_flight)
        if room <= 0:
            return
        for stored in self.outbox.next_batch(self._cursor, room):
            if not self._send(stored):
                break  # try again on the next round

    def _send(self, stored: StoredMessage) -> bool:
        m = stored.message
        expiry = None
        if m.expires_at is not None:
            left = m.expires_at - self._clock()
            if left <= 0:
                self._wake.set()  # next_batch purges it on the next round
                return False
            expiry = math.ceil(left)
        props = self.client.properties(content_type=m.content_type, user=m.user_properties, expiry_s=expiry)
        try:
            info = self.client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain, properties=props)
        except ValueError as err:  # invalid topic or payload too large: it will never go out
            log.error("outbox message %s cannot be published (%s); removed", m.msg_id, err)
            self.outbox.reject([stored.row])
            self._cursor = max(self._cursor, stored.row)
            return True
        if not publish_ok(info):
            log.warning("paho did not take %s (rc %s); retrying", m.msg_id, info.rc)
            return False  # no wake-up: the next try is at the loop's 1 s tick, not a busy loop
        self._cursor = max(self._cursor, stored.row)
        if m.qos == 0:
            # No PUBACK for QoS 0: handing it over is all there is.
            self.outbox.delete([stored.row])
            return True
        self._in_flight[info.mid] = stored
        return True

    def _process_acks(self) -> None:
        done: list[int] = []
        rejected: list[int] = []
        now = self._clock()
        while True:
            try:
                mid, code, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            stored = self._in_flight.pop(mid, None)
            if stored is None:
                continue  # a direct publish (state, status, replies) or a QoS 0 message
            if code >= 128:
                log.error(
                    "broker refused %s on %s: %s (code %d); dropped",
                    stored.message.msg_id,
                    stored.message.topic,
                    reason,
                    code,
                )
                rejected.append(stored.row)
            else:
                done.append(stored.row)
                self._latencies.append((now - stored.created) * 1000.0)
        if done:
            self.outbox.delete(done)
            self._published += len(done)
        if rejected:
            self.outbox.reject(rejected)

    def _maybe_report_drops(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_report < self.drop_report_interval_s:
            return

        def build(report: DropReport) -> OutboxMessage:
            event = self.event(
                "outbox_dropped",
                reason=f"outbox full: dropped {report.count} oldest message(s)",
                detail={
                    "count": report.count,
                    "bytes": report.bytes,
                    "first_id": report.first_id,
                    "last_id": report.last_id,
                },
            )
            return self._event_message(event)

        if self.outbox.report_drops(build) is not None:
            self._last_drop_report = now

    # ------------------------------------------------------------------ inspection

    def stats(self) -> PublisherStats:
        st = self.outbox.stats()
        lat = list(self._latencies)
        return PublisherStats(
            depth=st.depth,
            in_flight=len(self._in_flight),
            published=self._published,
            dropped=st.dropped_total,
            expired=st.expired_total,
            rejected=st.rejected_total,
            latency_p50_ms=percentile(lat, 0.50),
            latency_p99_ms=percentile(lat, 0.99),
        )
