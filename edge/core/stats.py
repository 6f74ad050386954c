"""Counters and rolling latency percentiles: the numbers behind `health`, STATUS= and the bench.

Thread-safe and cheap: `add`/`inc` are called per job from the executor threads; percentiles are
computed once per health interval.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from edge.core.messages import Percentiles


class Rolling:
    """The last `size` samples; percentiles by sorting (size is small, the call is once a minute).

    Observers (`subscribe`) see every sample as it is added, on the adding thread: the metrics
    histograms are fed here, so there is one place a latency is recorded.
    """

    def __init__(self, size: int = 256) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._observers: tuple[Callable[[float], object], ...] = ()

    def subscribe(self, observer: Callable[[float], object]) -> None:
        with self._lock:
            self._observers = (*self._observers, observer)

    def add(self, value: float) -> None:
        with self._lock:
            self._values.append(value)
            observers = self._observers
        for observe in observers:
            observe(value)

    def percentiles(self) -> Percentiles:
        with self._lock:
            values = list(self._values)
        p50, p95 = percentile(values, 0.50), percentile(values, 0.95)
        return Percentiles(
            p50=None if p50 is None else round(p50, 2), p95=None if p95 is None else round(p95, 2)
        )


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of unsorted values; None for none.

    The one definition behind health, the outbox's PUBACK latency and `edge bench`, so the numbers
    they report for the same samples agree. Nearest rank returns a value that was measured.
    """
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


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
