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


Labels = tuple[str, str]  # (task, camera)


class ByTask:
    """Counts and timings per (task, camera): the labels a fleet operator filters the metrics by.

    `health` stays device-wide (its payload is the contract); this is read only by the metrics
    endpoint, whose labelled counters are built from `counts()` at scrape time and whose labelled
    histograms subscribe to `observe` samples, as the device-wide ones subscribe to `Rolling`.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()
        self._observers: tuple[Callable[[str, Labels, float], object], ...] = ()

    def inc(self, what: str, task: str, camera: str) -> None:
        with self._lock:
            key = (what, task, camera)
            self._counts[key] = self._counts.get(key, 0) + 1

    def observe(self, what: str, task: str, camera: str, value_ms: float) -> None:
        with self._lock:
            observers = self._observers
        for observer in observers:
            observer(what, (task, camera), value_ms)

    def subscribe(self, observer: Callable[[str, Labels, float], object]) -> None:
        with self._lock:
            self._observers = (*self._observers, observer)

    def counts(self, what: str) -> dict[Labels, int]:
        with self._lock:
            return {(t, c): n for (w, t, c), n in self._counts.items() if w == what}
