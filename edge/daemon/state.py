"""The daemon's one-word state (starting, running, paused, degraded, stopping) and its retained
`state` message, republished only when the state or the serving provider changes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge import __version__
from edge.config.model_settings import path_of
from edge.core.kinds import DaemonState
from edge.core.messages import LinkPayload, StatePayload, utc_iso
from edge.daemon.reloadable import Reloadable

log = logging.getLogger(__name__)


def model_name(p: Reloadable) -> str | None:
    """The loaded model's name, or the configured folder's name before the first load."""
    info = p.vision.supervisor.info
    if info is not None:
        return info.name
    path = path_of(p.settings.model)
    return path.name if path else None


def provider(p: Reloadable) -> str | None:
    info = p.vision.supervisor.info
    return info.provider if info else None


class StateTracker:
    """Derives the state from the vision supervisor and the pause flag; publishes it when it changes.

    Called from the main loop (every tick), from paho's thread (pause/resume) and after a reload,
    hence the lock: two callers must not publish a stale state after a newer one.
    """

    def __init__(
        self,
        pipeline: Callable[[], Reloadable],
        publish: Callable[[StatePayload], None],
        link: Callable[[], LinkPayload | None] = lambda: None,
    ) -> None:
        """`link`: the day's link figures, carried by each state message as of its publishing."""
        self._pipeline = pipeline
        self._link = link
        self._publish = publish
        self._state: DaemonState = "starting"
        self._paused = False
        self._last_provider: str | None = None
        self._lock = threading.RLock()

    @property
    def state(self) -> DaemonState:
        return self._state

    def payload(self) -> StatePayload:
        p = self._pipeline()
        return StatePayload(
            state=self._state,
            version=__version__,
            device=p.settings.device_id,
            model=model_name(p),
            backend=(p.vision.supervisor.info or p.settings.model).backend,  # the chain may have switched
            provider=provider(p),
            tasks=[t.name for t in p.settings.tasks],
            since=utc_iso(time.time()),
            cameras=p.settings.camera_names,
            link=self._link(),
            zones={c.name: [z.name for z in c.zones] for c in p.settings.cameras if c.zones} or None,
        )

    def publish(self) -> None:
        """Publish the current payload whether or not it changed (after a reload: tasks, model)."""
        with self._lock:
            self._publish(self.payload())

    def set_paused(self, paused: bool) -> None:
        with self._lock:
            self._paused = paused
            self.update()

    def update(self) -> None:
        with self._lock:
            if self._state == "stopping":
                return
            p = self._pipeline()
            sup = p.vision.supervisor.stats().state
            new: DaemonState = "paused" if self._paused else ("degraded" if sup == "degraded" else "running")
            if sup == "loading":
                new = "starting"
            current_provider = provider(p)
            if new == self._state and current_provider == self._last_provider:
                return
            if new != self._state:
                log.info("state %s -> %s", self._state, new)
            self._state = new
            self._last_provider = current_provider
            self._publish(self.payload())

    def stopping(self) -> None:
        with self._lock:
            self._state = "stopping"
            self._publish(self.payload())
