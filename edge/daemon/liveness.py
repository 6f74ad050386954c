"""Which of the threads the pipeline needs are alive and looping, for the systemd watchdog.

A thread that dies of a bug (or returns when it should not) leaves the rest of the process running:
MQTT answers, health goes out, and without this check WATCHDOG=1 would keep telling systemd all is
well while no result is ever produced again. Each needed thread is a named source:
an `alive` probe and, for a loop that should come round often, a `beat` (the monotonic time of its
last round) with how stale it may get. The pinger asks `problem()` before each WATCHDOG=1; any
answer withholds the ping, so systemd restarts the service after WatchdogSec.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    name: str
    alive: Callable[[], bool]
    beat: Callable[[], float] | None = None  # time.monotonic() of the loop's last round
    stale_s: float | Callable[[], float] = 30.0  # a callable when it follows reloadable settings


class Liveness:
    """A registry of liveness sources. Thread-safe; `add` under a known name replaces the source."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sources: dict[str, Source] = {}
        self._groups: dict[str, Callable[[], Mapping[str, Callable[[], bool]]]] = {}
        self._lock = threading.Lock()

    def add(
        self,
        name: str,
        alive: Callable[[], bool],
        beat: Callable[[], float] | None = None,
        stale_s: float | Callable[[], float] = 30.0,
    ) -> None:
        with self._lock:
            self._sources[name] = Source(name, alive, beat, stale_s)

    def add_each(self, prefix: str, members: Callable[[], Mapping[str, Callable[[], bool]]]) -> None:
        """A set of threads that changes at run time (one capture thread per camera, which a reload
        adds and removes): `members()` is asked at each check, each member named `{prefix}{key}`."""
        with self._lock:
            self._groups[prefix] = members

    @property
    def names(self) -> list[str]:
        with self._lock:
            groups = list(self._groups.items())
            names = list(self._sources)
        return names + [f"{prefix}{key}" for prefix, members in groups for key in members()]

    def problem(self) -> str | None:
        """The first source that is dead or stuck, in words naming it; None while all are well.

        A probe that raises counts as a problem too (a check that cannot tell is not a yes).
        """
        with self._lock:
            sources = list(self._sources.values())
            groups = list(self._groups.items())
        for prefix, members in groups:
            try:
                sources += [Source(f"{prefix}{key}", alive) for key, alive in members().items()]
            except Exception as err:
                return f"threads {prefix}*: liveness check failed: {err!r}"
        now = self._clock()
        for src in sources:
            try:
                if not src.alive():
                    return f"thread {src.name} died"
                if src.beat is not None:
                    age = now - src.beat()
                    if age > (src.stale_s() if callable(src.stale_s) else src.stale_s):
                        return f"thread {src.name} stuck for {age:.0f}s"
            except Exception as err:
                return f"thread {src.name}: liveness check failed: {err!r}"
        return None
