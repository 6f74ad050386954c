"""When to restart a failed worker, and when to give up on a provider: pure logic, no processes.

Backoff doubles with each consecutive failure (a corrupt model or a crash-on-every-job model must not
spin) and resets only after a job succeeds. Failures are also counted in a sliding window: more than
`max_restarts` inside `restart_window_s` means this provider is not working.
"""

from __future__ import annotations

from collections import deque


class RestartPolicy:
    def __init__(
        self, max_restarts: int, window_s: float, backoff_initial_s: float, backoff_max_s: float
    ) -> None:
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._failures: deque[float] = deque()
        self._consecutive = 0

    def record_failure(self, now: float) -> float:
        """Count a failure at `now`; return how long to wait before the next start."""
        self._failures.append(now)
        self._trim(now)
        self._consecutive += 1
        return self.backoff_s

    def record_success(self) -> None:
        """A job completed: the worker works, so the next failure starts from the initial backoff."""
        self._consecutive = 0

    @property
    def backoff_s(self) -> float:
        if self._consecutive == 0:
            return 0.0
        exp = min(self._consecutive - 1, 30)  # 2**30 s is past any sane backoff_max_s
        return min(self.backoff_initial_s * (2.0**exp), self.backoff_max_s)

    @property
    def consecutive(self) -> int:
        return self._consecutive

    def in_window(self, now: float) -> int:
        self._trim(now)
        return len(self._failures)

    def exceeded(self, now: float) -> bool:
        return self.in_window(now) > self.max_restarts

    def reset_window(self) -> None:
        """A new provider gets a fresh budget."""
        self._failures.clear()

    def _trim(self, now: float) -> None:
        while self._failures and now - self._failures[0] > self.window_s:
            self._failures.popleft()
