"""What the publisher does with messages while the outbox cannot store them (disk full, I/O error,
a damaged file): storage failures never reach the callers.

While the broker is connected a message goes to it directly (QoS 1, confirmed by its PUBACK, user
property `persisted=false`: a restart before the PUBACK loses it), oldest held ones first, at most
`window` unconfirmed; otherwise it is held in memory, at most `hold_max` (the oldest beyond that are
given up, counted, and reported). The failure is logged once per episode with the path and the free
space, counted, shown in health (`storage`) and announced by an event (`storage_full` or
`storage_error`) sent directly to the broker; the drain thread retries the disk every `retry_s`
(`flush`), and storing resumes by itself when it takes writes again (`recovered`, and a
`results_dropped` for what the bound gave up). A disk that never frees therefore costs durability,
not delivery. Order is kept: while anything is held, new messages queue behind it.

A result the disk refuses stays unnumbered (`make`, its builder) while it is held: its `seq` is
allocated when it is stored, or when it is sent directly (`Outbox.number_unstored`), so the boot's
sequence has no gaps.

Threading contract: `store`, `store_numbered` and `failed` are called from any thread (the result
path, the supervisor's callbacks, paho's thread); `flush` and `ack` only from the drain thread.
- `_held_lock` guards the held queue and the given-up list (`_held`, `_lost`, `_lost_total`);
- `_unstored_lock` guards the direct sends waiting for their PUBACK (`_unstored`), and is held
  across the publish, so a PUBACK (queued by paho, read by the drain thread) never comes before
  its send is recorded. Lock order: `_unstored_lock`, then `_held_lock` or the outbox's lock.
- `storage` and the episode's times are plain attributes: written by whichever thread sees the
  failure first (two threads failing at once may both announce it) and read without a lock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from edge.mqtt.client import MqttClient, publish_ok
from edge.mqtt.message_builder import MessageBuilder
from edge.mqtt.outbox import Outbox
from edge.mqtt.outbox_records import OutboxMessage, StorageError

log = logging.getLogger("edge.mqtt.publisher")  # the publisher's lines, under its name as before

StorageState = Literal["ok", "full", "error"]


@dataclass
class HeldMessage:
    """A message the outbox could not take yet: built (`message`) or still to be numbered (`make`)."""

    what: str  # result | event | image
    message: OutboxMessage | None = None
    make: Callable[[int], OutboxMessage] | None = None


class StorageHold:
    """Stores messages in the outbox, or, while it refuses, sends them directly or holds them."""

    def __init__(
        self,
        client: MqttClient,
        outbox: Outbox,
        builder: MessageBuilder,
        wake: Callable[[], None],
        *,
        window: int = 32,
        hold_max: int = 256,
        retry_s: float = 1.0,
    ) -> None:
        """`wake`: tells the drain thread there is work (a held message, a stored one); `window`: the
        most direct sends waiting for their PUBACK at once."""
        self.client = client
        self.outbox = outbox
        self.builder = builder
        self._wake = wake
        self.window = max(1, window)
        self.hold_max = hold_max
        self.retry_s = retry_s
        self.storage: StorageState = "ok"
        self.errors = 0  # failed writes, this process
        self.sent_unstored = 0  # sent directly, not stored, confirmed by the broker, this process
        self._held: deque[HeldMessage] = deque()
        self._held_lock = threading.Lock()
        self._lost: list[str] = []  # kinds of held messages given up, not yet reported
        self._lost_total = 0
        self._unstored: dict[int, HeldMessage] = {}  # mid -> sent directly, waiting for its PUBACK
        self._unstored_lock = threading.Lock()
        self._since = 0.0
        self._next_try = 0.0

    @property
    def held(self) -> int:
        """Messages held in memory until the outbox takes them."""
        return len(self._held)

    @property
    def lost(self) -> int:
        """Held messages given up (the memory bound, a refused direct send), this process."""
        return self._lost_total

    # ------------------------------------------------------------------ any thread

    def store_numbered(self, make: Callable[[int], OutboxMessage]) -> bool:
        """Store the result `make(seq)` builds, its `seq` allocated in the commit. False: held in
        memory, unnumbered (stored and numbered when the disk takes writes again)."""
        with self._held_lock:
            held = bool(self._held)
        if held:  # keep the order: older held messages go first
            self._hold(HeldMessage(make=make, what="result"))
            self._wake()
            return False
        try:
            self.outbox.enqueue_numbered(make)
        except StorageError as err:
            self.failed(err)
            item = HeldMessage(make=make, what="result")
            if self._send_unstored(item):
                return True
            self._hold(item)
            return False
        self._wake()
        return True

    def store(self, message: OutboxMessage) -> None:
        """Store `message` in the outbox; never raises for storage (sent directly or held)."""
        with self._held_lock:
            held = bool(self._held)
        if held:
            self._hold(HeldMessage(message=message, what=message.kind))
        else:
            try:
                self.outbox.enqueue(message)
            except StorageError as err:
                self.failed(err)
                item = HeldMessage(message=message, what=message.kind)
                if not self._send_unstored(item):
                    self._hold(item)
        self._wake()

    def failed(self, err: StorageError) -> None:
        """Count every failed write; say it once per episode: log line, health, event."""
        self.errors += 1
        if self.storage != "ok":
            return
        self.storage = "full" if err.full else "error"
        self._since = time.monotonic()
        self._next_try = self._since + self.retry_s
        free = "unknown" if err.free_bytes is None else f"{err.free_bytes} bytes"
        log.error(
            "storage %s: cannot write the outbox %s (%s); %s free; holding up to %d messages in memory"
            " and retrying every %.1f s",
            self.storage,
            self.outbox.path,
            err,
            free,
            self.hold_max,
            self.retry_s,
        )
        event = self.builder.event(
            "storage_full" if err.full else "storage_error",
            reason=str(err),
            detail={"path": str(self.outbox.path), "free_bytes": err.free_bytes, "hold_max": self.hold_max},
        )
        # The outbox cannot take it: straight to the broker (paho holds it while disconnected), and
        # held so that it is also stored, like everything else, when the disk recovers.
        message = self.builder.event_message(event)
        item = HeldMessage(message=message, what="event")
        if not self._send_unstored(item):
            self._direct(message)
            self._hold(item)

    def _hold(self, item: HeldMessage) -> None:
        with self._held_lock:
            self._held.append(item)
            while len(self._held) > self.hold_max:
                gone = self._held.popleft()
                self._lost_total += 1
                self._lost.append(gone.what)
        self._wake()

    def _send_unstored(self, item: HeldMessage) -> bool:
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

    def _direct(self, m: OutboxMessage) -> None:
        try:
            props = self.client.properties(content_type=m.content_type, user=m.user_properties)
            self.client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain, properties=props)
        except (ValueError, RuntimeError) as err:
            log.warning("could not send %s directly: %s", m.msg_id, err)

    # ------------------------------------------------------------------ the drain thread

    def ack(self, mid: int, code: int, reason: str) -> bool:
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
            self.sent_unstored += 1
        return True

    def flush(self) -> None:
        """Store what is held, oldest first (at most every `retry_s` while the disk refuses); on
        success after a failure, report and resume. While it still refuses, send what is held directly."""
        with self._held_lock:
            pending = bool(self._held) or bool(self._lost)
        if not pending and self.storage == "ok":
            return
        now = time.monotonic()
        if now < self._next_try:
            return
        self._next_try = now + self.retry_s
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
                self.errors += 1
                if self.storage == "ok":
                    self.failed(err)
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
            self.store(
                self.builder.event_message(
                    self.builder.event(
                        "results_dropped",
                        reason=f"storage: {len(lost)} message(s) held in memory were given up",
                        detail={"cause": "storage", "count": len(lost), "results": results},
                    )
                )
            )
        if self.storage != "ok":
            took = time.monotonic() - self._since
            log.warning(
                "storage ok again: outbox %s takes writes after %.0f s; %d held message(s) stored, %d lost",
                self.outbox.path,
                took,
                stored,
                len(lost),
            )
            was = self.storage
            self.storage = "ok"
            self.store(
                self.builder.event_message(
                    self.builder.event(
                        "recovered",
                        reason=f"storage: the outbox takes writes again after {took:.0f} s",
                        detail={"what": "storage", "was": was, "stored": stored, "lost": len(lost)},
                    )
                )
            )

    def _send_held_unstored(self) -> None:
        """The disk still refuses: send what is held directly, oldest first, while the broker is there."""
        while self.client.is_connected:
            with self._held_lock:
                if not self._held:
                    return
                item = self._held.popleft()
            if not self._send_unstored(item):
                # A numbered message paho did not take: first in line again (its seq is older).
                with self._held_lock:
                    self._held.appendleft(item)
                return
