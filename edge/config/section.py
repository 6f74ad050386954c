"""The base every settings section shares, and the rules more than one section module uses."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from edge.core.names import check_name

MAX_PERIOD_S = 31 * 86400.0
"""Longest interval, gate period or window: a month. Beyond it a value is a typo (1e308 stopped a task)."""


def topic_name(value: str) -> str:
    """A name placed in the device's topic tree: topic-safe and not a reserved word."""
    return check_name(value)


class Section(BaseModel):
    # allow_inf_nan=False: inf or nan in any float setting is an error, never a task that stops.
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, coerce_numbers_to_str=True, allow_inf_nan=False
    )
