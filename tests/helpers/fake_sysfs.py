"""A fake /sys tree a test writes and changes while the daemon reads it: thermal zones, the
Raspberry Pi firmware's get_throttled file and the rpi_volt hwmon."""

from __future__ import annotations

import os
from pathlib import Path

THROTTLED = "devices/platform/soc/soc:firmware/get_throttled"


class FakeSysfs:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _write(self, rel: str, text: str) -> None:
        """Atomic, like sysfs: a reader never sees half a value."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def zone(self, n: int, kind: str, celsius: float) -> None:
        self._write(f"class/thermal/thermal_zone{n}/type", kind + "\n")
        self._write(f"class/thermal/thermal_zone{n}/temp", f"{round(celsius * 1000)}\n")

    def throttled(self, flags: int) -> None:
        """The firmware driver prints the value in hex without 0x."""
        self._write(THROTTLED, f"{flags:x}\n")

    def rpi_volt(self, alarm: bool, n: int = 1) -> None:
        self._write(f"class/hwmon/hwmon{n}/name", "rpi_volt\n")
        self._write(f"class/hwmon/hwmon{n}/in0_lcrit_alarm", "1\n" if alarm else "0\n")
