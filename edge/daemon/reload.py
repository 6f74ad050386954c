"""SIGHUP and cmd/reload: re-read the settings and restart only what changed.

A new configuration that does not validate is rejected with a `config_rejected` event and the daemon
keeps running on the old one. Tasks and the gate change live; a camera change restarts the grabber;
a model or watchdog change restarts the worker. Broker, serial and identity changes need a restart of
the service (they change what consumers see), which the `config_reloaded` event says.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from edge.capture import Grabber
from edge.core.errors import ConfigError, EdgeError
from edge.inference.supervisor import Supervisor

if TYPE_CHECKING:
    from edge.daemon.app import Daemon

log = logging.getLogger(__name__)

LIVE = ("tasks", "gate", "health")
RESTART_SERVICE = ("device_id", "mqtt", "serial", "text_model")


def reload_settings(d: Daemon) -> bool:
    d.notifier.reloading("reloading settings")
    try:
        new = d.reload_loader().settings
    except EdgeError as err:
        problems = err.problems if isinstance(err, ConfigError) else [str(err)]
        log.error("reload rejected, keeping the running settings: %s", "; ".join(problems))
        d.publisher.publish_event(
            d.publisher.event("config_rejected", problems[0], detail={"problems": problems})
        )
        d.notifier.ready("reload rejected; running on the previous settings")
        return False
    old = d.settings
    changed = [k for k in type(old).model_fields if getattr(old, k) != getattr(new, k)]
    applied: list[str] = []
    for key in changed:
        if key in LIVE:
            setattr(old, key, getattr(new, key))
            applied.append(key)
    if "tasks" in applied:
        d.scheduler.replace_tasks(old.tasks)
    if "gate" in applied:
        d.scheduler.gate.settings = old.gate
    if "camera" in changed:
        try:
            grabber = Grabber(new.camera, d._on_camera_event)
        except EdgeError as err:
            log.error("reload: camera not changed: %s", err)
        else:
            if d.grabber is not None:
                d.grabber.stop(5.0)
            old.camera = new.camera
            grabber.start()
            d.grabber = grabber
            for ex in (d.vision_exec, d.text_exec):
                if ex is not None:
                    ex.deps.frames = grabber
            applied.append("camera")
    if "model" in changed or "watchdog" in changed:
        old.model, old.watchdog = new.model, new.watchdog
        d.vision_sup.stop(timeout=old.watchdog.generation_s + 10.0)
        sup = Supervisor(old.model, old.watchdog, d._on_worker_event)
        sup.start()
        d.vision_sup = sup
        d.vision_exec.supervisor, d.vision_exec.model, d.vision_exec.watchdog = sup, old.model, old.watchdog
        applied += [k for k in ("model", "watchdog") if k in changed]
    pending = [k for k in changed if k in RESTART_SERVICE]
    if pending:
        log.warning("reload: %s changed; restart the service to apply", ", ".join(pending))
    log.info("settings reloaded: applied %s", ", ".join(applied) or "nothing (no change)")
    d.publisher.publish_event(
        d.publisher.event("config_reloaded", "", detail={"applied": applied, "needs_restart": pending})
    )
    d.client.set_state(d._state_payload())
    d.notifier.ready("settings reloaded")
    return True
