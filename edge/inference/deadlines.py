"""Deadline bookkeeping for the one running job, from the shared heartbeat counter.

The supervisor polls `observe()` a few times a second; the worker never sends anything per token.
"When did the counter last move" is measured on the supervisor's clock, so no cross-process clock is
assumed. `healthy()` is what the systemd watchdog pinger asks (from another thread).

Deadlines scale with the prompt: watchdog.first_token_s is sized for one frame, and an event's N
frames (or a task with more crops) prefill longer, so each job's limits are `Limits.scaled` by
`prompt_scale(request)`: first_token_s x the ratio of the request's image tokens to one frame's, with
the soft and total limits moved by the same extra prefill time.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.config.settings import WatchdogSettings
from edge.core.messages import GenerationRequest
from edge.inference.heartbeat import Heartbeat
from edge.inference.phi3v_preprocess import tokens_for_frame


@dataclass(frozen=True)
class Limits:
    first_token_s: float  # prefill incl. image, from job start to the first beat
    token_s: float  # between two beats
    total_s: float  # the whole job, hard
    soft_s: float  # the worker stops itself here and returns partial text

    @classmethod
    def from_settings(cls, w: WatchdogSettings) -> Limits:
        return cls(w.first_token_s, w.token_s, w.total_s, w.generation_s)

    def scaled(self, factor: float) -> Limits:
        """Limits for a prompt `factor` times the prefill of the single-frame prompt the settings are
        sized for: the first-token deadline is multiplied, and the soft and total limits are moved
        by the same extra prefill time (decode is unchanged, so token_s is too)."""
        if factor <= 1.0:
            return self
        extra = self.first_token_s * (factor - 1.0)
        return Limits(self.first_token_s * factor, self.token_s, self.total_s + extra, self.soft_s + extra)


def prompt_scale(request: GenerationRequest, model_num_crops: int) -> float:
    """How many single-frame prefills a request is worth (>= 1), for `Limits.scaled`.

    watchdog.first_token_s is sized for one frame at model.num_crops. A request's images cost
    tokens(num_crops) each (the Phi-3.5 HD formula, the same for both local backends), so the scale
    is its image tokens over those of one of its frames at the model's num_crops: a 4-frame event at
    the same num_crops is 4x, the same event at num_crops 1 (313 tokens each for 640x480, against 757
    at 4) about 1.65x. The vision encoder's work grows with crops like the tokens, so one ratio serves
    both. Text-only requests are 1x; a frame whose size the formula refuses counts as one frame.
    """
    images = request.images
    crops = request.num_crops or model_num_crops  # bound requests carry it; a bare one means the model's
    if len(images) <= 1 and crops <= model_num_crops:
        return 1.0
    try:
        h, w = int(images[0].shape[0]), int(images[0].shape[1])
        base = tokens_for_frame(h, w, model_num_crops)
        total = sum(tokens_for_frame(int(i.shape[0]), int(i.shape[1]), crops) for i in images)
    except (ValueError, IndexError, AttributeError, ZeroDivisionError):
        return float(max(1, len(images)))
    return max(1.0, total / base)


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
