"""What the board says about its heat and power, read from sysfs (and `vcgencmd` on a Pi without the
sysfs file).

- Temperature: `class/thermal/thermal_zone*/{type,temp}` (millidegrees). The hottest SoC-like zone
  (CPU, SoC, GPU, Jetson's tj/junction, x86 package) is the board's temperature; PMIC zones are left
  out (a Jetson's PMIC-Die reads a constant 100 °C). With no SoC-like zone, the hottest of the rest.
- Raspberry Pi firmware flags (`get_throttled`): the firmware driver's sysfs file, else
  `vcgencmd get_throttled`. Bit 0 under-voltage now, bits 1-3 frequency capped, throttled, soft
  temperature limit now. The `rpi_volt` hwmon's `in0_lcrit_alarm` also says under-voltage.

`root` is a setting (`[power] sysfs_root`), so tests point it at a fake tree that they change while
the daemon runs. Reading is a few small files, done once per `[power] poll_s`.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SOC_HINTS = ("cpu", "soc", "gpu", "tj", "junction", "x86_pkg", "package", "core")
IGNORED_HINTS = ("pmic",)
THROTTLED_FILES = (
    "devices/platform/soc/soc:firmware/get_throttled",
    "devices/platform/scb/soc:firmware/get_throttled",
    "devices/platform/axi/axi:firmware/get_throttled",
)
UNDER_VOLTAGE_NOW = 0x1
THROTTLED_NOW = 0x2 | 0x4 | 0x8  # frequency capped, throttled, soft temperature limit


@dataclass(frozen=True)
class BoardReading:
    temperature_c: float | None
    zone: str | None  # the zone type it came from
    zones: dict[str, float] = field(default_factory=dict)  # every readable zone: "thermal_zoneN type" -> °C
    throttled: bool | None = None
    under_voltage: bool | None = None
    flags: int | None = None  # the firmware's raw get_throttled value
    flags_source: str | None = None  # the file or command it came from


def read_zones(root: Path) -> dict[str, tuple[str, float]]:
    """thermal_zoneN -> (type, °C) for every zone that reads as a sane temperature."""
    out: dict[str, tuple[str, float]] = {}
    for zone in sorted((root / "class/thermal").glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text().strip()
            milli = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        celsius = milli / 1000.0
        if -60.0 <= celsius <= 200.0:
            out[zone.name] = (kind, round(celsius, 1))
    return out


def board_temperature(zones: dict[str, tuple[str, float]]) -> tuple[float | None, str | None]:
    usable = {n: (k, c) for n, (k, c) in zones.items() if not any(h in k.lower() for h in IGNORED_HINTS)}
    soc = {n: v for n, v in usable.items() if any(h in v[0].lower() for h in SOC_HINTS)}
    pool = soc or usable
    if not pool:
        return None, None
    kind, celsius = max(pool.values(), key=lambda v: v[1])
    return celsius, kind


def firmware_flags(root: Path, *, vcgencmd: bool) -> tuple[int | None, str | None]:
    for rel in THROTTLED_FILES:
        path = root / rel
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        try:
            return int(text, 16), str(path)
        except ValueError:
            continue
    if vcgencmd:
        exe = shutil.which("vcgencmd")
        if exe is not None:
            try:
                out = subprocess.run([exe, "get_throttled"], capture_output=True, text=True, timeout=2).stdout
                return int(out.strip().split("=")[1], 16), "vcgencmd get_throttled"
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return None, None
    return None, None


def hwmon_under_voltage(root: Path) -> bool | None:
    for hw in sorted((root / "class/hwmon").glob("hwmon*")):
        try:
            if (hw / "name").read_text().strip() != "rpi_volt":
                continue
            return (hw / "in0_lcrit_alarm").read_text().strip() not in ("", "0")
        except OSError:
            continue
    return None


def read_board(root: Path) -> BoardReading:
    """One reading of the board under `root` (`/sys` on a real one). `vcgencmd` is asked only for
    the real /sys, never for a fake tree."""
    zones = read_zones(root)
    temp, kind = board_temperature(zones)
    flags, source = firmware_flags(root, vcgencmd=root == Path("/sys"))
    under = hwmon_under_voltage(root)
    throttled = None
    if flags is not None:
        throttled = bool(flags & THROTTLED_NOW)
        under = bool(flags & UNDER_VOLTAGE_NOW) or bool(under)
    return BoardReading(
        temperature_c=temp,
        zone=kind,
        zones={f"{n} {k}": c for n, (k, c) in zones.items()},
        throttled=throttled,
        under_voltage=under,
        flags=flags,
        flags_source=source,
    )
