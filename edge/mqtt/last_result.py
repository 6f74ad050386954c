"""The retained `last` topic of each (camera, task): the newest result again, for readers that start later.

Results go out through the outbox as a non-retained, at-least-once stream: a reader that was not
subscribed when one went by never sees it. Home Assistant's MQTT sensors do not restore their state
across an HA restart (not without `expire_after`, which would blank a paused device), so they read
`{camera}/{task}/last` instead: the same payload, retained, so the broker hands the newest one to
every new subscriber.

Only the newest value matters, so this is not queued through the outbox: it is published directly
when the result is committed (while connected), and the newest one of each (camera, task) is
published again on every connect (covering the time offline and a broker that lost its retained
messages). Nothing here is counted as delivered: `result` is the contract's delivery.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from edge.core.messages import ResultPayload
from edge.mqtt.client import MqttClient
from edge.mqtt.topics import Topics

log = logging.getLogger(__name__)


class LastResults:
    """Keeps the newest result payload per `last` topic and publishes it retained."""

    def __init__(self, client: MqttClient, topics: Topics, qos: int = 1) -> None:
        self.client = client
        self.topics = topics
        self.qos = qos
        self._lock = threading.Lock()
        self._newest: dict[str, bytes] = {}

    def attach(self) -> None:
        self.client.add_connect_listener(self._publish_all)

    def publish(self, result: ResultPayload) -> None:
        """Remember `result` as the newest of its (camera, task); publish it now if connected."""
        topic = self.topics.last(result.camera, result.task)
        body = result.model_dump_json().encode()
        with self._lock:
            self._newest[topic] = body
        if self.client.is_connected:
            self._send(topic, body)

    def clear(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Delete the retained `last` of (camera, task) pairs that no longer exist (a reload removed
        the camera or the task): nothing should read a value that will never be updated again."""
        for camera, task in pairs:
            topic = self.topics.last(camera, task)
            with self._lock:
                self._newest.pop(topic, None)
            self.client.publish(topic, b"", qos=self.qos, retain=True)

    def _publish_all(self) -> None:
        with self._lock:
            newest = list(self._newest.items())
        for topic, body in newest:
            self._send(topic, body)

    def _send(self, topic: str, body: bytes) -> None:
        try:
            self.client.publish(
                topic, body, qos=self.qos, retain=True, properties=self.client.json_properties()
            )
        except ValueError as err:  # a payload over the broker's limit: the result itself still went out
            log.warning("last result on %s not published: %s", topic, err)
