"""The drain thread: moves outbox rows to the broker, in order, with a bounded in-flight window.

It hands rows to paho while connected, at most `window` unacknowledged at a time, and deletes a row
when its PUBACK arrives. While disconnected it hands over nothing new; paho re-sends what it already
holds after the reconnect, and after a restart the outbox replays from its first row. Each round it
also retries a refusing disk (`StorageHold.flush`), reports what the outbox lost (its loss ledger, as
events, at most every `drop_report_interval_s`), and truncates the WAL when the outbox is empty.

A PUBACK with a failure reason code (MQTT 5: e.g. 135 "not authorized" when an ACL denies the topic)
keeps the row, logged once and counted, and retries it with backoff (`refused_retry_min_s` doubling
up to `refused_retry_max_s`): an ACL fixed later gets what the outbox's size and age bounds kept.
Under MQTT 3.1.1 a broker acknowledges a denied message as if delivered (or drops the connection);
there is no way to tell.

Images ask the link's byte budget (`ImageGate`) before they go: one it refuses is deleted, or left
in the outbox (deferred) and offered again, oldest first, when the budget has room.

Threading contract: one thread (`mqtt-publisher`) owns the window, the cursor, the deferred images
and every outbox read and deletion made for sending. Other threads only set `wake` (producers after
a commit, paho on connect and disconnect) and queue PUBACKs through `on_ack` (paho's thread): the
acknowledgements are applied here, so the in-flight table needs no lock. `stats`-side readers
(`in_flight`, `published`, `latencies`) read sizes and counters without a lock: a snapshot.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from typing import Literal, Protocol

from edge.mqtt.client import MqttClient, publish_ok
from edge.mqtt.message_builder import MessageBuilder
from edge.mqtt.outbox import Outbox
from edge.mqtt.outbox_losses import LOSS_PREFIX
from edge.mqtt.outbox_records import DropReport, OutboxMessage, StorageError, StoredMessage
from edge.mqtt.storage_hold import StorageHold

log = logging.getLogger("edge.mqtt.publisher")  # the publisher's lines, under its name as before

CHECKPOINT_EVERY_S = 10.0  # the emptied outbox's WAL is truncated at most this often


class ImageGate(Protocol):
    """Decides, at send time, whether an image may use the link (the daily byte budget)."""

    def admit_image(self, size: int, *, deferred: bool = False) -> Literal["send", "drop", "defer"]: ...

    def room(self) -> int | None: ...

    def deferred_expired(self, n: int) -> None: ...


class OutboxDrain:
    """The outbox's one consumer: sends its rows, applies the broker's answers."""

    def __init__(
        self,
        client: MqttClient,
        outbox: Outbox,
        hold: StorageHold,
        builder: MessageBuilder,
        wake: threading.Event,
        *,
        window: int = 32,
        drop_report_interval_s: float = 10.0,
        image_gate: ImageGate | None = None,
        refused_retry_min_s: float = 5.0,
        refused_retry_max_s: float = 300.0,
    ) -> None:
        """`wake`: set by whoever has work for this thread; it waits on it (1 s at most per round)."""
        self.client = client
        self.outbox = outbox
        self.hold = hold
        self.builder = builder
        self.wake = wake
        self.window = max(1, window)
        self.drop_report_interval_s = drop_report_interval_s
        self.image_gate = image_gate
        self.refused_retry_min_s = refused_retry_min_s
        self.refused_retry_max_s = refused_retry_max_s
        self.deferred: deque[int] = deque()  # outbox rows of images held back for the budget
        self._acks: queue.SimpleQueue[tuple[int, int, str]] = queue.SimpleQueue()
        self.in_flight: dict[int, StoredMessage] = {}  # mid -> row handed to paho
        self._cursor = 0  # highest row handed to paho
        self.published = 0  # acknowledged by the broker, this process
        self.latencies: deque[float] = deque(maxlen=2048)  # commit -> PUBACK, ms
        self.refusals = 0
        self._last_drop_report = 0.0
        self._last_checkpoint = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beat = time.monotonic()

    # ------------------------------------------------------------------ other threads

    def on_ack(self, mid: int, code: int, reason: str) -> None:
        """In paho's thread: queue the PUBACK for this thread."""
        self._acks.put((mid, code, reason))
        self.wake.set()

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
            if st.depth <= len(self.deferred):  # deferred images wait in the outbox for tomorrow
                drained = True
                break
            if not self.client.is_connected:
                break
            self.wake.set()
            time.sleep(0.02)
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if not drained:
            log.info("publisher stopped with %d message(s) kept in the outbox", self.outbox.stats().depth)
        return drained

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while not self._stop.is_set():
            self.beat = time.monotonic()
            self.wake.wait(1.0)
            self.wake.clear()
            try:
                self._step()
            except StorageError as err:  # a report or a deletion that the disk refused
                self.hold.failed(err)
                self._stop.wait(1.0)
            except Exception:
                log.exception("publisher step failed; retrying")
                self._stop.wait(1.0)

    def _step(self) -> None:
        self._process_acks()
        self.hold.flush()
        self._maybe_report_drops()
        if not self.client.is_connected:
            return  # paho keeps what is in flight and re-sends it after the reconnect
        if self.deferred:
            self._replay_deferred()
        room = self.window - len(self.in_flight)
        if room <= 0:
            return
        flying = {s.row for s in self.in_flight.values()}
        batch = [s for s in self.outbox.next_batch(self._cursor, room) if s.row not in flying]
        for stored in batch:
            if not self._send(stored):
                break  # try again on the next round
        room = self.window - len(self.in_flight)
        retries = self.outbox.refused_due(room) if room > 0 else []
        for i, stored in enumerate(retries):
            if not self._send(stored, retry=True):
                # not taken by paho: due again at once, on the next round
                self.outbox.refuse_again([s.row for s in retries[i:]])
                break
        if not batch and not retries and not self.in_flight:
            self._drained_checkpoint()

    def _drained_checkpoint(self) -> None:
        """The outbox is empty: a good moment to truncate the WAL (at most every 10 s)."""
        now = time.monotonic()
        if now - self._last_checkpoint >= CHECKPOINT_EVERY_S and self.outbox.wal_bytes() > 0:
            self._last_checkpoint = now
            self.outbox.checkpoint()

    def _replay_deferred(self) -> None:
        """Images deferred by the budget, oldest first, while it has room again (a new day)."""
        gate = self.image_gate
        assert gate is not None
        while self.deferred and len(self.in_flight) < self.window:
            room = gate.room()
            if room is not None and room <= 0:
                return
            row = self.deferred[0]
            found = self.outbox.next_batch(row - 1, 1)
            if not found or found[0].row != row:  # expired or dropped by the outbox meanwhile
                self.deferred.popleft()
                gate.deferred_expired(1)
                continue
            if gate.admit_image(len(found[0].message.payload), deferred=True) != "send":
                return
            self.deferred.popleft()
            if not self._hand_over(found[0]):
                self.deferred.appendleft(row)
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
            self.deferred.append(stored.row)
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
                self.wake.set()  # next_batch purges it on the next round
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
        self.in_flight[info.mid] = stored
        return True

    def _process_acks(self) -> None:
        done: list[int] = []
        refused: list[tuple[StoredMessage, int, str]] = []
        while True:
            try:
                mid, code, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            stored = self.in_flight.pop(mid, None)
            if stored is None:
                self.hold.ack(mid, code, reason)
                continue  # else a direct publish (state, status, replies) or a QoS 0 message
            if code >= 128:
                refused.append((stored, code, reason))
            else:
                done.append(stored.row)
                self.latencies.append(self.outbox.age_s(stored) * 1000.0)
        if done:
            self.outbox.delete(done)
            self.published += len(done)
        if refused:
            self._refused(refused)

    def _refused(self, refused: list[tuple[StoredMessage, int, str]]) -> None:
        """Refusals stay in the outbox with a retry time; each message said once at ERROR."""
        counts = dict(
            self.outbox.refuse(
                [s.row for s, _, _ in refused],
                retry_min_s=self.refused_retry_min_s,
                retry_max_s=self.refused_retry_max_s,
            )
        )
        self.refusals += len(refused)
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
        if self.hold.storage != "ok":
            return  # the reports stay pending in the outbox until it takes writes again

        def report(loss: DropReport) -> OutboxMessage:
            # Cumulative: everything lost since the last report the broker acknowledged.
            return self.builder.loss_report(loss, self.outbox.damage)

        for reason in LOSS_PREFIX:
            if self.outbox.report_drops(report, reason) is not None:
                self._last_drop_report = now
