"""The daemon's answers to `cmd/{verb}`. Each returns at once (paho's thread): work that needs the
model is queued as a job and the reply is sent when the job's outcome is recorded."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from edge.config.settings import GateSettings, TaskSettings
from edge.mqtt.commands import AskCommand, CaptureCommand, Reply, SetCommand
from edge.pipeline.jobs import FRAME_KINDS, JobSpec

if TYPE_CHECKING:
    from edge.daemon.app import Daemon

log = logging.getLogger(__name__)

ASK_TASK = TaskSettings(name="ask", kind="ask", trigger="command", prompt="")


class CommandHandlerMixin:
    def on_ask(self: Daemon, cmd: AskCommand, reply: Reply) -> None:  # type: ignore[misc]
        task = self.settings.task(cmd.task) if cmd.task else None
        if cmd.task and task is None:
            reply.error(f"unknown task {cmd.task!r}")
            return
        if task is None:
            task = next((t for t in self.settings.tasks if t.kind == "ask"), ASK_TASK)
        self.enqueue(
            JobSpec(task=task, trigger="command", prompt=cmd.prompt, with_image=cmd.image, reply=reply)
        )

    def on_capture(self: Daemon, cmd: CaptureCommand, reply: Reply) -> None:  # type: ignore[misc]
        if cmd.task:
            task = self.settings.task(cmd.task)
            if task is None:
                reply.error(f"unknown task {cmd.task!r}")
                return
        else:
            task = next((t for t in self.settings.tasks if t.kind in FRAME_KINDS), None)
            if task is None:
                reply.error("no caption or structured task is configured")
                return
        self.enqueue(JobSpec(task=task, trigger="command", reply=reply))

    def on_pause(self: Daemon, reply: Reply) -> None:  # type: ignore[misc]
        self.set_paused(True)
        reply.ok({"state": "paused"})

    def on_resume(self: Daemon, reply: Reply) -> None:  # type: ignore[misc]
        self.set_paused(False)
        reply.ok({"state": self.state})

    def set_paused(self: Daemon, paused: bool) -> None:  # type: ignore[misc]
        self.paused = paused
        self.scheduler.paused = paused
        log.info("triggers %s", "paused" if paused else "resumed")
        self._update_state()

    def on_set(self: Daemon, cmd: SetCommand, reply: Reply) -> None:  # type: ignore[misc]
        try:
            applied = self.apply_runtime_values(cmd.values)
        except (ValueError, ValidationError) as err:
            reply.error(str(err).splitlines()[0])
            return
        reply.ok({"applied": applied})

    def apply_runtime_values(self: Daemon, values: dict[str, Any]) -> dict[str, Any]:  # type: ignore[misc]
        """Validate all values against the settings models first, then apply them all (or none)."""
        s = self.settings
        gate = s.gate.model_dump()
        tasks = {t.name: t.model_dump(by_alias=True) for t in s.tasks}
        paused: bool | None = None
        for key, value in values.items():
            parts = key.split(".")
            if parts[0] == "gate" and len(parts) == 2:
                gate[parts[1]] = value
            elif parts[0] == "tasks" and len(parts) == 3 and parts[1] in tasks:
                tasks[parts[1]][parts[2]] = value
            elif key == "paused":
                paused = bool(value)
            else:
                raise ValueError(f"{key}: not a runtime-settable key")
        new_gate = GateSettings.model_validate(gate)
        new_tasks = [TaskSettings.model_validate(tasks[t.name]) for t in s.tasks]
        s.gate = new_gate
        s.tasks = new_tasks
        self.scheduler.gate.settings = new_gate
        self.scheduler.replace_tasks(new_tasks)
        if paused is not None:
            self.set_paused(paused)
        log.info("runtime settings changed by command: %s", ", ".join(sorted(values)))
        return values

    def on_reload(self: Daemon, reply: Reply) -> None:  # type: ignore[misc]
        self.reload_requested.set()
        reply.ok({"reload": "scheduled"})
