"""The daemon's answers to `cmd/{verb}` (the `CommandHandler` of edge.mqtt.commands).

Each returns at once (paho's thread): work that needs the model is queued as a job and the reply is
sent when the job's outcome is recorded; settings changes are validated whole, then applied whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from edge.config.settings import GateSettings, Settings, TaskSettings
from edge.daemon.reloadable import Reloadable, ReloadableRef
from edge.daemon.state import StateTracker
from edge.daemon.triggers import Enqueue
from edge.mqtt.commands import AskCommand, CaptureCommand, Reply, SetCommand
from edge.pipeline.jobs import FRAME_KINDS, JobSpec, Scheduler

log = logging.getLogger(__name__)

ASK_TASK = TaskSettings(name="ask", kind="ask", trigger="command", prompt="")


class DaemonCommands:
    """Implements `CommandHandler` over what the commands touch: the settings (through the pipeline
    reference), the scheduler, the job router, the state, and a way to ask for a reload."""

    def __init__(
        self,
        pipeline: ReloadableRef,
        scheduler: Scheduler,
        enqueue: Enqueue,
        state: StateTracker,
        request_reload: Callable[[], None],
    ) -> None:
        self._pipeline = pipeline
        self._scheduler = scheduler
        self._enqueue = enqueue
        self._state = state
        self._request_reload = request_reload

    def on_ask(self, cmd: AskCommand, reply: Reply) -> None:
        settings = self._pipeline.current.settings
        task = settings.task(cmd.task) if cmd.task else None
        if cmd.task and task is None:
            reply.error(f"unknown task {cmd.task!r}")
            return
        if task is None:
            task = next((t for t in settings.tasks if t.kind == "ask"), ASK_TASK)
        camera = self._camera(settings, task if cmd.task else None, cmd.camera, reply)
        if camera is None:
            return
        self._enqueue(
            JobSpec(
                task=task,
                trigger="command",
                prompt=cmd.prompt,
                with_image=cmd.image,
                reply=reply,
                camera=camera,
            )
        )

    def on_capture(self, cmd: CaptureCommand, reply: Reply) -> None:
        settings = self._pipeline.current.settings
        if cmd.task:
            task = settings.task(cmd.task)
            if task is None:
                reply.error(f"unknown task {cmd.task!r}")
                return
        else:
            frame_tasks = [t for t in settings.tasks if t.kind in FRAME_KINDS]
            # The first caption or structured task that runs on the camera asked for.
            task = next((t for t in frame_tasks if cmd.camera in settings.task_cameras(t)), None)
            task = task or (frame_tasks[0] if frame_tasks else None)
            if task is None:
                reply.error("no caption or structured task is configured")
                return
        camera = self._camera(settings, task, cmd.camera, reply)
        if camera is None:
            return
        self._enqueue(JobSpec(task=task, trigger="command", reply=reply, camera=camera, reply_ref=True))

    @staticmethod
    def _camera(settings: Settings, task: TaskSettings | None, asked: str | None, reply: Reply) -> str | None:
        """The camera a command runs on: the one asked for, else the first (of the task's cameras).
        None after an error reply (no such camera, or the task does not run on it)."""
        names = settings.task_cameras(task) if task is not None else settings.camera_names
        if asked is None:
            return names[0]
        if asked not in settings.camera_names:
            reply.error(f"unknown camera {asked!r}; cameras: {', '.join(settings.camera_names)}")
            return None
        if asked not in names:
            assert task is not None
            reply.error(
                f"task {task.name!r} does not run on camera {asked!r} (its cameras: {', '.join(names)})"
            )
            return None
        return asked

    def on_pause(self, reply: Reply) -> None:
        self.set_paused(True)
        reply.ok({"state": "paused"})

    def on_resume(self, reply: Reply) -> None:
        self.set_paused(False)
        reply.ok({"state": self._state.state})

    def set_paused(self, paused: bool) -> None:
        self._scheduler.paused = paused
        log.info("triggers %s", "paused" if paused else "resumed")
        self._state.set_paused(paused)

    def on_set(self, cmd: SetCommand, reply: Reply) -> None:
        try:
            applied = self.apply_runtime_values(cmd.values)
        except (ValueError, ValidationError) as err:
            reply.error(str(err).splitlines()[0])
            return
        reply.ok({"applied": applied})

    def apply_runtime_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """Validate all values against the settings models first, then apply them all (or none).

        `paused` never arrives here: the router turns `{"paused": …}` into on_pause/on_resume.
        """

        def change(p: Reloadable) -> Reloadable:
            s = p.settings
            gate = s.gate.model_dump()
            tasks = {t.name: t.model_dump(by_alias=True) for t in s.tasks}
            for key, value in values.items():
                parts = key.split(".")
                if parts[0] == "gate" and len(parts) == 2:
                    gate[parts[1]] = value
                elif parts[0] == "tasks" and len(parts) == 3 and parts[1] in tasks:
                    tasks[parts[1]][parts[2]] = value
                else:
                    raise ValueError(f"{key}: not a runtime-settable key")
            new_gate = GateSettings.model_validate(gate)
            new_tasks = [TaskSettings.model_validate(tasks[t.name]) for t in s.tasks]
            self._scheduler.gate_settings = new_gate
            self._scheduler.replace_tasks(new_tasks)
            return replace(p, settings=s.model_copy(update={"gate": new_gate, "tasks": new_tasks}))

        self._pipeline.swap(change)
        log.info("runtime settings changed by command: %s", ", ".join(sorted(values)))
        return values

    def on_reload(self, reply: Reply) -> None:
        self._request_reload()
        reply.ok({"reload": "scheduled"})
