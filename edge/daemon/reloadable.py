"""The parts of the running daemon that a reload may replace, held as one value.

Readers (the trigger loop, health, state, the systemd watchdog) take `ReloadableRef.current` once and
work with a consistent set: the settings that match the grabber and supervisors they run with. Writers
(the reloader, `cmd/set`) swap parts through `ReloadableRef.swap`, so two of them never lose each
other's change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from edge.capture import Grabber
from edge.config.settings import ModelSettings, Settings
from edge.inference.supervisor import Supervisor
from edge.pipeline.executor import Executor
from edge.pipeline.jobs import JobQueue

LaneName = Literal["vision", "text"]

MIN_QUEUE = 8
COMMAND_ROOM = 4


def queue_size(settings: Settings) -> int:
    """Room for one scheduled job per (camera, task) pair (newest wins per pair) and some commands,
    so that a full queue is rare and never the normal way a camera loses its turn."""
    pairs = sum(len(settings.task_cameras(t)) for t in settings.tasks)
    return max(MIN_QUEUE, pairs + COMMAND_ROOM)


@dataclass(frozen=True)
class Lane:
    """One model's path: the queue its jobs wait in, the supervisor of its worker, the executor
    between them. The queue and executor live as long as the daemon; a reload replaces the
    supervisor (and points the executor at the new one)."""

    name: LaneName
    queue: JobQueue
    supervisor: Supervisor
    executor: Executor

    def model(self, settings: Settings) -> ModelSettings:
        """The model section this lane runs: `[model]` for vision, `[text_model]` for text."""
        if self.name == "text" and settings.text_model is not None:
            return settings.text_model
        return settings.model


@dataclass(frozen=True)
class Reloadable:
    """Settings, cameras and model lanes as one value; the vision lane comes first and always exists.

    `grabbers` has one grabber per configured camera, in the order of `settings.cameras`.
    """

    settings: Settings
    grabbers: Mapping[str, Grabber]
    lanes: tuple[Lane, ...]

    def grabber(self, camera: str) -> Grabber | None:
        return self.grabbers.get(camera)

    @property
    def vision(self) -> Lane:
        return self.lanes[0]

    @property
    def text(self) -> Lane | None:
        return next((lane for lane in self.lanes if lane.name == "text"), None)

    @property
    def supervisors(self) -> tuple[Supervisor, ...]:
        return tuple(lane.supervisor for lane in self.lanes)

    def progressing(self) -> bool:
        """For the systemd watchdog: frames arrive and every generator is idle or heartbeating.

        A camera that is reported lost still counts as progress: its grabber is reconnecting with
        backoff and says so in events and health, while a service restart cannot bring a camera
        back and would only exhaust the unit's start limit during a long outage; the other cameras
        go on meanwhile. A grabber still starting (no first frame yet) is not progress.
        """
        for grabber in self.grabbers.values():
            cam = grabber.stats()
            if not (cam.state in ("ok", "lost") or cam.ended):
                return False
        return all(sup.progressing() for sup in self.supervisors)


class ReloadableRef:
    """The current `Reloadable`. Reads are one attribute load; swaps are serialized."""

    def __init__(self, pipeline: Reloadable) -> None:
        self._value = pipeline
        self._lock = threading.Lock()

    @property
    def current(self) -> Reloadable:
        return self._value

    def swap(self, change: Callable[[Reloadable], Reloadable]) -> Reloadable:
        """Replace the value with `change(current)`; an exception from `change` leaves it as it was."""
        with self._lock:
            self._value = change(self._value)
            return self._value
