"""Turns the callbacks of supervisors and grabbers into `event` messages in the outbox."""

from __future__ import annotations

from typing import Any

from edge.mqtt.publisher import Publisher


class EventRelay:
    """Handed to each supervisor and grabber (also the ones a reload creates) as its `on_event`."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    def worker(self, kind: str, detail: dict[str, Any]) -> None:
        if kind == "job_failed":  # the executor publishes it, with the trigger and the reply
            return
        reason = str(detail.pop("reason", "") or "")
        job = detail.pop("job_id", None)
        try:
            event = self._publisher.event(kind, reason, job_id=job, detail=detail)
        except ValueError:  # a kind outside the contract: report it as a restart with its name
            event = self._publisher.event("worker_restart", f"{kind}: {reason}", job_id=job, detail=detail)
        self._publisher.publish_event(event)

    def camera(self, kind: str, detail: dict[str, Any]) -> None:
        reason = str(detail.get("reason", ""))
        camera = detail.get("camera")
        event = self._publisher.event(kind, reason, camera=str(camera) if camera else None, detail=detail)
        self._publisher.publish_event(event)
