"""The board's own health: CPU temperature, Raspberry Pi throttling, process RSS.

Reading /sys is cheap and done once per health interval, never per frame.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psutil

# Zone types that measure the SoC/CPU on the boards we support (Pi, Jetson, x86, Qualcomm).
_CPU_ZONES = ("cpu-thermal", "cpu_thermal", "x86_pkg_temp", "cpu", "soc_thermal", "tj-thermal", "cpu-therm")


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
        rss: int = psutil.Process(pid).memory_info().rss
        return round(rss / 2**20, 1)
    except (psutil.Error, ValueError):
        return 0.0
