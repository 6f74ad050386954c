"""Publishes alert changes: the retained state on `{prefix}/{device}/alert/{name}` (through the
outbox, so a change made while the broker is away is not lost), an `alert_on` / `alert_off` event,
and, where the alert asks for it, a line to the serial sink."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence

from edge.config.settings import AlertSettings, TaskSettings
from edge.core.messages import ResultPayload, utc_iso
from edge.daemon.webhook import WebhookSender
from edge.mqtt.outbox_records import OutboxMessage
from edge.mqtt.publisher import Publisher
from edge.pipeline.alerts import AlertChange, Alerts

log = logging.getLogger(__name__)


def alert_topic(root: str, name: str) -> str:
    return f"{root}/alert/{name}"


class AlertRelay:
    def __init__(
        self,
        alerts: Sequence[AlertSettings],
        tasks: Callable[[str], TaskSettings | None],
        publisher: Publisher,
        sink: Callable[[int, str, str], None] | None = None,
        webhook: WebhookSender | None = None,
    ) -> None:
        self.webhook = webhook
        self._settings = {a.name: a for a in alerts}
        self._engine = Alerts(alerts)
        self._tasks = tasks
        self._publisher = publisher
        self._sink = sink

    @property
    def errors(self) -> dict[str, int]:
        return dict(self._engine.errors)

    def on_result(self, result: ResultPayload) -> None:
        """In the executor's thread, after the result is in the outbox: never blocks on the network."""
        for change in self._engine.on_result(result, time.time()):
            self._publish(change, result)

    def _publish(self, change: AlertChange, result: ResultPayload) -> None:
        p = self._publisher
        word = "on" if change.on else "off"
        state = {
            "v": 1,
            "alert": change.name,
            "state": word,
            "at": utc_iso(change.at),
            "result_id": change.result_id,
            "camera": change.camera,
            "task": change.task,
        }
        topic = alert_topic(p.topics.root, change.name)
        p.publish_message(
            OutboxMessage(
                topic=topic,
                payload=json.dumps(state, separators=(",", ":")).encode(),
                msg_id=f"{change.result_id}-alert-{change.name}",
                kind="event",
                qos=p.qos,
                retain=True,
                content_type="application/json",
                user_properties=(("device", p.topics.device_id),),
            )
        )
        task = self._tasks(change.task)
        detail: dict[str, object] = {"alert": change.name, "result_id": change.result_id, "topic": topic}
        if task is not None and task.publish_image:
            detail["image_topic"] = p.topics.image(change.camera, change.task)  # the key frame, id result_id
        if isinstance(change.value, (bool, int, float, str)):
            detail["value"] = change.value
        p.publish_event(
            p.event(
                "alert_on" if change.on else "alert_off",
                f"alert {change.name} {word} (answer {change.result_id})",
                camera=change.camera,
                task=change.task,
                detail=detail,
            )
        )
        log.info("alert %s %s on result %s", change.name, word, change.result_id)
        url = self._settings[change.name].webhook
        if url is not None and self.webhook is not None:
            self.webhook.post(url, state, f"{change.result_id}-alert-{change.name}")
        if self._settings[change.name].serial and self._sink is not None:
            self._sink(result.seq, f"alert-{change.name}", word.upper())
