"""The supervisor: runs jobs on the worker process under deadlines, and keeps a worker alive.

One owner thread does everything that touches the worker (spawn, load, send, watch, kill, recycle),
so there is one place where the worker's state changes, and PR_SET_PDEATHSIG in the child (tied to
the thread that spawned it) fires only when this supervisor is done. `submit()` hands a job to that
thread and blocks for its outcome: exactly one JobOutcome per job, never dropped, never retried.

Faults (a missed deadline, a crash, a silent exit, a failed load) kill the worker, emit an event and
restart it after an exponential backoff (rules in faults.py). Recycling (job count, RSS) happens
between jobs. Events go to `on_event(kind, detail)`; detail always has reason, job_id and task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

from edge.config.model_settings import HttpModelSettings, num_crops_of, providers_of, with_providers
from edge.config.settings import ModelSettings, WatchdogSettings
from edge.core.errors import FrameError
from edge.core.messages import Generation, Job, ModelPayload
from edge.imaging.imageio import validate_array
from edge.inference.base import BackendInfo
from edge.inference.deadlines import JobWatch, Limits, prompt_scale
from edge.inference.faults import FaultTracker
from edge.inference.frame_slot import FrameSlot
from edge.inference.heartbeat import Heartbeat
from edge.inference.job_runner import run_one
from edge.inference.protocol import JobFailure, JobOutcome, Loaded, LoadFailed, RunJob
from edge.inference.requests import bind
from edge.inference.worker import DEFAULT_LOADER, Died, WorkerProcess

log = logging.getLogger(__name__)

EventCallback = Callable[[str, dict[str, Any]], None]
State = Literal["loading", "ok", "degraded", "stopped"]
Mode = Literal["starting", "loading", "backoff", "idle", "busy", "stopped"]
Pending = tuple[Job, "Future[JobOutcome]"]
_TICK_STALE_S = 10.0  # the owner thread itself must loop at least this often to count as progressing


@dataclass(frozen=True)
class SupervisorStats:
    state: State
    degraded_reason: str | None
    mode: Mode  # what the owner thread is doing now
    phase: str  # the worker's own phase from shared memory (idle/loading/prefill/decoding/stopped)
    jobs: int  # jobs finished, whatever the outcome
    failures: int  # of those, failed
    restarts: int  # fault restarts (not recycles)
    recycles: int
    provider: str | None
    backend: str | None
    model: str | None
    worker_pid: int | None
    worker_rss_mb: float | None
    last_heartbeat_age_s: float | None  # while a job runs: since the last token (or job start)
    endpoint: int = 0  # index in the chain [model, *model.fallback] now in use
    switch_reason: str | None = None  # why the chain left its first endpoint (None: on the first)


class Supervisor:
    def __init__(
        self,
        model: ModelSettings,
        watchdog: WatchdogSettings,
        on_event: EventCallback | None = None,
        *,
        loader: str = DEFAULT_LOADER,
        poll_s: float = 0.05,
        frames: FrameSlot | None = None,
    ) -> None:
        """`frames`: the frame slot of the supervisor this one replaces (a reload), so a lane keeps
        one slot for the life of the daemon; a new one when None."""
        # The chain of model endpoints: [model, *model.fallback]; one is in use at a time.
        self._chain = [model.model_copy(update={"fallback": []}), *model.fallback]
        self._at = 0
        self._switched_at = 0.0
        self._switch_reason: str | None = None
        self._model = self._chain[0]
        self._wd = watchdog
        self._limits = Limits.from_settings(watchdog)
        self._on_event = on_event
        self._loader = loader
        self._poll_s = poll_s
        self._ctx = multiprocessing.get_context("spawn")
        self._beat = Heartbeat(self._ctx)
        self._frames = frames or FrameSlot(self._ctx)  # like the heartbeat: shared by every respawn
        self._faults = FaultTracker(watchdog, providers_of(model), self._emit)
        self._cv = threading.Condition()
        self._count_lock = threading.Lock()
        self._submit_lock = threading.Lock()
        self._pending: Pending | None = None
        self._current: Pending | None = None
        self._stopping = threading.Event()
        self._stop_deadline = float("inf")
        self._stop_budget = 0.0
        self._thread: threading.Thread | None = None
        self._worker: WorkerProcess | None = None
        self._info: BackendInfo | None = None
        self._mode: Mode = "starting"
        self._mode_since = self._tick = time.monotonic()
        self._watch: JobWatch | None = None
        self._seq = self._worker_jobs = 0
        self._jobs = self._failures = self._recycles = 0

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        """Start the owner thread, which spawns the worker and loads the model in the background."""
        if self._thread is not None:
            raise RuntimeError("supervisor already started")
        self._thread = threading.Thread(target=self._run, name="edge-supervisor", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float, cancel: threading.Event | None = None) -> bool:
        """True once a worker has loaded; False on timeout, a failed load, stop, or `cancel` (seen
        within 0.2 s: the daemon's stop request during start-up)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                if self._worker is not None and self._mode in ("idle", "busy"):
                    return True
                left = deadline - time.monotonic()
                cancelled = self._stopping.is_set() or (cancel is not None and cancel.is_set())
                if self._faults.load_error is not None or cancelled or left <= 0:
                    return False
                self._cv.wait(min(left, 0.2))

    @property
    def frame_slot(self) -> FrameSlot:
        """For a successor (see __init__); safe to hand on once this supervisor has stopped."""
        return self._frames

    @property
    def info(self) -> BackendInfo | None:
        """The loaded backend (model name, backend, provider), or None before the first load."""
        return self._info

    def submit(self, job: Job) -> JobOutcome:
        """Run `job` on the worker; block until its outcome. One job at a time; callers queue here."""
        t0 = time.monotonic()
        try:
            for image in job.request.images:
                validate_array(image)
        except FrameError as err:
            return self._finish(job, None, JobFailure("invalid_request", str(err), "FrameError"), t0)
        with self._submit_lock:
            fut: Future[JobOutcome] = Future()
            with self._cv:
                if self._thread is None or self._stopping.is_set():
                    return self._finish(job, None, JobFailure("stopped", "supervisor is not running"), t0)
                self._pending = (job, fut)
                self._cv.notify_all()
            return fut.result()

    def cancel_current(self) -> None:
        """Ask the running job to stop at its next token and return what it has (stop_reason cancelled)."""
        if self._watch is not None:
            self._beat.request_cancel(self._seq)

    def progressing(self, within_s: float | None = None) -> bool:
        """Whether the generator side makes progress, for the systemd watchdog pinger.

        True while the worker is idle, loading within load_timeout_s, backing off, or heartbeating:
        in prefill within first_token_s, decoding with a token within `within_s` (default token_s).
        False when stopped or when the owner thread itself stopped looping.
        """
        now = time.monotonic()
        mode, since, watch = self._mode, self._mode_since, self._watch
        if mode == "stopped" or self._thread is None or not self._thread.is_alive():
            return False
        if now - self._tick > _TICK_STALE_S:
            return False
        if mode == "busy":
            return watch is None or watch.healthy(now, within_s)
        if mode == "loading":
            return now - since <= self._wd.load_timeout_s
        return True  # starting, idle, backoff (bounded by backoff_max_s)

    def stats(self) -> SupervisorStats:
        worker, info, watch, faults = self._worker, self._info, self._watch, self._faults
        if self._mode == "stopped":
            state: State = "stopped"
        elif faults.degraded is not None:
            state = "degraded"
        elif info is None:
            state = "loading"
        else:
            state = "ok"
        return SupervisorStats(
            state=state,
            degraded_reason=faults.degraded,
            mode=self._mode,
            phase=self._beat.phase if worker is not None else "stopped",
            jobs=self._jobs,
            failures=self._failures,
            restarts=faults.restarts,
            recycles=self._recycles,
            provider=info.provider if info else None,
            backend=info.backend if info else None,
            model=info.name if info else None,
            worker_pid=worker.pid if worker is not None else None,
            worker_rss_mb=worker.rss_mb() if worker is not None else None,
            last_heartbeat_age_s=(time.monotonic() - watch.last_change) if watch is not None else None,
            endpoint=self._at,
            switch_reason=self._switch_reason,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Let the running job finish (or hit its deadline) within `timeout`, then stop the worker.

        Bounded: near the end of `timeout` the job is cancelled (keeping its partial text), then
        killed ("stopped" failure); either way its outcome is delivered.
        """
        self._stop_budget = timeout
        self._stop_deadline = time.monotonic() + timeout
        self._stopping.set()
        with self._cv:
            self._cv.notify_all()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, self._stop_deadline - time.monotonic()) + 1.0)
            if thread.is_alive():  # the owner is stuck (it should not be): kill the child from here
                log.error("supervisor thread did not stop in %.1fs; killing the worker", timeout)
                worker = self._worker
                if worker is not None and worker.pid is not None:
                    with contextlib.suppress(OSError):
                        os.kill(worker.pid, signal.SIGKILL)
                thread.join(2.0)
        self._set_mode("stopped")

    # ------------------------------------------------------------------ owner thread

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._tick = time.monotonic()
                self._maybe_retry_primary()
                if self._worker is None:
                    self._bring_up()
                    continue
                item = self._take_job(0.5)
                if item is None:
                    self._check_idle_worker()
                    continue
                self._execute(item)
                self._maybe_recycle()
        except Exception:
            log.exception("supervisor thread failed")
            raise
        finally:
            self._shutdown()

    def _take_job(self, timeout: float) -> Pending | None:
        with self._cv:
            if self._pending is None and not self._stopping.is_set():
                self._cv.wait(timeout)
            item, self._pending = self._pending, None
            return item

    def _set_mode(self, mode: Mode) -> None:
        with self._cv:
            self._mode = mode
            self._mode_since = time.monotonic()
            self._cv.notify_all()

    def _bring_up(self) -> None:
        """Wait out the backoff, then spawn a worker and load the model; a failure schedules a retry."""
        now, faults = time.monotonic(), self._faults
        if now < faults.restart_at:
            self._set_mode("backoff")
            if faults.load_error is not None:  # no model to run jobs on: fail them now, don't queue
                item = self._take_job(min(0.5, faults.restart_at - now))
                if item is not None:
                    failure = JobFailure("unavailable", f"model unavailable: {faults.load_error}")
                    self._complete(item, None, failure, time.monotonic())
            else:
                self._stopping.wait(min(0.5, faults.restart_at - now))
            return
        self._set_mode("loading")
        settings = with_providers(self._model, faults.providers)
        worker = WorkerProcess(self._ctx, settings, self._beat, self._loader, frames=self._frames)
        worker.start()
        msg = self._wait_load(worker)
        if isinstance(msg, Loaded):
            self._worker, self._info, self._worker_jobs = worker, msg.info, 0
            log.info(
                "model loaded: %s backend=%s provider=%s in %.0f ms (pid %s)",
                msg.info.name, msg.info.backend, msg.info.provider, msg.info.load_ms, msg.pid,
            )  # fmt: skip
            faults.loaded()
            self._set_mode("idle")
            return
        worker.kill()
        if self._stopping.is_set():
            return
        if isinstance(msg, LoadFailed):
            self._fault("load_failed", f"{msg.error_type}: {msg.message}", None, worker.pid)
        elif isinstance(msg, Died):
            self._fault("load_crashed", f"worker {msg.how} while loading", None, worker.pid)
        else:
            self._fault("load_timeout", f"load took over watchdog.load_timeout_s={self._wd.load_timeout_s:g}s",
                        None, worker.pid)  # fmt: skip

    def _wait_load(self, worker: WorkerProcess) -> Loaded | LoadFailed | Died | None:
        deadline = time.monotonic() + self._wd.load_timeout_s
        while not self._stopping.is_set():
            self._tick = now = time.monotonic()
            if now >= deadline:
                return None
            msg = worker.receive(min(0.1, deadline - now))
            if isinstance(msg, (Loaded, LoadFailed, Died)):
                return msg
        return None

    def _check_idle_worker(self) -> None:
        worker = self._worker
        if worker is not None and not worker.alive:
            msg = worker.receive(0)
            worker.kill()
            how = msg.how if isinstance(msg, Died) else "exited"
            self._fault("exited", f"worker {how} while idle", None, worker.pid)

    def _execute(self, item: Pending) -> None:
        worker = self._worker
        assert worker is not None
        job = item[0]
        self._current = item
        self._seq += 1
        t0 = time.monotonic()
        # Jobs are built for the first entry; a fallback entry generates with its own settings.
        limits, request = self._limits, bind(job.request, self._model) if self._at else job.request
        scale = prompt_scale(request, num_crops_of(self._model))
        if scale > 1.0:  # several frames (or more crops) prefill longer: see deadlines.py
            limits = limits.scaled(scale)
            if request.deadline_s is not None:
                extra = limits.soft_s - self._limits.soft_s
                request = dataclasses.replace(request, deadline_s=request.deadline_s + extra)
        self._watch = JobWatch(limits, self._beat, t0)
        self._set_mode("busy")
        msg = RunJob(self._seq, job.id, request, limits.soft_s)
        try:
            run = run_one(
                worker, self._beat, self._watch, msg, self._poll_s, self._set_tick, self._stop_schedule
            )
        finally:
            self._watch = None
        if not run.worker_usable:
            worker.kill()  # stalled, dead, or shutdown: it cannot be trusted with another job
            self._worker = None
        if run.fault is not None:  # accounted before the outcome returns: stats and events agree with it
            self._fault(run.fault[0], run.fault[1], job, worker.pid)
        elif run.generation is not None:
            self._faults.job_succeeded()
        self._complete(item, run.generation, run.failure, t0, worker.pid)
        if self._worker is not None:
            self._worker_jobs += 1
            self._set_mode("idle")
        failure = run.failure
        if failure is not None and failure.error_type == "EndpointUnavailable":
            self._switch(+1, failure.message)  # a remote endpoint cannot serve: the next one takes over

    def _set_tick(self, now: float) -> None:
        self._tick = now

    def _stop_schedule(self) -> tuple[float, float] | None:
        if not self._stopping.is_set():
            return None
        grace = min(1.0, 0.2 * self._stop_budget)
        return self._stop_deadline - 2 * grace, self._stop_deadline - grace

    def _maybe_recycle(self) -> None:
        worker, wd = self._worker, self._wd
        if worker is None or self._stopping.is_set():
            return
        rss = worker.rss_mb() if (wd.max_rss_mb or wd.recycle_after_jobs) else None
        if wd.recycle_after_jobs and self._worker_jobs >= wd.recycle_after_jobs:
            reason = "jobs"
        elif wd.max_rss_mb and rss is not None and rss > wd.max_rss_mb:
            reason = "rss"
        else:
            return
        log.info(
            "recycling worker pid %s: %s (jobs=%s rss_mb=%.0f)",
            worker.pid,
            reason,
            self._worker_jobs,
            rss or 0,
        )
        self._set_mode("loading")
        worker.stop(timeout=5.0)
        self._worker = None
        self._recycles += 1
        self._emit("worker_recycled", {"reason": reason, "job_id": None, "task": None, "jobs": self._worker_jobs,
                                       "pid": worker.pid, "rss_mb": round(rss, 1) if rss else None})  # fmt: skip

    def _fault(self, reason: str, message: str, job: Job | None, pid: int | None) -> None:
        self._worker = None
        self._faults.fault(reason, message, job, pid, self._info.provider if self._info else None)
        if reason.startswith("load_") or self._faults.too_many():  # and no provider left to try
            self._switch(+1, f"{reason}: {message}")

    # ------------------------------------------------------------------ chain of endpoints

    def _describe(self, index: int) -> dict[str, Any]:
        m = self._chain[index]
        if isinstance(m, HttpModelSettings):
            return {"index": index, "backend": m.backend, "model": m.name, "url": m.url}
        return {"index": index, "backend": m.backend, "model": m.path.name if m.path else None, "url": None}

    def _switch(self, step: int, reason: str) -> bool:
        """Move to the next endpoint (step +1) or back to the first (step 0); False when there is none."""
        to = self._at + 1 if step else 0
        if to >= len(self._chain) or to == self._at or self._stopping.is_set():
            return False
        frm = self._at
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(timeout=5.0)
        self._at, self._model, self._info = to, self._chain[to], None
        self._switched_at = time.monotonic()
        self._switch_reason = None if to == 0 else reason
        self._faults = FaultTracker(self._wd, providers_of(self._model), self._emit)
        if to:
            self._faults.degraded = f"on fallback endpoint {to} ({self._model.backend}) after: {reason}"
            self._faults.degraded_kind = "fallback"
        log.warning("backend switch: endpoint %d (%s) -> %d (%s): %s",
                    frm, self._chain[frm].backend, to, self._model.backend, reason)  # fmt: skip
        self._emit("backend_switch", {"reason": reason, "job_id": None, "task": None,
                                      "from": self._describe(frm), "to": self._describe(to)})  # fmt: skip
        self._set_mode("starting")
        return True

    def _maybe_retry_primary(self) -> None:
        """On a fallback endpoint, go back to the first after retry_primary_s (between jobs)."""
        if self._at and time.monotonic() - self._switched_at >= self._chain[0].retry_primary_s:
            self._switch(0, f"retrying the first endpoint after {self._chain[0].retry_primary_s:g}s")

    def _complete(
        self,
        item: Pending,
        generation: Generation | None,
        failure: JobFailure | None,
        t0: float,
        pid: int | None = None,
    ) -> None:
        job, fut = item
        if not fut.done():
            fut.set_result(self._finish(job, generation, failure, t0, pid))
        if self._current is item:
            self._current = None

    def _finish(
        self,
        job: Job,
        generation: Generation | None,
        failure: JobFailure | None,
        t0: float,
        pid: int | None = None,
    ) -> JobOutcome:
        with self._count_lock:
            self._jobs += 1
            if failure is not None:
                self._failures += 1
        if failure is not None:
            log.warning("job %s (%s) failed: %s: %s", job.id, job.task, failure.reason, failure.message)
            self._emit("job_failed", {"reason": failure.reason, "job_id": job.id, "task": job.task,
                                      "error": failure.message})  # fmt: skip
        info = self._info
        model = ModelPayload(name=info.name, backend=info.backend, provider=info.provider) if info else None
        return JobOutcome(job.id, generation, failure, model, pid, time.monotonic() - t0)

    def _emit(self, kind: str, detail: dict[str, Any]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, detail)
        except Exception:
            log.exception("event callback failed for %s", kind)

    def _shutdown(self) -> None:
        """Every job handed to us gets an outcome, even if this thread is dying of a bug."""
        with self._cv:
            item, self._pending = self._pending, None
        for pending in (self._current, item):
            if pending is not None:
                failure = JobFailure("stopped", "supervisor stopped before the job could finish")
                self._complete(pending, None, failure, time.monotonic())
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(timeout=max(0.1, min(5.0, self._stop_deadline - time.monotonic() - 0.2)))
        self._set_mode("stopped")
