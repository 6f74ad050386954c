"""`edge doctor`'s power line: what this board says about its heat and supply, and what the
`[power]` policy would do with it now."""

from __future__ import annotations

import time

from edge.cli.doctor.checks import CheckResult
from edge.config.settings import PowerSettings
from edge.power.policy import PowerPolicy
from edge.power.sensors import read_board


def check_power(settings: PowerSettings) -> CheckResult:
    reading = read_board(settings.sysfs_root)
    policy = PowerPolicy(settings)
    policy.update(reading, time.time())
    parts: list[str] = []
    if reading.temperature_c is None:
        parts.append(f"no thermal zone readable under {settings.sysfs_root}")
    else:
        parts.append(f"{reading.temperature_c:.1f} °C ({reading.zone}; {len(reading.zones)} zone(s))")
    if reading.flags is not None:
        parts.append(f"firmware flags 0x{reading.flags:x} from {reading.flags_source}")
    parts.append(f"throttled {_yes(reading.throttled)}, under-voltage {_yes(reading.under_voltage)}")
    if settings.hot_c is not None:
        parts.append(
            f"hot_c {settings.hot_c:g}/cool_c {settings.cool_threshold:g}: "
            + (f"HOT, intervals x{settings.stretch:g}" if policy.hot else "not hot")
        )
    if settings.active_hours is not None:
        parts.append(
            f"active_hours {settings.active_hours}: {'inside' if policy.active else 'OUTSIDE, paused'}"
        )
    detail = "; ".join(parts)
    if settings.hot_c is not None and reading.temperature_c is None:
        return CheckResult(
            "power",
            "warn",
            detail,
            f"power.hot_c cannot act without a temperature: check power.sysfs_root ({settings.sysfs_root})",
        )
    if reading.temperature_c is None and reading.flags is None and reading.under_voltage is None:
        return CheckResult("power", "skip", detail)  # not a board that reports (a VM, a container)
    if reading.under_voltage:
        return CheckResult("power", "warn", detail, "use a supply that holds its voltage under load")
    if reading.throttled or policy.hot:
        return CheckResult("power", "warn", detail, "cool the board (heatsink, fan, shade)")
    return CheckResult("power", "ok", detail)


def _yes(flag: bool | None) -> str:
    return "unknown" if flag is None else ("yes" if flag else "no")
