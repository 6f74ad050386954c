"""From the broker into the view's store: results, their pictures, events, and each device's
status, state and health.

A picture is joined to its result by the `id` user property the daemon puts on every image (MQTT 5);
an event's key frames carry `frame` (0 first, 1 last). On MQTT 3.1.1 there are no properties, so a
picture belongs to the last result seen on the same `{camera}/{task}` topic: the daemon publishes
a result's picture right after the result, through the same ordered outbox.

Runs in paho's thread: every call is a short insert. A message that cannot be read is counted, with
the last reason kept for the page, never raised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from edge.config.settings import MqttSettings
from edge.consumer.models import EventPayload, HealthPayload, StatePayload, decode
from edge.consumer.stream import topic_filters
from edge.mqtt.subscriber import Subscriber
from edge.view.store import ViewStore

log = logging.getLogger(__name__)


@dataclass
class IngestCounts:
    results: int = 0
    duplicates: int = 0
    images: int = 0
    images_unmatched: int = 0  # a picture whose result is unknown (3.1.1, before any result)
    events: int = 0
    unreadable: int = 0
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Ingest:
    """Subscriber → store. `group` joins a shared subscription, as `edge watch --group` does."""

    def __init__(
        self,
        settings: MqttSettings,
        store: ViewStore,
        *,
        client_id: str,
        prefix: str | None = None,
        devices: Sequence[str] = (),
        group: str | None = None,
        session_expiry_s: int = 0,
    ) -> None:
        self.store = store
        self.prefix = prefix or settings.prefix
        self.counts = IngestCounts()
        self._last_result: dict[str, str] = {}  # task base topic -> last result id (MQTT 3.1.1)
        self.subscriber = Subscriber(
            settings,
            topic_filters(self.prefix, devices),
            lambda *_: None,
            client_id=client_id,
            group=group,
            qos=1,
            session_expiry_s=session_expiry_s,
            on_message_props=self.message,
        )

    def start(self, timeout_s: float = 10.0) -> Ingest:
        self.subscriber.start(timeout_s)
        return self

    def stop(self) -> None:
        self.subscriber.stop()

    def message(self, topic: str, payload: bytes, retain: bool, props: dict[str, str]) -> None:
        now = time.time()
        d = decode(topic, payload, self.prefix, received_at=now)
        try:
            if d.error:
                self._unreadable(f"{topic}: {d.error}")
            elif d.kind == "image":
                self._image(topic, payload, props, now)
            elif d.result is not None:
                self._last_result[topic.rsplit("/", 1)[0]] = d.result.id
                new = self.store.add_result(d.result, now)
                with self.counts.lock:
                    self.counts.results += new
                    self.counts.duplicates += not new
            elif isinstance(d.payload, EventPayload):
                self.store.add_event(d.payload, now)
                with self.counts.lock:
                    self.counts.events += 1
            elif d.device and d.kind == "status" and isinstance(d.payload, str):
                self.store.set_device(d.device, status=d.payload, at=now)
            elif d.device and isinstance(d.payload, StatePayload):
                self.store.set_device(d.device, state=d.payload, at=now)
            elif d.device and isinstance(d.payload, HealthPayload):
                self.store.set_device(d.device, health=d.payload, at=now)
        except Exception as err:  # a store that refused one write must not stop the subscription
            log.exception("could not store %s", topic)
            self._unreadable(f"{topic}: {err}")

    def _image(self, topic: str, payload: bytes, props: dict[str, str], now: float) -> None:
        result_id = props.get("id") or self._last_result.get(topic.rsplit("/", 1)[0])
        if result_id is None:
            with self.counts.lock:
                self.counts.images_unmatched += 1
            return
        frame = props.get("frame", "0")
        part = int(frame) if frame.isdigit() else 0
        self.store.add_image(result_id, payload, part, now)
        with self.counts.lock:
            self.counts.images += 1

    def _unreadable(self, why: str) -> None:
        with self.counts.lock:
            self.counts.unreadable += 1
            self.counts.last_error = why
        log.warning("unreadable message: %s", why)
