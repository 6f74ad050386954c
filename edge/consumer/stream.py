"""A consumer in one object: subscribe (through `edge.mqtt.subscriber`), decode each message into the
daemon's payload models, feed the completeness tracker, and hand both to your callback.

    from edge.consumer import Consumer, Tracker

    tracker = Tracker()
    def on_delivery(d, obs):            # paho's thread: keep it short
        if d.result and obs.status in ("new", "late"):
            store(d.result)             # obs.status == "duplicate": a redelivery, already stored
    Consumer(settings.mqtt, on_delivery, tracker=tracker, client_id="pipeline-1").start()
    ...
    assert tracker.report().complete
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from edge.config.settings import MqttSettings
from edge.consumer.models import Delivery, EventPayload, decode
from edge.consumer.tracker import Observation, Tracker
from edge.core.names import check_name
from edge.mqtt.subscriber import Subscriber

DeliveryCallback = Callable[[Delivery, Observation | None], None]

RESULTS = "results"
EVERYTHING = "everything"


def topic_filters(prefix: str, devices: Sequence[str] = (), *, what: str = EVERYTHING) -> list[str]:
    """Filters for some devices (all when empty): everything under `{prefix}/{device}/#`, or only
    results (standard and overridden topics: `+/+/result` and `#` cannot be told apart by a filter,
    so `results` also matches a task override of two levels) and events."""
    check_name(prefix, reserved=False)
    names = [check_name(d) for d in devices] or ["+"]
    if what == RESULTS:
        return [f for d in names for f in (f"{prefix}/{d}/+/+/result", f"{prefix}/{d}/event")]
    return [f"{prefix}/{d}/#" for d in names]


class Consumer:
    """Subscriber + decode + Tracker. `group` joins a shared subscription (see edge.mqtt.subscriber)."""

    def __init__(
        self,
        settings: MqttSettings,
        on_delivery: DeliveryCallback | None = None,
        *,
        client_id: str,
        tracker: Tracker | None = None,
        prefix: str | None = None,
        devices: Sequence[str] = (),
        what: str = EVERYTHING,
        group: str | None = None,
        session_expiry_s: int = 0,
        on_connection: Callable[[bool], None] | None = None,
    ) -> None:
        self.prefix = prefix or settings.prefix
        self.tracker = tracker if tracker is not None else Tracker()
        self._on_delivery = on_delivery
        self.subscriber = Subscriber(
            settings,
            topic_filters(self.prefix, devices, what=what),
            self._message,
            client_id=client_id,
            group=group,
            qos=1,
            session_expiry_s=session_expiry_s,
            on_connection=on_connection,
        )

    def start(self, timeout_s: float = 10.0) -> Consumer:
        self.subscriber.start(timeout_s)
        return self

    def stop(self) -> None:
        self.subscriber.stop()

    def _message(self, topic: str, payload: bytes, retain: bool) -> None:
        d = decode(topic, payload, self.prefix, received_at=time.time())
        obs: Observation | None = None
        if d.result is not None:
            obs = self.tracker.result(d.result)
        elif isinstance(d.payload, EventPayload):
            self.tracker.event(d.payload)
        elif d.kind == "status" and d.device and isinstance(d.payload, str):
            self.tracker.status(d.device, d.payload)
        if self._on_delivery is not None:
            self._on_delivery(d, obs)
