"""Where due jobs come from (frames, the clock, serial lines) and which lane's queue they go to."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from edge.capture import Grabber
from edge.core.messages import Frame
from edge.daemon.reloadable import Reloadable
from edge.pipeline.jobs import JobQueue, JobSpec, Scheduler

Enqueue = Callable[[JobSpec], str]


class JobRouter:
    """Routes a job to the worker that serves it: text-only jobs go to the text model if there is one.

    The queues outlive reloads (a reload swaps supervisors behind them), so they are fixed here.
    """

    def __init__(self, vision: JobQueue, text: JobQueue | None) -> None:
        self._vision = vision
        self._text = text

    def enqueue(self, spec: JobSpec) -> str:
        text_only = not spec.needs_frame
        queue = self._text if (text_only and self._text is not None) else self._vision
        outcome = queue.put(spec)
        if outcome in ("rejected", "closed") and spec.is_command:
            spec.reply.error("busy: the job queue is full" if outcome == "rejected" else "daemon is stopping")
        return outcome


POLL_S = 0.02
"""With several cameras the loop looks at each grabber's slot this often when none had a new frame
(a lock and a reference each; the model takes seconds, 20 ms of latency is nothing)."""


class TriggerLoop:
    """One thread: takes each camera's newest frame as it arrives and enqueues what the scheduler
    says is due (each camera's gate runs here), ticks the clock for text-only tasks, and tells each
    grabber the rate its frames are needed at (the scheduler's idle rate while nothing moves).

    The grabbers are looked up through the pipeline each round: a reload adds, removes or replaces
    them. One camera that is lost only has no new frames; the others go on.
    """

    def __init__(
        self,
        pipeline: Callable[[], Reloadable],
        scheduler: Scheduler,
        enqueue: Enqueue,
        stop: threading.Event,
    ) -> None:
        self._pipeline = pipeline
        self._scheduler = scheduler
        self._enqueue = enqueue
        self._stop = stop
        self._thread = threading.Thread(target=self._run, name="edge-triggers", daemon=True)
        self.beat = time.monotonic()  # each round of the loop (at least every half second)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def on_serial_line(self, line: str) -> None:
        """The serial trigger reader's callback (its own thread)."""
        task = self._pipeline().settings.serial.trigger_task
        for spec in self._scheduler.for_serial(line, task):
            self._enqueue(spec)

    def _run(self) -> None:
        seen: dict[str, tuple[Grabber, int]] = {}  # camera -> (its grabber, last frame seq taken)
        while not self._stop.is_set():
            self.beat = time.monotonic()
            grabbers = self._pipeline().grabbers
            frames: list[tuple[Grabber, Frame]] = []
            for name, grabber in grabbers.items():
                last = seen.get(name)
                # A grabber replaced by a reload counts its frames from zero.
                frame = grabber.latest(last[1] if last and last[0] is grabber else -1)
                if frame is not None:
                    seen[name] = (grabber, frame.seq)
                    frames.append((grabber, frame))
            for name in [n for n in seen if n not in grabbers]:
                del seen[name]
            now = time.monotonic()
            for spec in self._scheduler.on_tick(now):
                self._enqueue(spec)
            for grabber, frame in frames:
                for spec in self._scheduler.on_frame(frame, now):
                    self._enqueue(spec)
                # Quiet cameras decode and gate only a few frames a second; motion brings them back.
                grabber.idle_fps = self._scheduler.idle_fps(frame.camera, now)
            if frames:
                continue
            if len(grabbers) == 1:  # one camera: sleep until its next frame (as before several)
                ((name, grabber),) = grabbers.items()
                last = seen.get(name)
                if grabber.wait_frame(last[1] if last and last[0] is grabber else -1, 0.5) is None:
                    self._stop.wait(POLL_S)  # a source that ended answers at once: no busy loop
            else:
                self._stop.wait(POLL_S)
