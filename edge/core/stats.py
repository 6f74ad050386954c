"""Counters and rolling latency percentiles: the numbers behind `health`, STATUS= and the bench.

Thread-safe and cheap: `add`/`inc` are called per job from the executor threads; percentiles are
computed once per health interval.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

from edge.core.messages import Percentiles


class Rolling:
    """The last `size` samples; percentiles by sorting (size is small, the call is once a minute)."""

    def __init__(self, size: int = 256) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._values.append(value)

    def percentiles(self) -> Percentiles:
        with self._lock:
            values = sorted(self._values)
        if not values:
            return Percentiles(p50=None, p95=None)
        return Percentiles(p50=round(_pick(values, 0.50), 2), p95=round(_pick(values, 0.95), 2))


def _pick(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class Counters:
    """Monotonic event counts shared between threads."""

    def __init__(self, names: Iterable[str]) -> None:
        self._counts = dict.fromkeys(names, 0)
        self._lock = threading.Lock()

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
