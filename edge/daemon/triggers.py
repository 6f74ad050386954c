"""Where due jobs come from (frames, the clock, serial lines) and which lane's queue they go to."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from edge.daemon.pipeline import Pipeline
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


class TriggerLoop:
    """One thread: waits for the next frame (or half a second) and enqueues what the scheduler says is due."""

    def __init__(
        self,
        pipeline: Callable[[], Pipeline],
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
        last_seq, grabber = -1, self._pipeline().grabber
        while not self._stop.is_set():
            self.beat = time.monotonic()
            current = self._pipeline().grabber
            if current is not grabber:  # replaced by a reload: its frames count from zero
                last_seq, grabber = -1, current
            frame = grabber.wait_frame(last_seq, 0.5)
            now = time.monotonic()
            for spec in self._scheduler.on_tick(now):
                self._enqueue(spec)
            if frame is None:
                continue
            last_seq = frame.seq
            for spec in self._scheduler.on_frame(frame, now):
                self._enqueue(spec)
