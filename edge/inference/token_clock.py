"""Per-token bookkeeping shared by both backends: heartbeat, cancel, soft deadline, and the stats.

`tick()` runs once per generated token inside the runtime's loop (ORT) or streamer (OpenVINO), so it
is kept to a counter, one optional callback, one Event check and one clock read: the worker's
heartbeat rides on it and the target is within 2 % of a bare loop.

`edge bench` sets EDGE_BENCH_TOKEN_TIMES (a file path) in the daemon's environment: then each token's
time is kept too, and `finish()` appends the generation's per-token decode times to that file as one
JSON line (after the clock stopped), so the bench can compare them token by token with the bare loop,
which keeps the same times the same way. Unset (always, outside the bench) it costs one `is None`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Literal

from edge.core.kinds import StopReason
from edge.core.messages import StatsPayload
from edge.inference.base import TokenCallback

Stop = Literal["deadline", "cancelled"]

TOKEN_TIMES_ENV = "EDGE_BENCH_TOKEN_TIMES"
_TOKEN_TIMES = os.environ.get(TOKEN_TIMES_ENV) or None  # read once, in the worker process


class TokenClock:
    __slots__ = ("_cancel", "_deadline", "_on_token", "_times", "n", "stopped", "t_first", "t_start", "t_end")

    def __init__(
        self,
        on_token: TokenCallback | None,
        cancel: threading.Event | None,
        deadline_s: float | None,
        t_start: float | None = None,
    ) -> None:
        self.t_start = time.perf_counter() if t_start is None else t_start
        self._on_token = on_token
        self._cancel = cancel
        self._deadline = None if deadline_s is None else self.t_start + deadline_s
        self.n = 0
        self.t_first = 0.0
        self.t_end = 0.0
        self.stopped: Stop | None = None
        self._times: list[float] | None = [] if _TOKEN_TIMES else None

    def cancelled_before_start(self) -> bool:
        if self._cancel is not None and self._cancel.is_set():
            self.stopped = "cancelled"
            return True
        return False

    def tick(self) -> Stop | None:
        """Count one token; return why generation must stop now, or None to go on."""
        if self._times is not None:
            self._times.append(time.perf_counter())
        self.n += 1
        if self.n == 1:
            self.t_first = time.perf_counter()
        if self._on_token is not None:
            self._on_token(self.n)
        if self._cancel is not None and self._cancel.is_set():
            self.stopped = "cancelled"
        elif self._deadline is not None and time.perf_counter() > self._deadline:
            self.stopped = "deadline"
        return self.stopped

    def finish(
        self, *, prompt_tokens: int, image_tokens: int, new_tokens: int, max_new_tokens: int
    ) -> StatsPayload:
        """Stats once the loop is over; eos vs max_tokens is decided from the count of new tokens."""
        self.t_end = time.perf_counter()
        reason: StopReason
        if self.stopped is not None:
            reason = self.stopped
        elif new_tokens >= max_new_tokens:
            reason = "max_tokens"
        else:
            reason = "eos"
        first = self.t_first or self.t_end
        decode_s = self.t_end - first
        steps_after_first = max(self.n - 1, 0)
        if self._times is not None and _TOKEN_TIMES:
            _append_token_times(_TOKEN_TIMES, self._times)
        return StatsPayload(
            prompt_tokens=prompt_tokens,
            image_tokens=image_tokens,
            new_tokens=new_tokens,
            ttft_ms=round((first - self.t_start) * 1000.0, 3),
            decode_tok_s=round(steps_after_first / decode_s, 2)
            if decode_s > 0 and steps_after_first
            else 0.0,
            total_ms=round((self.t_end - self.t_start) * 1000.0, 3),
            stop_reason=reason,
        )


def _append_token_times(path: str, stamps: list[float]) -> None:
    """One line per generation: the decode steps (token k to token k+1) in milliseconds, and the
    decode's window (the first and last token, perf_counter seconds: CLOCK_MONOTONIC on Linux, so the
    bench can line other processes' CPU up with it)."""
    steps = [round((b - a) * 1000.0, 4) for a, b in zip(stamps, stamps[1:], strict=False)]
    window = [stamps[0], stamps[-1]] if stamps else None
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "steps_ms": steps, "window_s": window}) + "\n")
