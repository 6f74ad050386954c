"""What a worker failure means for the generator: restart delay, degraded state, provider fallback.

Kept apart from the process handling so the rules are in one place: every fault is an event and a
backoff (a corrupt model or a crash-on-every-job model must not spin); a failed load leaves no model
to run jobs on ("degraded", jobs fail fast) until a load succeeds ("recovered"); more than
max_restarts inside restart_window_s is "degraded" too, and moves to the next provider of the
configured fallback chain if there is one (e.g. qnn -> cpu), for good.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from edge.config.settings import WatchdogSettings
from edge.inference.restart_policy import RestartPolicy

log = logging.getLogger(__name__)

EventCallback = Callable[[str, dict[str, Any]], None]
DegradedKind = Literal["load", "restarts", "fallback"]


class FaultTracker:
    """Restart accounting and degraded state for one supervisor; called from its owner thread only."""

    def __init__(self, watchdog: WatchdogSettings, providers: list[str], emit: EventCallback) -> None:
        self._wd = watchdog
        self._policy = RestartPolicy(
            watchdog.max_restarts,
            watchdog.restart_window_s,
            watchdog.backoff_initial_s,
            watchdog.backoff_max_s,
        )
        self._emit = emit
        self.providers = list(providers)  # the chain still to use; [0] is tried first
        self.degraded: str | None = None
        self.degraded_kind: DegradedKind | None = None
        self.load_error: str | None = None  # set while no model could be loaded
        self.restarts = 0
        self.restart_at = 0.0  # monotonic time before which no worker is spawned

    def fault(self, reason: str, message: str, job: Any, pid: int | None, provider: str | None) -> float:
        """Account one failure; return the backoff before the next start."""
        now = time.monotonic()
        self.restarts += 1
        backoff = self._policy.record_failure(now)
        self.restart_at = now + backoff
        in_window = self._policy.in_window(now)
        job_id, task = (job.id, job.task) if job is not None else (None, None)
        log.warning(
            "worker fault: %s: %s (job %s, pid %s); restart in %.2fs (%d in window)",
            reason, message, job_id, pid, backoff, in_window,
        )  # fmt: skip
        self._emit("worker_restart", {
            "reason": reason, "job_id": job_id, "task": task, "error": message, "pid": pid,
            "backoff_s": round(backoff, 3), "restarts_in_window": in_window,
            "provider": provider or self.providers[0],
        })  # fmt: skip
        if reason.startswith("load_"):
            self.load_error = message  # queued jobs now fail fast as "unavailable"
            if self.degraded is None:
                self._degrade("load", f"load failed: {message}")
            if reason == "load_failed":
                return backoff  # every provider was tried and refused: not instability
        if self._policy.exceeded(now):
            if self.degraded is None:
                self._degrade(
                    "restarts", f"{in_window} worker restarts within {self._wd.restart_window_s:g}s"
                )
            self._fallback(provider or self.providers[0])
        return backoff

    def too_many(self) -> bool:
        """More restarts in the window than allowed, with no provider left to fall back to."""
        return self._policy.exceeded(time.monotonic())

    def loaded(self) -> None:
        if self.load_error is not None:
            self.load_error = None
            if self.degraded_kind == "load":
                self._recover()

    def job_succeeded(self) -> None:
        self._policy.record_success()
        if self.degraded_kind == "restarts" and not self._policy.exceeded(time.monotonic()):
            self._recover()

    def _fallback(self, current: str) -> None:
        lowered = [p.lower() for p in self.providers]
        idx = lowered.index(current.lower()) if current.lower() in lowered else 0
        rest = self.providers[idx + 1 :]
        if not rest:
            return
        log.warning("provider fallback: %s -> %s", current, rest[0])
        self.providers = rest
        self._policy.reset_window()
        self.degraded = f"running on fallback provider {rest[0]} after failures on {current}"
        self.degraded_kind = "fallback"
        self._emit("provider_fallback", {"reason": f"too many restarts on {current}", "job_id": None,
                                         "task": None, "from": current, "to": rest[0]})  # fmt: skip

    def _degrade(self, kind: DegradedKind, why: str) -> None:
        self.degraded, self.degraded_kind = why, kind
        log.error("generator degraded: %s", why)
        self._emit(
            "degraded", {"reason": why, "job_id": None, "task": None, "providers": list(self.providers)}
        )

    def _recover(self) -> None:
        was, self.degraded, self.degraded_kind = self.degraded, None, None
        log.info("generator recovered (was: %s)", was)
        self._emit("recovered", {"reason": f"was: {was}", "job_id": None, "task": None})
