"""What a consumer reads: the daemon's own payload models, re-exported and versioned, and a decoder
from (topic, payload) to a typed message.

The models are the ones the daemon publishes with (`edge.core.messages`), not copies, so a consumer
built on this module and the daemon cannot drift apart: a field added there is a field here. What
this module adds is the consumer's side of the versioning (`SUPPORTED`: the payload versions it
reads; a newer one is reported as such instead of as a validation error) and the topic rule in
reverse (`{prefix}/{device}/{camera}/{task}/result`, `{prefix}/{device}/event|health|state|status`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from edge.core.messages import (
    PAYLOAD_VERSION,
    RESULT_VERSION,
    CommandReply,
    EventPayload,
    HealthPayload,
    ModelPayload,
    PositionPayload,
    ResultPayload,
    StatePayload,
    StatsPayload,
)

__all__ = [
    "CONTRACT_VERSION",
    "PAYLOAD_VERSION",
    "RESULT_VERSION",
    "SUPPORTED",
    "CommandReply",
    "Delivery",
    "EventPayload",
    "HealthPayload",
    "Kind",
    "ModelPayload",
    "PositionPayload",
    "ResultId",
    "ResultPayload",
    "StatePayload",
    "StatsPayload",
    "decode",
    "parse_result_id",
]

CONTRACT_VERSION = 2
"""The MQTT contract (topics and payloads) this module reads: v2 (docs/mqtt-contract.md)."""

Kind = Literal["result", "last", "image", "event", "health", "state", "status", "reply", "command", "other"]

# payload kind -> the `v` values this library reads
SUPPORTED: dict[str, frozenset[int]] = {
    "result": frozenset({RESULT_VERSION}),
    "last": frozenset({RESULT_VERSION}),
    "event": frozenset({PAYLOAD_VERSION}),
    "health": frozenset({PAYLOAD_VERSION}),
    "state": frozenset({PAYLOAD_VERSION}),
}

_MODELS: dict[str, type[ResultPayload | EventPayload | HealthPayload | StatePayload]] = {
    "result": ResultPayload,
    "last": ResultPayload,  # the newest result again, retained: not a delivery (no tracking)
    "event": EventPayload,
    "health": HealthPayload,
    "state": StatePayload,
}


@dataclass(frozen=True)
class ResultId:
    """A result id, `<device>-<boot>-<seq>` (device ids may contain '-': split from the right)."""

    device: str
    boot: int
    seq: int


def parse_result_id(value: str) -> ResultId | None:
    device, sep, rest = value.rpartition("-")
    if not sep:
        return None
    device, sep, boot = device.rpartition("-")
    if not sep or not device or not boot.isdigit() or not rest.isdigit():
        return None
    return ResultId(device, int(boot), int(rest))


@dataclass(frozen=True)
class Delivery:
    """One received message, classified by its topic and, for JSON kinds, validated.

    `payload` is the model for result/event/health/state, "online"/"offline" for status, None
    otherwise; `error` says why a message of a known kind could not be read (then payload is None).
    """

    topic: str
    kind: Kind
    device: str | None
    camera: str | None = None
    task: str | None = None
    payload: ResultPayload | EventPayload | HealthPayload | StatePayload | str | None = None
    error: str | None = None
    raw: bytes = b""
    received_at: float = 0.0  # wall clock, set by the subscriber

    @property
    def result(self) -> ResultPayload | None:
        """A delivered result (kind `result`); the retained `last` copy is `last`, never counted."""
        return self.payload if self.kind == "result" and isinstance(self.payload, ResultPayload) else None

    @property
    def last(self) -> ResultPayload | None:
        return self.payload if self.kind == "last" and isinstance(self.payload, ResultPayload) else None


def classify(topic: str, prefix: str) -> tuple[Kind, str | None, str | None, str | None]:
    """(kind, device, camera, task) from a topic of the v2 contract; ('other', …) if it is not one.

    A task with a topic override publishes on `{prefix}/{device}/{a/b}/result`: still a result (the
    payload names its camera and task; the topic's levels are returned as camera/task only for the
    standard two-level form).
    """
    levels = topic.split("/")
    if len(levels) < 3 or levels[0] != prefix:
        return "other", None, None, None
    device, rest = levels[1], levels[2:]
    if len(rest) == 1 and rest[0] in ("event", "health", "state", "status"):
        return rest[0], device, None, None  # type: ignore[return-value]
    if rest[0] == "cmd":
        return "command", device, None, None
    if rest[0] == "reply":
        return "reply", device, None, None
    if len(rest) >= 2 and rest[-1] in ("result", "last", "image"):
        camera, task = (rest[0], rest[1]) if len(rest) == 3 else (None, None)
        return rest[-1], device, camera, task  # type: ignore[return-value]
    return "other", device, None, None


def decode(topic: str, payload: bytes, prefix: str = "edge", received_at: float = 0.0) -> Delivery:
    """Classify and validate one message. Never raises for bad input: `error` says what was wrong."""
    kind, device, camera, task = classify(topic, prefix)

    def out(
        value: ResultPayload | EventPayload | HealthPayload | StatePayload | str | None = None,
        error: str | None = None,
    ) -> Delivery:
        return Delivery(topic, kind, device, camera, task, value, error, payload, received_at)

    if kind == "status":
        text = payload.decode(errors="replace")
        if text in ("online", "offline"):
            return out(text)
        return out(error=f"status is neither online nor offline: {text[:40]!r}")
    model = _MODELS.get(kind)
    if model is None:
        return out()
    try:
        obj = json.loads(payload)
    except ValueError as err:
        return out(error=f"not JSON: {err}")
    v = obj.get("v") if isinstance(obj, dict) else None
    if v not in SUPPORTED[kind]:
        want = ", ".join(str(x) for x in sorted(SUPPORTED[kind]))
        return out(error=f"{kind} payload version v={v!r}; this library reads v={want}")
    try:
        return out(model.model_validate(obj))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return out(error=f"invalid {kind}: {where}: {first['msg']}")
