"""The view's rows as the pages read them, the filters a page is narrowed by, and what search looks in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from edge.consumer.models import HealthPayload, ResultPayload, StatePayload


def search_text(result: ResultPayload) -> str:
    """What search looks in: the caption or answer, and a structured answer's values."""
    parts = [result.text]
    if result.data is not None:
        parts.append(" ".join(_values(result.data)))
    return " ".join(p for p in parts if p)


def _values(data: Any) -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield str(key)
            yield from _values(value)
    elif isinstance(data, list):
        for value in data:
            yield from _values(value)
    elif data is not None:
        yield str(data)


@dataclass(frozen=True)
class ResultRow:
    id: str
    device: str
    boot: int
    seq: int
    camera: str
    task: str
    at: float  # captured (or published) time, epoch seconds
    text: str
    images: int  # pictures stored for it (0, 1, or an event's key frames)
    payload: str  # the result as received (JSON)

    def result(self) -> ResultPayload:
        return ResultPayload.model_validate_json(self.payload)


@dataclass(frozen=True)
class EventRow:
    id: str
    device: str
    at: float
    event: str
    reason: str
    camera: str | None
    task: str | None
    payload: str

    def detail(self) -> dict[str, Any]:
        value = json.loads(self.payload).get("detail") or {}
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class DeviceRow:
    device: str
    status: str | None  # online / offline (the retained status, the LWT)
    state: StatePayload | None
    health: HealthPayload | None
    updated: float


@dataclass(frozen=True)
class Filters:
    """What a timeline or a search is narrowed to (empty strings and None: no filter)."""

    device: str = ""
    camera: str = ""
    task: str = ""
    since: float | None = None
    until: float | None = None


NO_FILTER = Filters()  # everything: the default of every query
