"""SIGHUP and cmd/reload: re-read the settings and restart only what changed.

A new configuration that does not validate is rejected with a `config_rejected` event and the daemon
keeps running on the old one. Tasks, the gate, health and the device's friendly name change live; a
camera added, removed or changed starts, stops or restarts that camera's grabber only (the others
keep reading); a model change restarts the vision worker, a watchdog change every worker. After each
reload `on_reloaded` runs (the daemon re-sends its state and Home Assistant discovery, which adds
the new entities and removes those that went away). Broker, serial, identity, text model, metrics,
link, power and alerts changes need a restart of the service (they change what consumers see, the
set of workers, a listening socket, or the day's byte count), which the `config_reloaded` event says.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from edge.capture import Grabber
from edge.config.settings import CameraSettings, ModelSettings, Settings, WatchdogSettings
from edge.config.sources import LoadedSettings
from edge.core.errors import ConfigError, EdgeError
from edge.core.messages import EventPayload
from edge.daemon.reloadable import Lane, ReloadableRef, queue_size
from edge.daemon.systemd import Notifier
from edge.inference.supervisor import Supervisor
from edge.pipeline.jobs import Scheduler

log = logging.getLogger(__name__)

LIVE = ("tasks", "gate", "health", "device_name")
RESTART_SERVICE = ("device_id", "mqtt", "serial", "text_model", "metrics", "link", "power", "alerts")

NewGrabber = Callable[[CameraSettings], Grabber]
# Builds and starts the supervisor that replaces `previous` (stopped by then): it inherits what
# outlives one supervisor, so a reload allocates nothing that stays behind (the frame slot).
NewSupervisor = Callable[[ModelSettings, WatchdogSettings, Supervisor], Supervisor]


class EventSink(Protocol):
    def event(self, kind: str, reason: str = "", **fields: Any) -> EventPayload: ...

    def publish_event(self, event: EventPayload) -> None: ...


class Reloader:
    """Swaps parts of the `Reloadable`. Runs on the main loop's thread, one reload at a time.

    `new_grabber` builds (without starting) a grabber; `new_supervisor` builds and starts a
    supervisor: the composition root decides how, the reloader only decides when.
    """

    def __init__(
        self,
        *,
        pipeline: ReloadableRef,
        load: Callable[[], LoadedSettings],
        scheduler: Scheduler,
        new_grabber: NewGrabber,
        new_supervisor: NewSupervisor,
        events: EventSink,
        notifier: Notifier,
        on_reloaded: Callable[[], None],
    ) -> None:
        self._pipeline = pipeline
        self._load = load
        self._scheduler = scheduler
        self._new_grabber = new_grabber
        self._new_supervisor = new_supervisor
        self._events = events
        self._notifier = notifier
        self._on_reloaded = on_reloaded

    def reload(self) -> bool:
        """True when the new settings were taken (applied now or pending a restart)."""
        self._notifier.reloading("reloading settings")
        try:
            new = self._load().settings
        except EdgeError as err:
            problems = err.problems if isinstance(err, ConfigError) else [str(err)]
            log.error("reload rejected, keeping the running settings: %s", "; ".join(problems))
            self._events.publish_event(
                self._events.event("config_rejected", problems[0], detail={"problems": problems})
            )
            self._notifier.ready("reload rejected; running on the previous settings")
            return False
        old = self._pipeline.current.settings
        changed = [k for k in type(old).model_fields if getattr(old, k) != getattr(new, k)]
        applied = [k for k in changed if k in LIVE]
        self._pipeline.swap(lambda p: replace(p, settings=_take(p.settings, new, applied)))
        if "tasks" in applied:
            self._scheduler.replace_tasks(new.tasks)
        if "gate" in applied:
            self._scheduler.gate_settings = new.gate
        cameras: dict[str, list[str]] = {}
        if "cameras" in changed:
            cameras = self._swap_cameras(new.cameras)
            applied.append("cameras")
        p = self._pipeline.current
        for lane in p.lanes:
            lane.queue.resize(queue_size(p.settings))
        if "model" in changed or "watchdog" in changed:
            self._restart_workers(new, vision_only="watchdog" not in changed)
            applied += [k for k in ("model", "watchdog") if k in changed]
        pending = [k for k in changed if k in RESTART_SERVICE]
        if pending:
            log.warning("reload: %s changed; restart the service to apply", ", ".join(pending))
        log.info("settings reloaded: applied %s", ", ".join(applied) or "nothing (no change)")
        self._events.publish_event(
            self._events.event(
                "config_reloaded",
                "",
                detail={
                    "applied": applied,
                    "needs_restart": pending,
                    **({"cameras": cameras} if cameras else {}),
                },
            )
        )
        self._on_reloaded()
        self._notifier.ready("settings reloaded")
        return True

    def _swap_cameras(self, cameras: list[CameraSettings]) -> dict[str, list[str]]:
        """Start the grabbers of added cameras, stop those of removed ones, restart those whose
        settings changed; the others keep reading. A camera whose new source cannot work keeps its
        running grabber and settings (or, if new, is left out), and the log says why."""
        current = self._pipeline.current
        old = {c.name: c for c in current.settings.cameras}
        kept: dict[str, Grabber] = {}
        settings: list[CameraSettings] = []
        started: dict[str, Grabber] = {}
        for camera in cameras:
            running = current.grabbers.get(camera.name)
            if running is not None and old.get(camera.name) == camera:
                kept[camera.name] = running
                settings.append(camera)
                continue
            try:
                started[camera.name] = self._new_grabber(camera)
                settings.append(camera)
            except EdgeError as err:
                log.error("reload: camera %s not changed: %s", camera.name, err)
                if running is not None:
                    kept[camera.name] = running
                    settings.append(old[camera.name])
        stopped = [name for name in current.grabbers if name not in kept]
        for name in stopped:  # removed or replaced: release the device before the new one opens it
            current.grabbers[name].stop(5.0)
        for grabber in started.values():
            grabber.start()
        order = [c.name for c in settings]
        grabbers = {name: kept.get(name) or started[name] for name in order}
        self._pipeline.swap(
            lambda p: replace(
                p, grabbers=grabbers, settings=p.settings.model_copy(update={"cameras": settings})
            )
        )
        self._scheduler.set_cameras(order)
        for name in started:
            self._scheduler.reset_camera(name)
        change = {
            "added": [n for n in started if n not in current.grabbers],
            "removed": [n for n in stopped if n not in grabbers],
            "restarted": [n for n in started if n in current.grabbers],
        }
        log.info(
            "reload: cameras added %s, removed %s, restarted %s; unchanged %s",
            *(", ".join(change[k]) or "-" for k in ("added", "removed", "restarted")),
            ", ".join(n for n in kept) or "-",
        )
        return change

    def _restart_workers(self, new: Settings, *, vision_only: bool) -> None:
        """New workers for the lanes whose model or watchdog changed; each executor follows its lane."""
        update = {"model": new.model, "watchdog": new.watchdog}
        current = self._pipeline.current
        settings = current.settings.model_copy(update=update)
        lanes = tuple(
            lane if (vision_only and lane.name != "vision") else self._restart(lane, settings)
            for lane in current.lanes
        )
        self._pipeline.swap(lambda p: replace(p, lanes=lanes, settings=p.settings.model_copy(update=update)))

    def _restart(self, lane: Lane, settings: Settings) -> Lane:
        model, watchdog = lane.model(settings), settings.watchdog
        lane.supervisor.stop(timeout=watchdog.generation_s + 10.0)
        sup = self._new_supervisor(model, watchdog, lane.supervisor)
        ex = lane.executor
        ex.supervisor, ex.model, ex.watchdog = sup, model, watchdog
        log.info("reload: %s worker restarted", lane.name)
        return replace(lane, supervisor=sup)


def _take(old: Settings, new: Settings, keys: list[str]) -> Settings:
    """`old` with the sections named in `keys` taken from `new`."""
    return old.model_copy(update={k: getattr(new, k) for k in keys}) if keys else old
