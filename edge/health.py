"""Counters, rolling latency percentiles, temperatures and RSS: the numbers behind `health` and STATUS=.

Reading /sys is cheap and done once per health interval, never per frame.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import psutil

from edge.messages import Percentiles

# Zone types that measure the SoC/CPU on the boards we support (Pi, Jetson, x86, Qualcomm).
_CPU_ZONES = ("cpu-thermal", "cpu_thermal", "x86_pkg_temp", "cpu", "soc_thermal", "tj-thermal", "cpu-therm")


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


def cpu_temp_c(root: Path = Path("/")) -> float | None:
    """The CPU/SoC temperature from sysfs thermal zones, or None where none is readable."""
    zones = sorted((root / "sys/class/thermal").glob("thermal_zone*"))
    readings: list[tuple[int, float]] = []
    for zone in zones:
        try:
            kind = (zone / "type").read_text().strip().lower()
            milli = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        rank = _CPU_ZONES.index(kind) if kind in _CPU_ZONES else len(_CPU_ZONES)
        readings.append((rank, milli / 1000.0))
    if not readings:
        return None
    return round(min(readings)[1], 1)


def pi_throttled() -> bool | None:
    """Raspberry Pi firmware's throttling flags (under-voltage, thermal) via vcgencmd, where present."""
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "get_throttled"], capture_output=True, text=True, timeout=2).stdout
        return int(out.strip().split("=")[1], 16) & 0xF != 0
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def rss_mb(pid: int | None = None) -> float:
    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1)
    except (psutil.Error, ValueError):
        return 0.0
