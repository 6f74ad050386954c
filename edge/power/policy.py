"""How scheduled work gives way to heat and to the clock, as pure logic fed with readings.

- Heat: at or above `hot_c` the board is hot until it is below `cool_c` (hysteresis, so a board
  hovering at the threshold does not flap); while hot, interval tasks run `stretch` times less often.
  Motion and event tasks keep running (they answer something happening) and commands are always
  answered: only the clock-driven load is shed.
- `active_hours`: outside the local-time window scheduled tasks (interval, motion, event) pause;
  commands and serial triggers are still served. A camera on a battery that sees nothing at night
  should not spend the night's charge on captions of darkness.
- Firmware flags (throttled, under-voltage) are reported, with an event when each starts and stops;
  they do not change the schedule by themselves (a hot board is throttled; under-voltage is a supply
  problem that slowing down does not fix).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.config.settings import PowerSettings
from edge.core.kinds import EventKind
from edge.power.sensors import BoardReading


@dataclass(frozen=True)
class PowerChange:
    """A transition worth an event."""

    event: EventKind
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


def inside(window: tuple[int, int], minute: int) -> bool:
    """Is `minute` (after local midnight) in [start, end)? A window may wrap past midnight."""
    start, end = window
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


class PowerPolicy:
    def __init__(
        self,
        settings: PowerSettings,
        *,
        localtime: Callable[[float], time.struct_time] = time.localtime,
    ) -> None:
        self.settings = settings
        self._localtime = localtime
        self.reading: BoardReading | None = None
        self.hot: bool | None = None if settings.hot_c is None else False
        self.active: bool | None = None if settings.window is None else True
        self.throttled: bool | None = None
        self.under_voltage: bool | None = None
        self.hot_episodes = 0
        self.inactive_episodes = 0

    @property
    def interval_factor(self) -> float:
        return self.settings.stretch if self.hot else 1.0

    @property
    def paused(self) -> bool:
        return self.active is False

    def update(self, reading: BoardReading, now: float) -> list[PowerChange]:
        """Take a reading (and the wall clock, for active_hours); the transitions it caused."""
        s = self.settings
        self.reading = reading
        changes: list[PowerChange] = []
        temp = reading.temperature_c
        detail = {"temperature_c": temp, "zone": reading.zone}
        if s.hot_c is not None and temp is not None:
            cool = s.cool_threshold
            assert cool is not None
            if not self.hot and temp >= s.hot_c:
                self.hot = True
                self.hot_episodes += 1
                changes.append(
                    PowerChange(
                        "hot_start",
                        f"{temp:.1f} °C >= hot_c {s.hot_c:g}: interval tasks run {s.stretch:g}x less often",
                        {**detail, "hot_c": s.hot_c, "cool_c": cool, "stretch": s.stretch},
                    )
                )
            elif self.hot and temp < cool:
                self.hot = False
                changes.append(
                    PowerChange(
                        "hot_end",
                        f"{temp:.1f} °C < cool_c {cool:g}: intervals back to normal",
                        {**detail, "hot_c": s.hot_c, "cool_c": cool},
                    )
                )
        flags = {"flags": f"0x{reading.flags:x}" if reading.flags is not None else None, **detail}
        changes += self._flag("throttled", reading.throttled, "the firmware throttles the CPU", flags)
        changes += self._flag("under_voltage", reading.under_voltage, "the supply voltage is too low", flags)
        window = s.window
        if window is not None:
            lt = self._localtime(now)
            active = inside(window, lt.tm_hour * 60 + lt.tm_min)
            if active != self.active:
                self.active = active
                if not active:
                    self.inactive_episodes += 1
                changes.append(
                    PowerChange(
                        "inactive_end" if active else "inactive_start",
                        f"active_hours {s.active_hours}: scheduled tasks "
                        + ("resume" if active else "pause until the window opens"),
                        {"active_hours": s.active_hours, "local_time": time.strftime("%H:%M", lt)},
                    )
                )
        return changes

    def _flag(self, name: str, now: bool | None, words: str, detail: dict[str, Any]) -> list[PowerChange]:
        was = getattr(self, name)
        if now is None or now == bool(was):
            if now is not None:
                setattr(self, name, now)
            return []
        setattr(self, name, now)
        kind: EventKind = f"{name}_start" if now else f"{name}_end"  # type: ignore[assignment]
        return [PowerChange(kind, words if now else f"no longer: {words}", detail)]
