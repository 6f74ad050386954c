"""Run one job on the worker and watch it: the result, a clear failure, or a fault to restart for.

The loop sleeps on the pipe and the process sentinel (a crash is seen at once) and wakes at least
every `poll_s` to read the shared heartbeat; a missed deadline means the worker is stuck in a call
nothing can interrupt, so the caller kills it. At shutdown the job is first asked to cancel (it keeps
its partial text) and killed only if that does not land in time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.core.messages import Generation
from edge.inference.deadlines import JobWatch
from edge.inference.heartbeat import Heartbeat
from edge.inference.protocol import FailureReason, JobDone, JobError, JobFailure, RunJob
from edge.inference.worker import Died, WorkerProcess

# (cancel_at, kill_at) on the monotonic clock once shutdown has begun, else None
StopSchedule = Callable[[], "tuple[float, float] | None"]


@dataclass(frozen=True)
class JobRun:
    generation: Generation | None
    failure: JobFailure | None
    fault: tuple[str, str] | None = None  # (reason, message): the worker died or was stuck

    @property
    def worker_usable(self) -> bool:
        return self.failure is None or self.failure.reason == "generation_error"


def run_one(
    worker: WorkerProcess,
    beat: Heartbeat,
    watch: JobWatch,
    msg: RunJob,
    poll_s: float,
    tick: Callable[[float], None],
    stopping: StopSchedule,
) -> JobRun:
    worker.send(msg)
    cancelled = False
    while True:
        now = time.monotonic()
        tick(now)
        watch.observe(now)
        miss = watch.missed(now)
        if miss is not None:
            reason: FailureReason = miss.reason  # type: ignore[assignment]
            return JobRun(None, JobFailure(reason, f"{miss.message}; worker pid {worker.pid} killed"),
                          (miss.reason, miss.message))  # fmt: skip
        schedule = stopping()
        if schedule is not None:
            cancel_at, kill_at = schedule
            if now >= kill_at:
                return JobRun(
                    None, JobFailure("stopped", "shutdown: the job did not finish in time; worker killed")
                )
            if not cancelled and now >= cancel_at:
                beat.request_cancel(msg.seq)
                cancelled = True
        reply = worker.receive(min(poll_s, watch.next_deadline_in(now) + 0.001))
        if reply is None:
            continue
        if isinstance(reply, JobDone) and reply.seq == msg.seq:
            return JobRun(reply.generation, None)
        if isinstance(reply, JobError) and reply.seq == msg.seq:
            failure = JobFailure("generation_error", f"{reply.error_type}: {reply.message}", reply.error_type)
            return JobRun(None, failure)
        if isinstance(reply, Died):
            return JobRun(None, JobFailure("crashed", f"worker {reply.how} during the job"),
                          ("crashed", f"worker {reply.how}"))  # fmt: skip
