"""Tasks and triggers -> jobs: which task is due when, and the bounded queue jobs wait in.

Pure logic (no threads, no I/O) so every policy here is tested without a camera or a model: the
runtime feeds it frames, clock ticks, commands and serial lines, and executes what comes out.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from edge.config.settings import ModelSettings, TaskSettings
from edge.core.kinds import TriggerKind
from edge.core.messages import Frame, GenerationRequest
from edge.pipeline.events import EventClip, EventCollector

if TYPE_CHECKING:
    from edge.imaging.gate import Gate

log = logging.getLogger(__name__)

FRAME_KINDS = {"caption", "structured"}
MAX_COMMAND_STREAK = 2
"""Commands served in a row while scheduled work waits; then the oldest scheduled job goes next."""


@dataclass(frozen=True)
class JobSpec:
    """A task that is due. The frame is taken when the job starts, not when it was triggered, so a
    job that waited in the queue still describes the newest frame."""

    task: TaskSettings
    trigger: TriggerKind
    gate_score: float | None = None
    prompt: str | None = None  # command override (ask)
    with_image: bool = True
    context: dict[str, Any] = field(default_factory=dict)
    reply: Any = None  # edge.mqtt.commands.Reply for command jobs: always answered, never dropped
    created: float = field(default_factory=time.monotonic)
    # Frames fixed at trigger time: an event's clip, or the gated frame a motion box belongs to.
    frames: tuple[Frame, ...] = ()
    roi: tuple[int, int, int, int] | None = None  # roi "motion": the box of frames[0] to describe

    @property
    def is_command(self) -> bool:
        return self.reply is not None

    @property
    def needs_frame(self) -> bool:
        return (
            self.task.kind in FRAME_KINDS
            or self.task.kind == "event"
            or (self.task.kind == "ask" and self.with_image)
        )

    @classmethod
    def for_event(cls, task: TaskSettings, clip: EventClip) -> JobSpec:
        context = {
            "event": {"started_at": clip.started_at, "ended_at": clip.ended_at, "ended_by": clip.ended_by}
        }
        return cls(
            task=task, trigger="motion", gate_score=clip.peak_score, context=context, frames=clip.frames
        )


class Scheduler:
    """Decides which interval and motion tasks are due: frame tasks per new frame, text-only interval
    tasks (summarize) by the clock, so a digest still runs while the camera is away."""

    def __init__(self, tasks: Iterable[TaskSettings], gate: Gate) -> None:
        self._tasks = list(tasks)
        self.gate = gate
        self._last_run: dict[str, float] = {}
        self.paused = False
        self.gated = 0  # frames the gate looked at and held back
        self._events: dict[str, EventCollector] = {}  # event tasks' frame collectors

    @property
    def tasks(self) -> list[TaskSettings]:
        return list(self._tasks)

    def replace_tasks(self, tasks: Iterable[TaskSettings]) -> None:
        self._tasks = list(tasks)
        self._events.clear()  # an event in progress under the old settings is dropped

    def _event_specs(
        self, tasks: list[TaskSettings], frame: Frame, score: float, now: float
    ) -> list[JobSpec]:
        out = []
        for t in tasks:
            c = self._events.get(t.name)
            if c is None or c.task is not t:
                c = self._events[t.name] = EventCollector(t, self.gate.settings.motion_threshold)
            c.threshold = self.gate.settings.motion_threshold
            clip = c.on_frame(frame, score, now)
            if clip is not None:
                out.append(JobSpec.for_event(t, clip))
        return out

    def _interval_due(self, t: TaskSettings, now: float) -> bool:
        if t.trigger != "interval" or t.interval_s is None:
            return False
        last = self._last_run.get(t.name)
        if last is None or now - last >= t.interval_s:
            self._last_run[t.name] = now
            return True
        return False

    def on_frame(self, frame: Frame, now: float) -> list[JobSpec]:
        """Due jobs for this frame: frame interval tasks by their clock, motion tasks by the gate."""
        if self.paused:
            return []
        due = [
            JobSpec(task=t, trigger="interval")
            for t in self._tasks
            if t.kind in FRAME_KINDS and self._interval_due(t, now)
        ]
        motion = [t for t in self._tasks if t.trigger == "motion" and t.kind != "event"]
        events = [t for t in self._tasks if t.kind == "event"]
        if not (motion or events):
            return due
        decision = self.gate.decide(frame, now)
        if motion and decision.run:
            self.gate.mark_triggered(now)
            box = self.gate.motion_box(frame) if any(t.roi == "motion" for t in motion) else None
            for t in motion:
                pinned = t.roi == "motion" and box is not None  # the box belongs to this frame
                due.append(
                    JobSpec(
                        task=t,
                        trigger="motion",
                        gate_score=decision.score,
                        context={"gate": decision.reason},
                        frames=(frame,) if pinned else (),
                        roi=box if pinned else None,
                    )
                )
        elif motion:
            self.gated += 1
        due.extend(self._event_specs(events, frame, decision.score, now))
        return due

    def on_tick(self, now: float) -> list[JobSpec]:
        """Due interval jobs that need no frame (summarize, text ask)."""
        if self.paused:
            return []
        return [
            JobSpec(task=t, trigger="interval", with_image=False)
            for t in self._tasks
            if t.kind not in FRAME_KINDS and self._interval_due(t, now)
        ]

    def for_serial(self, line: str, task_name: str | None) -> list[JobSpec]:
        """A serial trigger line fires the named task, or every task with trigger 'serial'."""
        if self.paused:
            return []
        chosen = [t for t in self._tasks if (t.name == task_name if task_name else t.trigger == "serial")]
        return [JobSpec(task=t, trigger="serial", context={"serial_line": line}) for t in chosen]


@dataclass
class QueueStats:
    queued: int = 0
    replaced: int = 0  # older frame job of the same task superseded by a newer one
    rejected: int = 0  # command refused because the queue was full (the caller got an error reply)
    skipped: int = 0  # scheduled job dropped to make room (also counted in `replaced`), logged


class JobQueue:
    """Bounded queue with explicit policies, shared fairly between commands and scheduled work.

    Scheduled (interval, motion, serial) jobs: newest wins per task (a pending older job of the same
    task is replaced and counted). Command jobs are never dropped silently: when they hold every
    slot but one they are refused, so the command gets an error reply at once instead of waiting
    forever. That last slot is kept for scheduled work, and `get` serves at most
    `max_command_streak` commands in a row while a scheduled job waits: a steady stream of cmd/ask
    cannot starve the interval and motion tasks. A scheduled job dropped to make room is counted
    in `stats.skipped` and logged.
    """

    def __init__(self, maxsize: int = 8, max_command_streak: int = MAX_COMMAND_STREAK) -> None:
        if maxsize < 2 or max_command_streak < 1:
            raise ValueError("JobQueue needs maxsize >= 2 and max_command_streak >= 1")
        self._items: deque[JobSpec] = deque()
        self._max = maxsize
        self._max_streak = max_command_streak
        self._streak = 0  # commands served in a row
        self._cond = threading.Condition()
        self.stats = QueueStats()
        self._closed = False

    def put(self, spec: JobSpec) -> Literal["queued", "replaced", "rejected", "closed"]:
        with self._cond:
            if self._closed:
                return "closed"
            if not spec.is_command:
                for i, old in enumerate(self._items):
                    if not old.is_command and old.task.name == spec.task.name:
                        self._items[i] = spec
                        self.stats.replaced += 1
                        self._cond.notify()
                        return "replaced"
            commands = sum(1 for j in self._items if j.is_command)
            if spec.is_command and commands >= self._max - 1:
                self.stats.rejected += 1  # the last slot is kept for scheduled work
                return "rejected"
            if len(self._items) >= self._max:
                # Full, and (commands being capped) at least one scheduled job is waiting: the oldest gives way.
                index = next(i for i, j in enumerate(self._items) if not j.is_command)
                victim = self._items[index]
                del self._items[index]
                self._skipped(victim, spec)
            self._items.append(spec)
            self.stats.queued += 1
            self._cond.notify()
            return "queued"

    def _skipped(self, victim: JobSpec, by: JobSpec) -> None:
        self.stats.replaced += 1
        self.stats.skipped += 1
        log.warning(
            "queue full: scheduled job %s (%s) skipped for %s %s (%d skipped so far)",
            victim.task.name,
            victim.trigger,
            "command" if by.is_command else "task",
            by.task.name,
            self.stats.skipped,
        )

    def get(self, timeout: float) -> JobSpec | None:
        """The oldest job, except that after `max_command_streak` commands a waiting scheduled job goes first."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            index = 0
            if self._items[0].is_command and self._streak >= self._max_streak:
                index = next((i for i, j in enumerate(self._items) if not j.is_command), 0)
            job = self._items[index]
            del self._items[index]
            self._streak = self._streak + 1 if job.is_command else 0
            return job

    def drain(self) -> list[JobSpec]:
        """Close the queue and hand back what was still waiting (shutdown accounts for each)."""
        with self._cond:
            self._closed = True
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


@dataclass(frozen=True)
class Recent:
    id: str
    task: str
    text: str
    captured_at: float


class RecentResults:
    """The last results per task, for summarize tasks (bounded; nothing here is durable)."""

    def __init__(self, per_task: int = 200) -> None:
        self._by_task: dict[str, deque[Recent]] = {}
        self._per_task = per_task
        self._lock = threading.Lock()

    def add(self, item: Recent) -> None:
        with self._lock:
            self._by_task.setdefault(item.task, deque(maxlen=self._per_task)).append(item)

    def window(self, task: str, since: float, limit: int) -> list[Recent]:
        with self._lock:
            items = [r for r in self._by_task.get(task, ()) if r.captured_at >= since]
        return items[-limit:]


def summarize_prompt(task: TaskSettings, items: list[Recent]) -> str:
    lines = [time.strftime("%H:%M:%S", time.gmtime(r.captured_at)) + " " + r.text.strip() for r in items]
    return f"{task.prompt}\n\nObservations (UTC time, text):\n" + "\n".join(lines)


def build_request(
    spec: JobSpec, model: ModelSettings, deadline_s: float, image: Any | None
) -> GenerationRequest:
    """`image`: one frame's array, a tuple of them (an event: one prompt, `<|image_1|>…<|image_N|>`),
    or None. The task's own num_crops, if set, overrides the model's for this request."""
    images = image if isinstance(image, tuple) else ((image,) if image is not None else ())
    return GenerationRequest(
        prompt=spec.prompt or spec.task.prompt,
        images=images,
        num_crops=spec.task.num_crops,
        system=model.system_prompt,
        max_new_tokens=model.max_new_tokens,
        temperature=model.temperature,
        deadline_s=deadline_s,
        json_schema=spec.task.json_schema,
    )


_ids = itertools.count(1)


def job_id(device: str, boot: str) -> str:
    """Job ids (for events and replies) are per boot; result ids are the outbox's seq-based ones."""
    return f"{device}-{boot}-j{next(_ids)}"
