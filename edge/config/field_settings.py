"""The field sections: `[[alerts]]` (answers turned into an on/off state), `[link]` (a metered
uplink's daily budget) and `[power]` (the board's heat and power, and the hours scheduled work runs)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge.config.conditions import compile_condition
from edge.config.section import MAX_PERIOD_S, Section, topic_name


class AlertSettings(Section):
    """`[[alerts]]`: a yes/no over a structured task's answer, with hysteresis, as a retained state."""

    name: str
    task: str = Field(description="A structured task: `when` reads its JSON answer.")
    when: str = Field(description="JMESPath over the answer, e.g. \"length(shapes[?color=='red']) > `0`\".")
    for_s: float = Field(
        0.0, ge=0, le=MAX_PERIOD_S, description="The condition must hold this long to turn on."
    )
    clear_after_s: float = Field(
        0.0, ge=0, le=MAX_PERIOD_S, description="It must stop holding this long to turn off."
    )
    serial: bool = Field(False, description="Also write each change as a line to the serial sink.")
    webhook: str | None = Field(
        None, description="POST each change (JSON) to this http(s) URL, retried until taken."
    )
    webhook_timeout_s: float = Field(5.0, gt=0, le=300, description="Per try.")

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r}: an http:// or https:// URL")
        return v

    _name = field_validator("name")(classmethod(lambda cls, v: topic_name(v)))

    @field_validator("when")
    @classmethod
    def _when(cls, v: str) -> str:
        compile_condition(v)  # ConditionError is a ValueError: reported with the alert's key
        return v


class LinkSettings(Section):
    """A metered uplink: a daily byte budget for everything published, and how big images are.

    Results, events, replies, state and health always go out; only images wait for the budget."""

    max_mb_per_day: float = Field(
        0.0, ge=0, description="Bytes published per local day, in MB (2**20 bytes); 0 = unlimited."
    )
    reserve_kb: float | None = Field(
        None,
        ge=0,
        description="Kept for results, events and health: images stop at budget - reserve "
        "(default: a tenth of the budget).",
    )
    over_budget: Literal["drop", "defer"] = Field(
        "drop",
        description="Images beyond the budget: dropped (counted), or kept in the outbox until the next "
        "day (within its size and expiry limits).",
    )
    image_max_edge: int | None = Field(
        None, ge=64, le=8192, description="Images on the image topic are scaled to this longer edge."
    )
    image_quality: int = Field(85, ge=10, le=100, description="JPEG quality of the image topic.")

    @property
    def budget_bytes(self) -> int:
        return int(self.max_mb_per_day * 2**20)

    @property
    def reserve_bytes(self) -> int:
        if self.reserve_kb is not None:
            return int(self.reserve_kb * 1024)
        return self.budget_bytes // 10


_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class PowerSettings(Section):
    """The board's heat and power: where to read it, and how scheduled work gives way."""

    sysfs_root: Path = Field(Path("/sys"), description="Where thermal zones and firmware flags are read.")
    poll_s: float = Field(10.0, gt=0, le=3600, description="How often the board is read.")
    hot_c: float | None = Field(
        None, gt=0, le=150, description="Above this, interval tasks run `stretch` times less often."
    )
    cool_c: float | None = Field(
        None, gt=0, le=150, description="Back to normal below this (default hot_c - 5)."
    )
    stretch: float = Field(4.0, ge=1, le=1000, description="Interval factor while hot.")
    active_hours: str | None = Field(
        None, description='Local time window for scheduled tasks, e.g. "06:00-20:00" (may wrap midnight).'
    )

    @field_validator("active_hours")
    @classmethod
    def _hours(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = _HOURS.match(v.strip())
        if m is None:
            raise ValueError(f'{v!r}: expected HH:MM-HH:MM in local time, e.g. "06:00-20:00"')
        start = int(m[1]) * 60 + int(m[2])
        end = int(m[3]) * 60 + int(m[4])
        if end > 24 * 60 or start == end:
            raise ValueError(f"{v!r}: an empty window (start equals end, or past 24:00)")
        return v.strip()

    @model_validator(mode="after")
    def _cool(self) -> PowerSettings:
        if self.cool_c is not None and self.hot_c is None:
            raise ValueError("power.cool_c is set but power.hot_c is not")
        if self.hot_c is not None and self.cool_c is not None and self.cool_c >= self.hot_c:
            raise ValueError(f"power.cool_c ({self.cool_c}) must be below power.hot_c ({self.hot_c})")
        return self

    @property
    def cool_threshold(self) -> float | None:
        if self.hot_c is None:
            return None
        return self.cool_c if self.cool_c is not None else self.hot_c - 5.0

    @property
    def window(self) -> tuple[int, int] | None:
        """`active_hours` as (start, end) minutes after local midnight; end may be below start (wraps)."""
        if self.active_hours is None:
            return None
        m = _HOURS.match(self.active_hours)
        assert m is not None
        return int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
