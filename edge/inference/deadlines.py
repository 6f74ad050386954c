"""Deadline bookkeeping for the one running job, from the shared heartbeat counter.

The supervisor polls `observe()` a few times a second; the worker never sends anything per token.
"When did the counter last move" is measured on the supervisor's clock, so no cross-process clock is
assumed. `healthy()` is what the systemd watchdog pinger asks (from another thread).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.config.settings import WatchdogSettings
from edge.inference.heartbeat import Heartbeat


@dataclass(frozen=True)
class Limits:
    first_token_s: float  # prefill incl. image, from job start to the first beat
    token_s: float  # between two beats
    total_s: float  # the whole job, hard
    soft_s: float  # the worker stops itself here and returns partial text

    @classmethod
    def from_settings(cls, w: WatchdogSettings) -> Limits:
        return cls(w.first_token_s, w.token_s, w.total_s, w.generation_s)


@dataclass(frozen=True)
class Miss:
    reason: str  # first_token_timeout | token_timeout | total_timeout
    message: str


class JobWatch:
    def __init__(self, limits: Limits, beat: Heartbeat, now: float) -> None:
        self.limits = limits
        self._beat = beat
        self.started = now
        self.last_change = now
        self._start_beats = beat.beats
        self._last_beats = self._start_beats

    @property
    def tokens(self) -> int:
        return self._last_beats - self._start_beats

    def observe(self, now: float) -> None:
        beats = self._beat.beats
        if beats != self._last_beats:
            self._last_beats = beats
            self.last_change = now

    def missed(self, now: float) -> Miss | None:
        lim = self.limits
        elapsed = now - self.started
        if elapsed > lim.total_s:
            return Miss("total_timeout", f"job ran past watchdog.total_s={lim.total_s:g}s")
        if self.tokens == 0:
            if elapsed > lim.first_token_s:
                return Miss(
                    "first_token_timeout",
                    f"no first token within watchdog.first_token_s={lim.first_token_s:g}s (prefill stalled)",
                )
        elif now - self.last_change > lim.token_s:
            return Miss(
                "token_timeout",
                f"no token for watchdog.token_s={lim.token_s:g}s after {self.tokens} tokens (decode stalled)",
            )
        return None

    def next_deadline_in(self, now: float) -> float:
        lim = self.limits
        total = self.started + lim.total_s
        step = self.started + lim.first_token_s if self.tokens == 0 else self.last_change + lim.token_s
        return max(0.0, min(total, step) - now)

    def healthy(self, now: float, within_s: float | None = None) -> bool:
        """Heartbeating: prefill within its deadline, or a beat within `within_s` (default token_s)."""
        if now - self.started > self.limits.total_s:
            return False
        if self.tokens == 0:
            return now - self.started <= self.limits.first_token_s
        return now - self.last_change <= (self.limits.token_s if within_s is None else within_s)
