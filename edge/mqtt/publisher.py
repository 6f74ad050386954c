"""Drains the outbox into the MQTT client, in order, with a bounded in-flight window.

Callers (the result path, the supervisor's fault events) only ever commit a row to SQLite and wake
this thread: publishing never waits for the network. The thread hands rows to paho while connected,
at most `window` unacknowledged at a time, and deletes a row when its PUBACK arrives. While
disconnected it hands over nothing new; paho re-sends what it already holds after the reconnect,
and after a restart the outbox replays from its first row. Acknowledgements arrive in paho's thread
and are queued here, so SQLite is only touched by this thread and the callers.

A PUBACK with a failure reason code (MQTT 5: e.g. 135 "not authorized" when an ACL denies the topic)
keeps the row, logged once and counted, and retries it with backoff (`refused_retry_min_s` doubling
up to `refused_retry_max_s`): an ACL fixed later gets what the outbox's size and age bounds kept.
Under MQTT 3.1.1 a broker acknowledges a denied message as if delivered (or drops the connection);
there is no way to tell.

Storage failures (disk full, I/O error, a damaged file) never reach the callers. While the broker is
connected the message goes to it directly (QoS 1, confirmed by its PUBACK, user property
`persisted=false`: a restart before the PUBACK loses it), oldest held ones first, at most `window`
unconfirmed; otherwise it is held in memory (bounded, `hold_max`). The failure is logged once with
the path and the free space, counted, shown in health (`storage`) and announced by an event sent
directly to the broker; this thread retries the disk every second and storing resumes by itself when
it takes writes again. A disk that never frees therefore costs durability, not delivery.
Anything lost on the way (held messages beyond the bound, rows dropped, expired, rejected or lost
with a damaged file) is reported as an event.
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
from typing import Literal, Protocol

from edge.core.messages import EventPayload, HealthPayload, ResultPayload, utc_iso
from edge.core.stats import percentile
from edge.mqtt.client import MqttClient, publish_ok
from edge.mqtt.outbox import Outbox
from edge.mqtt.outbox_losses import LOSS_PREFIX
from edge.mqtt.outbox_records import DropReport, OutboxMessage, StorageError, StoredMessage
from edge.mqtt.topics import Topics

log = logging.getLogger(__name__)

JSON = "application/json"


class ImageGate(Protocol):
    """Decides, at send time, whether an image may use the link (the daily byte budget)."""

    def admit_image(self, size: int, *, deferred: bool = False) -> Literal["send", "drop", "defer"]: ...

    def room(self) -> int | None: ...

    def deferred_expired(self, n: int) -> None: ...


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
        hold_max: int = 256,
        storage_retry_s: float = 1.0,
        image_gate: ImageGate | None = None,
        refused_retry_min_s: float = 5.0,
        refused_retry_max_s: float = 300.0,
    ) -> None:
        """`image_gate`: asked before each image is handed to paho; an image it refuses is deleted
        (it counts the drop) or left in the outbox, skipped, and asked about again each round."""
        self.client = client
        self.image_gate = image_gate
        self._deferred: deque[int] = deque()  # outbox rows of images held back for the budget
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
        self.hold_max = hold_max
        self.storage_retry_s = storage_retry_s
        self.refused_retry_min_s = refused_retry_min_s
        self.refused_retry_max_s = refused_retry_max_s
        self._refusals = 0
        self._unstored: dict[int, _Held] = {}  # mid -> sent directly, not stored, waiting for PUBACK
        self._unstored_lock = threading.Lock()
        self._unstored_sent = 0
        self._held: deque[_Held] = deque()
        self._held_lock = threading.Lock()
        self.storage: Literal["ok", "full", "error"] = "ok"
        self._storage_errors = 0
        self._lost: list[str] = []  # ids of held messages given up, not yet reported
        self._lost_total = 0
        self._storage_since = 0.0
        self._next_storage_try = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beat = time.monotonic()
        client.add_ack_listener(self._on_ack)
        client.add_connect_listener(self._wake.set)
        client.add_disconnect_listener(self._wake.set)
        client.add_takeover_listener(self._on_takeover)

    # ------------------------------------------------------------------ producers (any thread)

    def ttl_s(self) -> float | None:
        """How long a message may wait in the outbox (monotonic seconds), or None: forever."""
        return float(self.message_expiry_s) if self.message_expiry_s > 0 else None

    def result_id(self, seq: int) -> str:
        return f"{self.topics.device_id}-{self.boot}-{seq}"

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
                ttl_s=self.ttl_s(),
            )

        with self._held_lock:
            held = bool(self._held)
        if held:  # keep the order: older held messages go first
            self._hold(_Held(make=make, what="result"))
            self._wake.set()
            return None
        try:
            self.outbox.enqueue_numbered(make)
        except StorageError as err:
            self._storage_failed(err)
            item = _Held(make=make, what="result")
            if self._send_unstored(item):
                return built[0]
            self._hold(item)
            return None
        self._wake.set()
        return built[0]

    def publish_image(
        self, camera: str, task: str, result_id: str, jpeg: bytes, part: int | None = None
    ) -> None:
        """The frame a result describes, on `{camera}/{task}/image`, through the outbox after its result.

        `part`: which of an event's key frames (0 first, 1 last); user property `frame`."""
        extra = (("frame", str(part)),) if part is not None else ()
        self._store(
            OutboxMessage(
                topic=self.topics.image(camera, task),
                payload=jpeg,
                msg_id=f"{result_id}-image" if part is None else f"{result_id}-image-{part}",
                kind="image",
                qos=self.qos,
                content_type="image/jpeg",
                user_properties=(("id", result_id), *extra, *self.user_properties),
                ttl_s=self.ttl_s(),
            )
        )
        self._wake.set()

    def next_event_id(self) -> str:
        return f"{self.topics.device_id}-{self.boot}-e{next(self._event_seq)}"

    def publish_event(self, event: EventPayload) -> None:
        """Store an event; never raises for storage (held in memory like a result)."""
        self._store(self._event_message(event))

    def publish_message(self, message: OutboxMessage) -> None:
        """Any other message that must not be lost (e.g. a retained alert state): through the outbox."""
        self._store(message)

    def _store(self, message: OutboxMessage) -> None:
        with self._held_lock:
            held = bool(self._held)
        if held:
            self._hold(_Held(message=message, what=message.kind))
        else:
            try:
                self.outbox.enqueue(message)
            except StorageError as err:
                self._storage_failed(err)
                item = _Held(message=message, what=message.kind)
                if not self._send_unstored(item):
                    self._hold(item)
        self._wake.set()

    # ------------------------------------------------------------------ storage failures

    def _hold(self, item: _Held) -> None:
        with self._held_lock:
            self._held.append(item)
            while len(self._held) > self.hold_max:
                gone = self._held.popleft()
                self._lost_total += 1
                self._lost.append(gone.what)
        self._wake.set()

    def _storage_failed(self, err: StorageError) -> None:
        """Count every failed write; say it once per episode: log line, health, event."""
        self._storage_errors += 1
        if self.storage != "ok":
            return
        self.storage = "full" if err.full else "error"
        self._storage_since = time.monotonic()
        self._next_storage_try = self._storage_since + self.storage_retry_s
        free = "unknown" if err.free_bytes is None else f"{err.free_bytes} bytes"
        log.error(
            "storage %s: cannot write the outbox %s (%s); %s free; holding up to %d messages in memory"
            " and retrying every %.1f s",
            self.storage,
            self.outbox.path,
            err,
            free,
            self.hold_max,
            self.storage_retry_s,
        )
        event = self.event(
            "storage_full" if err.full else "storage_error",
            reason=str(err),
            detail={"path": str(self.outbox.path), "free_bytes": err.free_bytes, "hold_max": self.hold_max},
        )
        # The outbox cannot take it: straight to the broker (paho holds it while disconnected), and
        # held so that it is also stored, like everything else, when the disk recovers.
        message = self._event_message(event)
        item = _Held(message=message, what="event")
        if not self._send_unstored(item):
            self._direct(message)
            self._hold(item)

    def _send_unstored(self, item: _Held) -> bool:
        """The disk cannot take `item`: send it to the broker directly if connected and fewer than
        `window` such sends wait for their PUBACK. False: not sent (hold it)."""
        if not self.client.is_connected:
            return False
        with self._unstored_lock:
            if len(self._unstored) >= self.window:
                return False
            if item.message is None:
                assert item.make is not None
                _, item.message = self.outbox.number_unstored(item.make)
                item.make = None
            m = item.message
            props = self.client.properties(
                content_type=m.content_type,
                user=(*m.user_properties, ("persisted", "false")),
                expiry_s=math.ceil(m.ttl_s) if m.ttl_s else None,
            )
            try:
                info = self.client.publish(
                    m.topic, m.payload, qos=max(1, m.qos), retain=m.retain, properties=props
                )
            except ValueError as err:
                log.error("message %s cannot be published (%s); dropped", m.msg_id, err)
                with self._held_lock:
                    self._lost_total += 1
                    self._lost.append(item.what)
                return True
            if not publish_ok(info):
                return False  # numbered now: the caller holds it, ahead of what came later
            self._unstored[info.mid] = item
        return True

    def _hold_numbered(self, item: _Held) -> None:
        """A numbered message paho did not take: first in line again (its seq is older)."""
        with self._held_lock:
            self._held.appendleft(item)

    def _send_held_unstored(self) -> None:
        """The disk still refuses: send what is held directly, oldest first, while the broker is there."""
        while self.client.is_connected:
            with self._held_lock:
                if not self._held:
                    return
                item = self._held.popleft()
            if not self._send_unstored(item):
                self._hold_numbered(item)
                return

    def _unstored_ack(self, mid: int, code: int, reason: str) -> bool:
        """A PUBACK for a message sent unstored? Confirmed, or (refused) counted as lost."""
        with self._unstored_lock:
            item = self._unstored.pop(mid, None)
        if item is None:
            return False
        if code >= 128:
            msg_id = item.message.msg_id if item.message else "?"
            log.error("broker refused %s, sent unstored: %s (code %d); lost", msg_id, reason, code)
            with self._held_lock:
                self._lost_total += 1
                self._lost.append(item.what)
        else:
            self._unstored_sent += 1
        return True

    def _direct(self, m: OutboxMessage) -> None:
        try:
            props = self.client.properties(content_type=m.content_type, user=m.user_properties)
            self.client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain, properties=props)
        except (ValueError, RuntimeError) as err:
            log.warning("could not send %s directly: %s", m.msg_id, err)

    def _flush_held(self) -> None:
        """Store what is held, oldest first; on success after a failure, report and resume."""
        with self._held_lock:
            pending = bool(self._held) or bool(self._lost)
        if not pending and self.storage == "ok":
            return
        now = time.monotonic()
        if now < self._next_storage_try:
            return
        self._next_storage_try = now + self.storage_retry_s
        stored = 0
        while True:
            with self._held_lock:
                if not self._held:
                    break
                item = self._held[0]
            try:
                if item.make is not None:
                    self.outbox.enqueue_numbered(item.make)
                else:
                    assert item.message is not None
                    self.outbox.enqueue(item.message)
            except StorageError as err:
                self._storage_errors += 1
                if self.storage == "ok":
                    self._storage_failed(err)
                self._send_held_unstored()
                return
            with self._held_lock:
                if self._held and self._held[0] is item:
                    self._held.popleft()
            stored += 1
        if stored == 0 and self.storage != "ok" and self.outbox.storage != "ok":
            return  # nothing was held to try the disk with: the next result's write tells
        with self._held_lock:
            lost, self._lost = self._lost, []
        if lost:
            results = sum(1 for w in lost if w == "result")
            self._store(
                self._event_message(
                    self.event(
                        "results_dropped",
                        reason=f"storage: {len(lost)} message(s) held in memory were given up",
                        detail={"cause": "storage", "count": len(lost), "results": results},
                    )
                )
            )
        if self.storage != "ok":
            took = time.monotonic() - self._storage_since
            log.warning(
                "storage ok again: outbox %s takes writes after %.0f s; %d held message(s) stored, %d lost",
                self.outbox.path,
                took,
                stored,
                len(lost),
            )
            was = self.storage
            self.storage = "ok"
            self._store(
                self._event_message(
                    self.event(
                        "recovered",
                        reason=f"storage: the outbox takes writes again after {took:.0f} s",
                        detail={"what": "storage", "was": was, "stored": stored, "lost": len(lost)},
                    )
                )
            )

    def event(self, kind: str, reason: str = "", **fields: object) -> EventPayload:
        """Build (not publish) an event with a fresh id for this device and boot."""
        return EventPayload(
            id=self.next_event_id(),
            device=self.topics.device_id,
            at=utc_iso(self._clock()),
            event=kind,
            reason=reason,
            **fields,
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
            ttl_s=self.ttl_s(),
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
            if st.depth <= len(self._deferred):  # deferred images wait in the outbox for tomorrow
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

    def _on_takeover(self, drops: int, backoff_s: float, reason: str) -> None:
        """In paho's thread: record the event (it goes out on our next connection)."""
        event = self.event(
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
            except StorageError as err:  # a report or a deletion that the disk refused
                self._storage_failed(err)
                self._stop.wait(1.0)
            except Exception:
                log.exception("publisher step failed; retrying")
                self._stop.wait(1.0)

    def _step(self) -> None:
        self._process_acks()
        self._flush_held()
        self._maybe_report_drops()
        if not self.client.is_connected:
            return  # paho keeps what is in flight and re-sends it after the reconnect
        if self._deferred:
            self._replay_deferred()
        room = self.window - len(self._in_flight)
        if room <= 0:
            return
        flying = {s.row for s in self._in_flight.values()}
        batch = [s for s in self.outbox.next_batch(self._cursor, room) if s.row not in flying]
        for stored in batch:
            if not self._send(stored):
                break  # try again on the next round
        room = self.window - len(self._in_flight)
        retries = self.outbox.refused_due(room) if room > 0 else []
        for i, stored in enumerate(retries):
            if not self._send(stored, retry=True):
                # not taken by paho: due again at once, on the next round
                self.outbox.refuse_again([s.row for s in retries[i:]])
                break
        if not batch and not retries and not self._in_flight:
            self._drained_checkpoint()

    def _drained_checkpoint(self) -> None:
        """The outbox is empty: a good moment to truncate the WAL (at most every 10 s)."""
        now = time.monotonic()
        if now - getattr(self, "_last_checkpoint", 0.0) >= 10.0 and self.outbox.wal_bytes() > 0:
            self._last_checkpoint = now
            self.outbox.checkpoint()

    def _replay_deferred(self) -> None:
        """Images deferred by the budget, oldest first, while it has room again (a new day)."""
        gate = self.image_gate
        assert gate is not None
        while self._deferred and len(self._in_flight) < self.window:
            room = gate.room()
            if room is not None and room <= 0:
                return
            row = self._deferred[0]
            found = self.outbox.next_batch(row - 1, 1)
            if not found or found[0].row != row:  # expired or dropped by the outbox meanwhile
                self._deferred.popleft()
                gate.deferred_expired(1)
                continue
            if gate.admit_image(len(found[0].message.payload), deferred=True) != "send":
                return
            self._deferred.popleft()
            if not self._hand_over(found[0]):
                self._deferred.appendleft(row)
                return

    def _admitted(self, stored: StoredMessage) -> bool:
        """False: the budget holds this image back (deleted, or deferred in the outbox)."""
        if self.image_gate is None or stored.message.kind != "image":
            return True
        verdict = self.image_gate.admit_image(len(stored.message.payload))
        if verdict == "send":
            return True
        if verdict == "drop":
            self.outbox.delete([stored.row])
        else:
            self._deferred.append(stored.row)
        self._cursor = max(self._cursor, stored.row)
        return False

    def _send(self, stored: StoredMessage, retry: bool = False) -> bool:
        if not self._admitted(stored):
            return True
        return self._hand_over(stored, retry)

    def _hand_over(self, stored: StoredMessage, retry: bool = False) -> bool:
        m = stored.message
        expiry = None
        left = self.outbox.remaining_s(stored)
        if left is not None:
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
        if not retry:  # a retried row lies behind the cursor already
            self._cursor = max(self._cursor, stored.row)
        if m.qos == 0:
            # No PUBACK for QoS 0: handing it over is all there is.
            self.outbox.delete([stored.row])
            return True
        self._in_flight[info.mid] = stored
        return True

    def _process_acks(self) -> None:
        done: list[int] = []
        refused: list[tuple[StoredMessage, int, str]] = []
        while True:
            try:
                mid, code, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            stored = self._in_flight.pop(mid, None)
            if stored is None:
                self._unstored_ack(mid, code, reason)
                continue  # else a direct publish (state, status, replies) or a QoS 0 message
            if code >= 128:
                refused.append((stored, code, reason))
            else:
                done.append(stored.row)
                self._latencies.append(self.outbox.age_s(stored) * 1000.0)
        if done:
            self.outbox.delete(done)
            self._published += len(done)
        if refused:
            counts = dict(
                self.outbox.refuse(
                    [s.row for s, _, _ in refused],
                    retry_min_s=self.refused_retry_min_s,
                    retry_max_s=self.refused_retry_max_s,
                )
            )
            self._refusals += len(refused)
            for stored, code, reason in refused:
                n = counts.get(stored.message.msg_id)
                if n is None:
                    continue  # dropped or expired meanwhile
                # Once per message at ERROR; its later refusals only at DEBUG (the backoff says when).
                log.log(
                    logging.ERROR if n == 1 else logging.DEBUG,
                    "broker refused %s on %s: %s (code %d); kept in the outbox, retried with backoff"
                    " (refusal %d)",
                    stored.message.msg_id,
                    stored.message.topic,
                    reason,
                    code,
                    n,
                )

    def _maybe_report_drops(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_report < self.drop_report_interval_s:
            return
        if self.storage != "ok":
            return  # the reports stay pending in the outbox until it takes writes again

        def build(report: DropReport) -> OutboxMessage:
            # Cumulative: everything lost since the last report the broker acknowledged.
            detail: dict[str, object] = {
                "count": report.count,
                "bytes": report.bytes,
                "first_id": report.first_id,
                "last_id": report.last_id,
                "new": report.new,
                "repeats_reports": report.unacknowledged_reports,
            }
            if report.reason == "full":
                event = self.event(
                    "outbox_dropped",
                    reason=f"outbox full: dropped {report.count} oldest message(s)",
                    detail=detail,
                )
            elif report.reason == "damaged":
                damage = self.outbox.damage
                lost = "an unknown number of" if report.count < 0 else str(report.count)
                event = self.event(
                    "outbox_damaged",
                    reason=f"the outbox file was damaged and moved aside: {lost} queued message(s) lost",
                    detail={
                        **detail,
                        "count": None if report.count < 0 else report.count,
                        "results": damage.results if damage else None,
                        "aside": str(damage.aside) if damage else None,
                        # the damaged file's boot and last seq: results of that boot up to last_seq
                        # that a consumer never received were lost with it
                        "boot": damage.boot if damage and damage.boot else None,
                        "last_seq": damage.last_seq if damage else None,
                    },
                )
            else:
                words = {"expired": "expired unpublished", "rejected": "unpublishable, removed"}[
                    report.reason
                ]
                event = self.event(
                    "results_dropped",
                    reason=f"{report.count} message(s) {words}",
                    detail={**detail, "cause": report.reason},
                )
            return self._event_message(event)

        for reason in LOSS_PREFIX:
            if self.outbox.report_drops(build, reason) is not None:
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
            refused_waiting=st.refused,
            unstored_sent=self._unstored_sent,
            latency_p50_ms=percentile(lat, 0.50),
            latency_p99_ms=percentile(lat, 0.99),
            storage=self.storage,
            storage_errors=self._storage_errors,
            held=len(self._held),
            lost=self._lost_total,
        )


@dataclass
class _Held:
    """A message the outbox could not take yet: built (`message`) or still to be numbered (`make`)."""

    what: str  # result | event | image
    message: OutboxMessage | None = None
    make: Callable[[int], OutboxMessage] | None = None
