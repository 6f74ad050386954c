"""What the daemon sends, as messages: the id, topic, properties and expiry of each result, image,
event, health snapshot and loss report, built and not sent.

Kept apart from the publisher's threads so the wire form of every message is read (and tested) in
one place, without a broker, a disk or a thread: each method returns an `OutboxMessage` (or an
`EventPayload`) and has no other effect, save the event counter.

Ids: a result is `<device>-<boot>-<seq>` (its `seq` allocated in the outbox's commit), an event
`<device>-<boot>-e<n>`, an image `<result id>-image[-<part>]`; consumers de-duplicate on them.

Threading contract: everything is fixed at construction except the event counter, an
`itertools.count` (its `next` is atomic), so a builder is shared by every thread without a lock:
the result path, the supervisor's callbacks, paho's thread and the drain thread.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from edge.core.messages import EventPayload, HealthPayload, ResultPayload, utc_iso
from edge.mqtt.outbox_records import Damage, DropReport, OutboxMessage
from edge.mqtt.topics import Topics

JSON = "application/json"


class MessageBuilder:
    """The messages of one device and one boot."""

    def __init__(
        self,
        topics: Topics,
        boot: int,
        *,
        qos: int = 1,
        message_expiry_s: int = 0,
        user_properties: tuple[tuple[str, str], ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`user_properties`: added to every result, image and event (e.g. the site); `clock`: the
        wall clock an event's `at` is read from."""
        self.topics = topics
        self.boot = boot
        self.qos = qos
        self.message_expiry_s = message_expiry_s
        self.user_properties = user_properties
        self._clock = clock
        self._event_seq = itertools.count(1)

    def ttl_s(self) -> float | None:
        """How long a message may wait in the outbox (monotonic seconds), or None: forever."""
        return float(self.message_expiry_s) if self.message_expiry_s > 0 else None

    # ------------------------------------------------------------------ results and images

    def result_id(self, seq: int) -> str:
        return f"{self.topics.device_id}-{self.boot}-{seq}"

    def result(
        self, payload: ResultPayload, seq: int, user_properties: tuple[tuple[str, str], ...] = ()
    ) -> OutboxMessage:
        """The message of result `seq`; ValueError if the payload does not carry the seq and id it
        was given (the boot's sequence would have a gap or a duplicate)."""
        if payload.seq != seq or payload.id != self.result_id(seq):
            raise ValueError("a result must carry the seq and id it was given")
        return OutboxMessage(
            topic=self.topics.result(payload.camera, payload.task),
            payload=payload.model_dump_json().encode(),
            msg_id=payload.id,
            kind="result",
            qos=self.qos,
            content_type=JSON,
            user_properties=(
                ("device", payload.device),
                ("model", payload.model.name),
                ("backend", payload.model.backend),
                ("id", payload.id),
                *self.user_properties,
                *user_properties,
            ),
            ttl_s=self.ttl_s(),
        )

    def image(
        self, camera: str, task: str, result_id: str, jpeg: bytes, part: int | None = None
    ) -> OutboxMessage:
        """The frame a result describes, on `{camera}/{task}/image`. `part`: which of an event's key
        frames (0 first, 1 last), user property `frame`; user property `id`: the result's id."""
        extra = (("frame", str(part)),) if part is not None else ()
        return OutboxMessage(
            topic=self.topics.image(camera, task),
            payload=jpeg,
            msg_id=f"{result_id}-image" if part is None else f"{result_id}-image-{part}",
            kind="image",
            qos=self.qos,
            content_type="image/jpeg",
            user_properties=(("id", result_id), *extra, *self.user_properties),
            ttl_s=self.ttl_s(),
        )

    # ------------------------------------------------------------------ events

    def next_event_id(self) -> str:
        return f"{self.topics.device_id}-{self.boot}-e{next(self._event_seq)}"

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

    def event_message(self, event: EventPayload) -> OutboxMessage:
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

    def loss_report(self, report: DropReport, damage: Damage | None) -> OutboxMessage:
        """The event that reports a loss of the outbox (`report`, from its loss ledger): cumulative,
        everything lost for its cause since the last report the broker acknowledged. `damage`: what
        a damaged file held, for an `outbox_damaged` report."""
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
            words = {"expired": "expired unpublished", "rejected": "unpublishable, removed"}[report.reason]
            event = self.event(
                "results_dropped",
                reason=f"{report.count} message(s) {words}",
                detail={**detail, "cause": report.reason},
            )
        return self.event_message(event)

    # ------------------------------------------------------------------ health

    def health(self, health: HealthPayload) -> OutboxMessage:
        """A snapshot, not history: QoS 0, never stored (the publisher sends it directly or not at all)."""
        return OutboxMessage(
            topic=self.topics.health,
            payload=health.model_dump_json().encode(),
            msg_id=f"{self.topics.device_id}-health",
            kind="other",
            qos=0,
            content_type=JSON,
            user_properties=(("device", health.device),),
        )
