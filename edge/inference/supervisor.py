"""The supervisor: runs jobs on the worker process under deadlines, and keeps a worker alive.

One owner thread does everything that touches the worker (spawn, load, send, watch, kill, recycle),
so there is one place where the worker's state changes, and PR_SET_PDEATHSIG in the child (tied to
the thread that spawned it) fires only when this supervisor is done. `submit()` hands a job to that
thread and blocks for its outcome: exactly one JobOutcome per job, never dropped, never retried.

Faults (a missed deadline, a crash, a silent exit, a failed load) kill the worker, emit an event and
restart it after an exponential backoff. Too many within the window: "degraded", and the next
provider of the fallback chain if there is one. Recycling (job count, RSS) happens between jobs.
"""

from __future__ import annotations

import contextlib
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

from edge.errors import FrameError
from edge.imageio import validate_array
from edge.inference.base import BackendInfo
from edge.inference.deadlines import JobWatch, Limits
from edge.inference.heartbeat import Heartbeat
from edge.inference.protocol import (
    FailureReason,
    JobDone,
    JobError,
    JobFailure,
    JobOutcome,
    Loaded,
    LoadFailed,
    RunJob,
)
from edge.inference.restart_policy import RestartPolicy
from edge.inference.worker import DEFAULT_LOADER, Died, WorkerProcess
from edge.messages import Generation, Job, ModelRef
from edge.settings import ModelSettings, WatchdogSettings

log = logging.getLogger(__name__)

EventCallback = Callable[[str, dict[str, Any]], None]
State = Literal["loading", "ok", "degraded", "stopped"]
Mode = Literal["starting", "loading", "backoff", "idle", "busy", "stopped"]
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


class Supervisor:
    def __init__(
        self,
        model: ModelSettings,
        watchdog: WatchdogSettings,
        on_event: EventCallback | None = None,
        *,
        loader: str = DEFAULT_LOADER,
        poll_s: float = 0.05,
    ) -> None:
        self._model = model
        self._wd = watchdog
        self._limits = Limits.from_settings(watchdog)
        self._on_event = on_event
        self._loader = loader
        self._poll_s = poll_s
        self._ctx = multiprocessing.get_context("spawn")
        self._beat = Heartbeat(self._ctx)
        self._policy = RestartPolicy(
            watchdog.max_restarts,
            watchdog.restart_window_s,
            watchdog.backoff_initial_s,
            watchdog.backoff_max_s,
        )
        self._providers = list(model.providers)
        self._cv = threading.Condition()
        self._submit_lock = threading.Lock()
        self._pending: tuple[Job, Future[JobOutcome]] | None = None
        self._stopping = threading.Event()
        self._stop_deadline = float("inf")
        self._thread: threading.Thread | None = None
        self._worker: WorkerProcess | None = None
        self._info: BackendInfo | None = None
        self._load_error: str | None = None
        self._degraded: str | None = None
        self._degraded_kind: Literal["load", "restarts", "fallback"] | None = None
        self._restart_at = 0.0
        self._mode: Mode = "starting"
        self._mode_since = time.monotonic()
        self._tick = self._mode_since
        self._watch: JobWatch | None = None
        self._seq = 0
        self._worker_jobs = 0
        self._jobs = self._failures = self._restarts = self._recycles = 0
        self._ever_loaded = False

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        """Start the owner thread, which spawns the worker and loads the model in the background."""
        if self._thread is not None:
            raise RuntimeError("supervisor already started")
        self._thread = threading.Thread(target=self._run, name="edge-supervisor", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """True once a worker has loaded; False on timeout, a failed load, or stop."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                if self._worker is not None and self._mode in ("idle", "busy"):
                    return True
                left = deadline - time.monotonic()
                if self._load_error is not None or self._stopping.is_set() or left <= 0:
                    return False
                self._cv.wait(min(left, 0.2))

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
            return self._finish(job, None, JobFailure("invalid_request", str(err), "FrameError"), t0, None)
        with self._submit_lock:
            fut: Future[JobOutcome] = Future()
            with self._cv:
                if self._thread is None or self._stopping.is_set():
                    return self._finish(
                        job, None, JobFailure("stopped", "supervisor is not running"), t0, None
                    )
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
        worker, info, watch = self._worker, self._info, self._watch
        now = time.monotonic()
        if self._mode == "stopped":
            state: State = "stopped"
        elif self._degraded is not None:
            state = "degraded"
        elif not self._ever_loaded:
            state = "loading"
        else:
            state = "ok"
        return SupervisorStats(
            state=state,
            degraded_reason=self._degraded,
            mode=self._mode,
            phase=self._beat.phase if worker is not None else "stopped",
            jobs=self._jobs,
            failures=self._failures,
            restarts=self._restarts,
            recycles=self._recycles,
            provider=info.provider if info else None,
            backend=info.backend if info else None,
            model=info.name if info else None,
            worker_pid=worker.pid if worker is not None else None,
            worker_rss_mb=worker.rss_mb() if worker is not None else None,
            last_heartbeat_age_s=(now - watch.last_change) if watch is not None else None,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Let the running job finish (or hit its deadline) within `timeout`, then stop the worker.

        Bounded: near the end of `timeout` the job is cancelled, then killed; its outcome is still
        delivered (partial text, or a "stopped" failure).
        """
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
                    _kill_pid(worker.pid)
                thread.join(2.0)
        self._set_mode("stopped")

    # ------------------------------------------------------------------ owner thread

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._tick = time.monotonic()
                if self._worker is None:
                    self._bring_up()
                    continue
                item = self._take_job(0.5)
                if item is None:
                    self._check_idle_worker()
                    continue
                self._execute(*item)
                self._maybe_recycle()
        except Exception:
            log.exception("supervisor thread failed")
            raise
        finally:
            self._shutdown()

    def _take_job(self, timeout: float) -> tuple[Job, Future[JobOutcome]] | None:
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
        now = time.monotonic()
        if now < self._restart_at:
            self._set_mode("backoff")
            if self._load_error is not None:  # no model to run jobs on: fail them now, don't queue
                item = self._take_job(min(0.5, self._restart_at - now))
                if item is not None:
                    self._complete(
                        item, None, JobFailure("unavailable", f"model unavailable: {self._load_error}")
                    )
            else:
                self._stopping.wait(min(0.5, self._restart_at - now))
            return
        self._set_mode("loading")
        settings = self._model.model_copy(update={"providers": self._providers})
        worker = WorkerProcess(self._ctx, settings, self._beat, self._loader)
        worker.start()
        msg = self._wait_load(worker)
        if isinstance(msg, Loaded):
            self._on_loaded(worker, msg)
            return
        worker.kill()
        if self._stopping.is_set():
            return
        if isinstance(msg, LoadFailed):
            self._fault("load_failed", f"{msg.error_type}: {msg.message}", None, pid=worker.pid)
        elif isinstance(msg, Died):
            self._fault("load_crashed", f"worker {msg.how} while loading", None, pid=worker.pid)
        else:
            self._fault(
                "load_timeout", f"load took over watchdog.load_timeout_s={self._wd.load_timeout_s:g}s", None
            )

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

    def _on_loaded(self, worker: WorkerProcess, msg: Loaded) -> None:
        self._worker, self._info, self._worker_jobs = worker, msg.info, 0
        self._ever_loaded = True
        log.info(
            "model loaded: %s backend=%s provider=%s in %.0f ms (pid %s)",
            msg.info.name, msg.info.backend, msg.info.provider, msg.info.load_ms, msg.pid,
        )  # fmt: skip
        if self._load_error is not None:
            self._load_error = None
            if self._degraded_kind == "load":
                self._recover()
        self._set_mode("idle")

    def _check_idle_worker(self) -> None:
        worker = self._worker
        if worker is not None and not worker.alive:
            msg = worker.receive(0)
            how = msg.how if isinstance(msg, Died) else "exited"
            worker.kill()
            self._worker = None
            self._fault("exited", f"worker {how} while idle", None, pid=worker.pid)

    def _execute(self, job: Job, fut: Future[JobOutcome]) -> None:
        worker = self._worker
        assert worker is not None
        self._seq += 1
        seq = self._seq
        t0 = time.monotonic()
        watch = JobWatch(self._limits, self._beat, t0)
        self._watch = watch
        self._set_mode("busy")
        worker.send(RunJob(seq, job.id, job.request, self._limits.soft_s))
        generation: Generation | None = None
        failure: JobFailure | None = None
        fault: tuple[str, str] | None = None
        cancelled = False
        try:
            while True:
                self._tick = now = time.monotonic()
                watch.observe(now)
                miss = watch.missed(now)
                if miss is not None:
                    failure = JobFailure(
                        _as_reason(miss.reason), f"{miss.message}; worker pid {worker.pid} killed"
                    )
                    fault = (miss.reason, miss.message)
                    break
                if self._stopping.is_set():
                    grace = min(1.0, 0.2 * max(0.0, self._stop_deadline - t0))
                    if now >= self._stop_deadline - grace:
                        failure = JobFailure(
                            "stopped", "shutdown: the job did not finish in time; worker killed"
                        )
                        break
                    if not cancelled and now >= self._stop_deadline - 2 * grace:
                        self._beat.request_cancel(seq)
                        cancelled = True
                msg = worker.receive(min(self._poll_s, watch.next_deadline_in(now) + 0.001))
                if msg is None:
                    continue
                if isinstance(msg, JobDone) and msg.seq == seq:
                    generation = msg.generation
                    break
                if isinstance(msg, JobError) and msg.seq == seq:
                    failure = JobFailure(
                        "generation_error", f"{msg.error_type}: {msg.message}", msg.error_type
                    )
                    break
                if isinstance(msg, Died):
                    failure = JobFailure("crashed", f"worker {msg.how} during the job")
                    fault = ("crashed", f"worker {msg.how}")
                    break
        finally:
            self._watch = None
        if failure is not None and failure.reason != "generation_error":
            worker.kill()  # stalled, dead, or shutdown: it cannot be trusted with another job
            self._worker = None
        model = self._model_ref()
        self._complete((job, fut), generation, failure, t0, model, worker.pid)
        if fault is not None:
            self._fault(fault[0], fault[1], job, pid=worker.pid)
        elif generation is not None:
            self._policy.record_success()
        if self._worker is not None:
            self._worker_jobs += 1
            self._set_mode("idle")

    def _maybe_recycle(self) -> None:
        worker = self._worker
        if worker is None or self._stopping.is_set():
            return
        detail: dict[str, Any] = {"jobs": self._worker_jobs, "pid": worker.pid}
        rss = worker.rss_mb() if self._wd.max_rss_mb else None
        if self._wd.recycle_after_jobs and self._worker_jobs >= self._wd.recycle_after_jobs:
            reason = "jobs"
        elif rss is not None and rss > self._wd.max_rss_mb:
            reason = "rss"
        else:
            return
        detail["rss_mb"] = round(rss, 1) if rss is not None else worker.rss_mb()
        log.info(
            "recycling worker pid %s: %s (jobs=%s rss_mb=%s)", worker.pid, reason, self._worker_jobs, rss
        )
        self._set_mode("loading")
        worker.stop(timeout=5.0)
        self._worker = None
        self._recycles += 1
        self._restart_at = 0.0
        self._emit("worker_recycled", {"reason": reason, "job_id": None, "task": None, **detail})

    def _fault(self, reason: str, message: str, job: Job | None, pid: int | None = None) -> None:
        """Account a worker failure: event, backoff, and maybe degraded + provider fallback."""
        self._worker = None
        now = time.monotonic()
        self._restarts += 1
        backoff = self._policy.record_failure(now)
        self._restart_at = now + backoff
        in_window = self._policy.in_window(now)
        log.warning(
            "worker fault: %s: %s (job %s, pid %s); restart in %.2fs (%d in window)",
            reason, message, job.id if job else None, pid, backoff, in_window,
        )  # fmt: skip
        self._emit(
            "worker_restart",
            {
                "reason": reason,
                "job_id": job.id if job else None,
                "task": job.task if job else None,
                "error": message,
                "pid": pid,
                "backoff_s": round(backoff, 3),
                "restarts_in_window": in_window,
                "provider": self._info.provider if self._info else self._providers[0],
            },
        )
        if reason.startswith("load_"):
            # No model to run jobs on until a load succeeds: queued jobs fail fast as "unavailable".
            self._load_error = message
            if self._degraded is None:
                self._degrade("load", f"load failed: {message}")
            if reason == "load_failed":
                return  # every provider was tried and refused: a structured error, not instability
        if self._policy.exceeded(now):
            if self._degraded is None:
                self._degrade(
                    "restarts", f"{in_window} worker restarts within {self._wd.restart_window_s:g}s"
                )
            self._fallback()

    def _fallback(self) -> None:
        current = self._info.provider if self._info else self._providers[0]
        lowered = [p.lower() for p in self._providers]
        idx = lowered.index(current.lower()) if current.lower() in lowered else 0
        rest = self._providers[idx + 1 :]
        if not rest:
            return
        log.warning("provider fallback: %s -> %s", current, rest[0])
        self._providers = rest
        self._policy.reset_window()
        self._degraded = f"running on fallback provider {rest[0]} after failures on {current}"
        self._degraded_kind = "fallback"
        self._emit("provider_fallback", {"reason": f"too many restarts on {current}", "job_id": None,
                                         "task": None, "from": current, "to": rest[0]})  # fmt: skip

    def _degrade(self, kind: Literal["load", "restarts", "fallback"], why: str) -> None:
        self._degraded, self._degraded_kind = why, kind
        log.error("generator degraded: %s", why)
        self._emit(
            "degraded", {"reason": why, "job_id": None, "task": None, "providers": list(self._providers)}
        )

    def _recover(self) -> None:
        was, self._degraded, self._degraded_kind = self._degraded, None, None
        log.info("generator recovered (was: %s)", was)
        self._emit("recovered", {"reason": f"was: {was}", "job_id": None, "task": None})

    def _complete(
        self,
        item: tuple[Job, Future[JobOutcome]],
        generation: Generation | None,
        failure: JobFailure | None,
        t0: float | None = None,
        model: ModelRef | None = None,
        pid: int | None = None,
    ) -> None:
        job, fut = item
        outcome = self._finish(job, generation, failure, time.monotonic() if t0 is None else t0, model, pid)
        fut.set_result(outcome)
        if outcome.ok and self._degraded_kind == "restarts" and not self._policy.exceeded(time.monotonic()):
            self._recover()

    def _finish(
        self,
        job: Job,
        generation: Generation | None,
        failure: JobFailure | None,
        t0: float,
        model: ModelRef | None,
        pid: int | None = None,
    ) -> JobOutcome:
        self._jobs += 1
        if failure is not None:
            self._failures += 1
            log.warning("job %s (%s) failed: %s: %s", job.id, job.task, failure.reason, failure.message)
            self._emit("job_failed", {"reason": failure.reason, "job_id": job.id, "task": job.task,
                                      "error": failure.message})  # fmt: skip
        return JobOutcome(job.id, generation, failure, model, pid, time.monotonic() - t0)

    def _model_ref(self) -> ModelRef | None:
        info = self._info
        return ModelRef(info.name, info.backend, info.provider) if info else None

    def _emit(self, kind: str, detail: dict[str, Any]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, detail)
        except Exception:
            log.exception("event callback failed for %s", kind)

    def _shutdown(self) -> None:
        with self._cv:
            item, self._pending = self._pending, None
        if item is not None:
            self._complete(item, None, JobFailure("stopped", "supervisor stopped before the job started"))
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(timeout=max(0.1, min(5.0, self._stop_deadline - time.monotonic() - 0.2)))
        self._set_mode("stopped")


def _as_reason(reason: str) -> FailureReason:
    assert reason in ("first_token_timeout", "token_timeout", "total_timeout")
    return reason  # type: ignore[return-value]


def _kill_pid(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
