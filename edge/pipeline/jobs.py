"""Tasks and triggers -> jobs: which task is due when, and the bounded queue jobs wait in.

Pure logic (no threads, no I/O) so every policy here is tested without a camera or a model: the
runtime feeds it frames, clock ticks, commands and serial lines, and executes what comes out.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from edge.config.settings import GateSettings, ModelSettings, TaskSettings, ZoneSettings
from edge.core.kinds import TriggerKind
from edge.core.messages import Frame, GenerationRequest
from edge.imaging.crops import crop
from edge.imaging.gate import Gate
from edge.inference.requests import bind
from edge.pipeline.event_clips import EventClip, EventCollector

log = logging.getLogger(__name__)

FRAME_KINDS = {"caption", "structured"}
MAX_COMMAND_STREAK = 2
"""Commands served in a row while scheduled work waits; then the oldest scheduled job goes next."""


@dataclass(frozen=True)
class JobSpec:
    """A task that is due on one camera. The frame is taken when the job starts, not when it was
    triggered, so a job that waited in the queue still describes that camera's newest frame."""

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
    camera: str = "main"
    reply_ref: bool = False  # cmd/capture: the reply names the result (id, topic), not the whole of it

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
    def for_event(cls, task: TaskSettings, clip: EventClip, camera: str = "main") -> JobSpec:
        context = {
            "event": {"started_at": clip.started_at, "ended_at": clip.ended_at, "ended_by": clip.ended_by}
        }
        return cls(
            task=task,
            trigger="motion",
            gate_score=clip.peak_score,
            context=context,
            frames=clip.frames,
            camera=camera,
        )

    @property
    def key(self) -> tuple[str, str]:
        """Scheduled jobs with the same key replace each other in the queue: newest wins."""
        return (self.camera, self.task.name)


class Scheduler:
    """Decides which interval and motion tasks are due, per camera: frame tasks per new frame of a
    camera the task is bound to (one gate per camera), text-only interval tasks by the clock, so a
    digest still runs while a camera is away.

    Called from the trigger loop (frames, ticks), the serial reader (lines), and commands and
    reloads (tasks, gate settings, cameras): each camera's state is its own, and the shared maps are
    replaced whole, never mutated while another thread may iterate them.
    """

    def __init__(
        self,
        tasks: Iterable[TaskSettings],
        gate: GateSettings,
        cameras: Sequence[str] = ("main",),
        new_gate: Callable[[GateSettings], Gate] = Gate,
        zone: Callable[[str, str], ZoneSettings | None] = lambda camera, zone: None,
    ) -> None:
        """`zone(camera, name)`: a camera's zone, read live (a reload may change it); a task with a
        zone has a gate of its own per camera that scores only the zone's pixels."""
        self._tasks = list(tasks)
        self._zone = zone
        self._zone_gates: dict[tuple[str, str], Gate] = {}
        self._gate_settings = gate
        self._new_gate = new_gate
        self._gates: dict[str, Gate] = {}
        self._gated: dict[str, int] = {}  # frames each camera's gate looked at and held back
        self._cameras: tuple[str, ...] = ()
        self._last_run: dict[tuple[str, str], float] = {}
        self.paused = False
        # The power policy's levers: interval tasks run `interval_factor` times less often (a hot
        # board), and `held` pauses every scheduled task (outside active hours); commands never wait.
        self.interval_factor = 1.0
        self.held = False
        self._events: dict[tuple[str, str], EventCollector] = {}  # (camera, event task) -> its collector
        self._moved: dict[
            str, float
        ] = {}  # camera -> when its gate (or a zone's) last saw motion, or started
        self.set_cameras(cameras)

    @property
    def tasks(self) -> list[TaskSettings]:
        return list(self._tasks)

    @property
    def cameras(self) -> tuple[str, ...]:
        return self._cameras

    def replace_tasks(self, tasks: Iterable[TaskSettings]) -> None:
        self._tasks = list(tasks)
        self._events.clear()  # an event in progress under the old settings is dropped

    def _event_specs(
        self, tasks: list[TaskSettings], frame: Frame, score: float, now: float
    ) -> list[JobSpec]:
        out = []
        threshold = self._gate_settings.motion_threshold
        for t in tasks:
            key = (frame.camera, t.name)
            c = self._events.get(key)
            if c is None or c.task is not t:
                c = self._events[key] = EventCollector(t, threshold)
            c.threshold = threshold
            clip = c.on_frame(frame, score, now)
            if clip is not None:
                out.append(JobSpec.for_event(t, clip, frame.camera))
        return out

    @property
    def gate_settings(self) -> GateSettings:
        return self._gate_settings

    @gate_settings.setter
    def gate_settings(self, value: GateSettings) -> None:
        self._gate_settings = value
        for gate in [*self._gates.values(), *self._zone_gates.values()]:
            gate.settings = value

    def gate(self, camera: str) -> Gate | None:
        return self._gates.get(camera)

    def set_cameras(self, cameras: Sequence[str]) -> None:
        """The cameras now configured: a new one gets a fresh gate, a removed one's state goes."""
        self._gates = {c: self._gates.get(c) or self._new_gate(self._gate_settings) for c in cameras}
        self._gated = {c: self._gated.get(c, 0) for c in cameras}
        self._cameras = tuple(cameras)
        self._events = {k: c for k, c in self._events.items() if k[0] in self._cameras}
        self._zone_gates = {k: g for k, g in self._zone_gates.items() if k[0] in self._cameras}
        self._moved = {c: t for c, t in self._moved.items() if c in self._cameras}

    def reset_camera(self, camera: str) -> None:
        """A camera's grabber was replaced: its gate forgets the old background and intervals."""
        gate = self._gates.get(camera)
        if gate is not None:
            gate.reset()
        self._events = {k: c for k, c in self._events.items() if k[0] != camera}
        self._zone_gates = {k: g for k, g in self._zone_gates.items() if k[0] != camera}
        self._moved.pop(camera, None)

    def idle_fps(self, camera: str, now: float) -> float | None:
        """How many frames a second `camera`'s grabber must decode now; None: every frame.

        Every frame while its gate (or a zone's) saw motion within gate.idle_after_s (and after a
        start or a reset) and while an event is being collected; otherwise gate.idle_fps, raised to
        1/frame_interval_s of its event tasks with a pre-roll, so the frames kept from before an
        event are as close together as the task asks. Motion is then seen within 1/idle_fps.
        """
        s = self._gate_settings
        moved = self._moved.setdefault(camera, now)
        if not s.idle_fps or now - moved < s.idle_after_s:
            return None
        if any(c.collecting for (cam, _), c in self._events.items() if cam == camera):
            return None
        rate = s.idle_fps
        for t in self._tasks:
            if t.kind == "event" and t.preroll and camera in self.bound(t):
                if t.frame_interval_s <= 0:
                    return None
                rate = max(rate, 1.0 / t.frame_interval_s)
        return rate

    @property
    def gated(self) -> int:
        return sum(self._gated.values())

    def gated_by_camera(self) -> dict[str, int]:
        return dict(self._gated)

    def bound(self, task: TaskSettings) -> list[str]:
        """The cameras `task` runs on, in camera order (default: all)."""
        return [c for c in self._cameras if task.cameras is None or c in task.cameras]

    def _interval_due(self, t: TaskSettings, camera: str, now: float) -> bool:
        if t.trigger != "interval" or t.interval_s is None:
            return False
        last = self._last_run.get((camera, t.name))
        if last is None or now - last >= t.interval_s * self.interval_factor:
            self._last_run[(camera, t.name)] = now
            return True
        return False

    def on_frame(self, frame: Frame, now: float) -> list[JobSpec]:
        """Due jobs for this frame of `frame.camera`: interval tasks by their clock, motion tasks and
        event collection by that camera's gate."""
        camera = frame.camera
        gate = self._gates.get(camera)
        if self.paused or self.held or gate is None:
            return []
        mine = [t for t in self._tasks if camera in self.bound(t)]
        due = [
            JobSpec(task=t, trigger="interval", camera=camera)
            for t in mine
            if t.kind in FRAME_KINDS and self._interval_due(t, camera, now)
        ]
        motion = [t for t in mine if t.trigger == "motion" and t.kind != "event" and t.zone is None]
        events = [t for t in mine if t.kind == "event"]
        zoned = [t for t in mine if t.trigger == "motion" and t.zone is not None]
        if zoned:
            due.extend(self._zone_specs(zoned, frame, now))
        if not (motion or events):
            return due
        decision = gate.decide(frame, now)
        if decision.score >= self._gate_settings.motion_threshold:
            self._moved[camera] = now
        if motion and decision.run:
            gate.mark_triggered(now)
            box = gate.motion_box(frame) if any(t.roi == "motion" for t in motion) else None
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
                        camera=camera,
                    )
                )
        elif motion:
            self._gated[camera] = self._gated.get(camera, 0) + 1
        due.extend(self._event_specs(events, frame, decision.score, now))
        return due

    def _zone_specs(self, tasks: list[TaskSettings], frame: Frame, now: float) -> list[JobSpec]:
        """Motion tasks with a zone: each zone's own gate looks at the zone's pixels only."""
        camera = frame.camera
        out: list[JobSpec] = []
        for name in sorted({t.zone for t in tasks if t.zone is not None}):
            zone = self._zone(camera, name)
            if zone is None:
                continue
            box = zone.pixels(frame.width, frame.height)
            gate = self._zone_gates.get((camera, name))
            if gate is None:
                gate = self._zone_gates[(camera, name)] = self._new_gate(self._gate_settings)
            decision = gate.decide(replace(frame, image=crop(frame.image, box)), now)
            if decision.score >= self._gate_settings.motion_threshold:
                self._moved[camera] = now
            if not decision.run:
                self._gated[camera] = self._gated.get(camera, 0) + 1
                continue
            gate.mark_triggered(now)
            out += [
                JobSpec(
                    task=t,
                    trigger="motion",
                    gate_score=decision.score,
                    context={"gate": decision.reason},
                    frames=(frame,),
                    roi=box,
                    camera=camera,
                )
                for t in tasks
                if t.zone == name
            ]
        return out

    def on_tick(self, now: float) -> list[JobSpec]:
        """Due interval jobs that need no frame: a summary per camera (of that camera's results),
        other text-only tasks once (on the first camera they are bound to)."""
        if self.paused or self.held:
            return []
        due = []
        for t in self._tasks:
            if t.kind in FRAME_KINDS or t.kind == "event":
                continue
            cameras = self.bound(t)
            for camera in cameras if t.kind == "summarize" else cameras[:1]:
                if self._interval_due(t, camera, now):
                    due.append(JobSpec(task=t, trigger="interval", with_image=False, camera=camera))
        return due

    def for_serial(self, line: str, task_name: str | None) -> list[JobSpec]:
        """A serial trigger line fires the named task, or every task with trigger 'serial', on each
        camera the task is bound to."""
        if self.paused:
            return []
        chosen = [t for t in self._tasks if (t.name == task_name if task_name else t.trigger == "serial")]
        return [
            JobSpec(task=t, trigger="serial", context={"serial_line": line}, camera=camera)
            for t in chosen
            for camera in self.bound(t)
        ]


@dataclass
class QueueStats:
    queued: int = 0
    replaced: int = 0  # older frame job of the same (camera, task) superseded by a newer one
    rejected: int = 0  # command refused because the queue was full (the caller got an error reply)
    skipped: int = 0  # scheduled job dropped to make room (also counted in `replaced`), logged
    by_camera: dict[str, int] = field(default_factory=dict)  # replaced + skipped scheduled jobs per camera


class JobQueue:
    """Bounded queue with explicit policies, shared fairly between cameras, and between commands
    and scheduled work.

    Scheduled (interval, motion, serial) jobs: newest wins per (camera, task) (a pending older job
    is replaced in its place, and counted for its camera), so each camera holds at most one job per
    task. Among scheduled jobs `get` goes round robin across cameras: the camera served least
    recently goes next, so a camera with a fast gate or many tasks cannot starve another.
    Command jobs are never dropped silently: when they hold every slot but one they are refused,
    so the command gets an error reply at once instead of waiting forever. That last slot is kept
    for scheduled work, and `get` serves at most `max_command_streak` commands in a row while a
    scheduled job waits: a steady stream of cmd/ask cannot starve the interval and motion tasks.
    When the queue is full a scheduled job of the camera with the most waiting gives way (counted
    in `stats.skipped` and logged).
    """

    def __init__(self, maxsize: int = 8, max_command_streak: int = MAX_COMMAND_STREAK) -> None:
        if maxsize < 2 or max_command_streak < 1:
            raise ValueError("JobQueue needs maxsize >= 2 and max_command_streak >= 1")
        self._items: deque[JobSpec] = deque()
        self._max = maxsize
        self._max_streak = max_command_streak
        self._streak = 0  # commands served in a row
        self._served: dict[str, int] = {}  # camera -> turn it was last served at (round robin)
        self._turn = 0
        self._cond = threading.Condition()
        self.stats = QueueStats()
        self._closed = False

    @property
    def maxsize(self) -> int:
        return self._max

    def resize(self, maxsize: int) -> None:
        """More (camera, task) pairs after a reload need more room; waiting jobs are kept."""
        with self._cond:
            self._max = max(2, maxsize, len(self._items))

    def _dropped(self, spec: JobSpec) -> None:
        self.stats.replaced += 1
        self.stats.by_camera[spec.camera] = self.stats.by_camera.get(spec.camera, 0) + 1

    def put(self, spec: JobSpec) -> Literal["queued", "replaced", "rejected", "closed"]:
        with self._cond:
            if self._closed:
                return "closed"
            if not spec.is_command:
                for i, old in enumerate(self._items):
                    if not old.is_command and old.key == spec.key:
                        self._items[i] = spec
                        self._dropped(old)
                        self._cond.notify()
                        return "replaced"
            commands = sum(1 for j in self._items if j.is_command)
            if spec.is_command and commands >= self._max - 1:
                self.stats.rejected += 1  # the last slot is kept for scheduled work
                return "rejected"
            if len(self._items) >= self._max:
                # Full, and (commands being capped) at least one scheduled job is waiting: the
                # oldest of the camera with the most waiting gives way.
                waiting = Counter(j.camera for j in self._items if not j.is_command)
                busiest = max(waiting, key=lambda c: waiting[c])
                index = next(i for i, j in enumerate(self._items) if not j.is_command and j.camera == busiest)
                victim = self._items[index]
                del self._items[index]
                self._skipped(victim, spec)
            self._items.append(spec)
            self.stats.queued += 1
            self._cond.notify()
            return "queued"

    def _skipped(self, victim: JobSpec, by: JobSpec) -> None:
        self._dropped(victim)
        self.stats.skipped += 1
        log.warning(
            "queue full: scheduled job %s/%s (%s) skipped for %s %s (%d skipped so far)",
            victim.camera,
            victim.task.name,
            victim.trigger,
            "command" if by.is_command else "task",
            by.task.name,
            self.stats.skipped,
        )

    def _next_scheduled(self) -> int | None:
        """Index of the scheduled job to serve: of the camera served least recently, its oldest."""
        best: int | None = None
        for i, j in enumerate(self._items):
            if j.is_command:
                continue
            if best is None or self._served.get(j.camera, -1) < self._served.get(
                self._items[best].camera, -1
            ):
                best = i
        return best

    def get(self, timeout: float) -> JobSpec | None:
        """The oldest job, except that scheduled jobs go round robin across cameras, and after
        `max_command_streak` commands a waiting scheduled job goes first."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            command = next((i for i, j in enumerate(self._items) if j.is_command), None)
            scheduled = self._next_scheduled()
            if scheduled is None or command is None:
                index = scheduled if command is None else command
            elif command < scheduled and self._streak < self._max_streak:
                index = command  # it waited longer than the job whose camera's turn it is
            else:
                index = scheduled
            assert index is not None
            job = self._items[index]
            del self._items[index]
            self._streak = self._streak + 1 if job.is_command else 0
            if not job.is_command:
                self._turn += 1
                self._served[job.camera] = self._turn
            return job

    def pending(self) -> list[JobSpec]:
        with self._cond:
            return list(self._items)

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
    camera: str = "main"


class RecentResults:
    """The last results per task, for summarize tasks (bounded; nothing here is durable)."""

    def __init__(self, per_task: int = 200) -> None:
        self._by_task: dict[str, deque[Recent]] = {}
        self._per_task = per_task
        self._lock = threading.Lock()

    def add(self, item: Recent) -> None:
        with self._lock:
            self._by_task.setdefault(item.task, deque(maxlen=self._per_task)).append(item)

    def window(self, task: str, since: float, limit: int, camera: str | None = None) -> list[Recent]:
        """The last `limit` results of `task` since `since` (of one camera, if given)."""
        with self._lock:
            items = [
                r
                for r in self._by_task.get(task, ())
                if r.captured_at >= since and (camera is None or r.camera == camera)
            ]
        return items[-limit:]


def summarize_prompt(task: TaskSettings, items: list[Recent]) -> str:
    lines = [time.strftime("%H:%M:%S", time.gmtime(r.captured_at)) + " " + r.text.strip() for r in items]
    return f"{task.prompt}\n\nObservations (UTC time, text):\n" + "\n".join(lines)


def build_request(
    spec: JobSpec, model: ModelSettings, deadline_s: float, image: Any | None
) -> GenerationRequest:
    """`image`: one frame's array, a tuple of them (an event: one prompt, `<|image_1|>…<|image_N|>`),
    or None. Bound to `model` (its settings, the task's num_crops else its own); the supervisor binds it
    again to the chain entry that runs it."""
    images = image if isinstance(image, tuple) else ((image,) if image is not None else ())
    request = GenerationRequest(
        prompt=spec.prompt or spec.task.prompt,
        images=images,
        deadline_s=deadline_s,
        json_schema=spec.task.json_schema,
        task_num_crops=spec.task.num_crops,
    )
    return bind(request, model)


_ids = itertools.count(1)


def job_id(device: str, boot: str) -> str:
    """Job ids (for events and replies) are per boot; result ids are the outbox's seq-based ones."""
    return f"{device}-{boot}-j{next(_ids)}"
