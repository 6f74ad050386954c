"""Data shared by every stage of the pipeline, and the MQTT payloads of contract v2 (results v2, others v1).

This module imports nothing of edge outside core (its kinds come from core/kinds), so every other
module can depend on it. Frames and jobs are frozen dataclasses (they carry numpy arrays and never
leave the process except to the worker); payloads are pydantic models because they cross the wire
and consumers validate them. A generation's stats and model are the payload types themselves, so a
result is built from them without a mirror type to copy field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge.core.kinds import (
    CameraState,
    DaemonState,
    EventKind,
    StopReason,
    StorageState,
    TaskKind,
    TriggerKind,
)

PAYLOAD_VERSION: Literal[1] = 1
# Results changed with the MQTT contract v2 (per-camera topics); the other payloads did not.
RESULT_VERSION: Literal[2] = 2


def utc_iso(ts: float) -> str:
    """Epoch seconds -> RFC 3339 UTC with milliseconds and a Z, the form every payload uses."""
    return (
        datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def iso_epoch(iso: str | None) -> float | None:
    """A payload's RFC 3339 time back to epoch seconds; None when absent or unreadable."""
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# --------------------------------------------------------------------------- in-process data


@dataclass(frozen=True)
class Frame:
    """One validated camera frame: contiguous uint8 HxWx3 BGR, as OpenCV delivers it.

    `captured_at` is wall-clock (goes into results); `monotonic` is for ages and deadlines.
    """

    image: np.ndarray
    captured_at: float
    monotonic: float
    seq: int
    camera: str = "main"

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class GenerationRequest:
    """What a backend is asked to do. Images are validated uint8 HxWx3 BGR arrays, never bytes."""

    prompt: str
    images: tuple[np.ndarray, ...] = ()
    system: str | None = None
    max_new_tokens: int = 64
    temperature: float = 0.0
    deadline_s: float | None = None  # soft: generation stops itself and returns the partial text
    json_schema: dict[str, Any] | None = None
    num_crops: int | None = None  # Phi-3.5-vision HD crops, resolved by inference.requests.bind
    task_num_crops: int | None = None  # the task's own num_crops (kept so a rebind resolves it again)


@dataclass(frozen=True)
class Generation:
    """A backend's answer: text, stats, and for schema tasks the parsed data or why it failed."""

    text: str
    stats: StatsPayload  # the contract's own type: results carry it as is (rounded)
    data: dict[str, Any] | list[Any] | None = None
    schema_error: str | None = None


@dataclass(frozen=True)
class Job:
    """A unit of work for the generator worker: one task on one frame (or none, for text tasks)."""

    id: str
    task: str
    kind: TaskKind
    trigger: TriggerKind
    request: GenerationRequest
    frame: Frame | None = None
    gate_score: float | None = None
    created: float = 0.0  # monotonic
    context: dict[str, Any] = field(default_factory=dict)  # e.g. serial trigger line, correlation


# --------------------------------------------------------------------------- MQTT payloads (v1)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StatsPayload(_Payload):
    """A generation's counts and timings: made by the backend, carried by `Generation`, published."""

    prompt_tokens: int
    image_tokens: int
    new_tokens: int
    ttft_ms: float
    decode_tok_s: float
    total_ms: float
    stop_reason: StopReason


class ModelPayload(_Payload):
    """Which model produced a result; the supervisor names it (providers change on fallback)."""

    name: str
    backend: str
    provider: str


class PositionPayload(_Payload):
    lat: float
    lon: float
    fix: int
    alt_m: float | None = None
    sats: int | None = None
    hdop: float | None = None
    age_s: float | None = None


class FramePayload(_Payload):
    """One frame of an event result."""

    captured_at: str


class ResultPayload(_Payload):
    """`{prefix}/{device}/{camera}/{task}/result`. `id` is stable across redelivery: consumers de-duplicate on it."""

    v: Literal[2] = RESULT_VERSION
    id: str
    device: str
    camera: str
    task: str
    seq: int
    captured_at: str | None
    published_at: str
    trigger: TriggerKind
    text: str
    data: dict[str, Any] | list[Any] | None = None
    schema_error: str | None = None
    gate_score: float | None = None
    model: ModelPayload
    stats: StatsPayload
    position: PositionPayload | None = None
    context: dict[str, Any] | None = None  # e.g. {"serial_line": "..."} or {"summarized": [ids]}
    clock_synced: bool | None = None  # False: the wall clock (captured_at) was not NTP-synchronised
    frames: list[FramePayload] | None = None  # event tasks: the capture time of each frame, in order
    roi: list[int] | None = None  # [x, y, w, h] in full-frame pixels of the region described; None: all
    zone: str | None = None  # the camera's named zone the task looked at (roi is its box)


class EventPayload(_Payload):
    """`event`: faults and notable transitions; `id` makes them de-duplicable like results."""

    v: Literal[1] = PAYLOAD_VERSION
    id: str
    device: str
    at: str
    event: EventKind
    reason: str = ""
    job_id: str | None = None
    task: str | None = None
    camera: str | None = None  # the camera it is about (camera_lost, camera_back, job_failed)
    detail: dict[str, Any] = Field(default_factory=dict)


class MqttProtocolInfo(_Payload):
    """`state.mqtt`: the protocol the daemon speaks with its broker and what that costs consumers."""

    protocol: Literal["5", "3.1.1"]
    fallback: bool  # mqtt.protocol = "auto" and the broker refused MQTT 5
    lacks: list[str]  # MQTT 5 features this connection goes without; empty on 5


class LinkPayload(_Payload):
    """What the uplink carried today (local day): every byte published, and the images' fate."""

    day: str  # local date, YYYY-MM-DD
    bytes_today: int
    budget_bytes: int | None  # None: unlimited
    images_sent: int
    images_dropped: int
    images_deferred: int


class StatePayload(_Payload):
    """`state` (retained)."""

    v: Literal[1] = PAYLOAD_VERSION
    state: DaemonState
    version: str
    device: str
    model: str | None
    backend: str | None
    provider: str | None
    tasks: list[str]
    since: str
    cameras: list[str] = Field(default_factory=list)
    mqtt: MqttProtocolInfo | None = None  # filled in by the MQTT client as it publishes
    link: LinkPayload | None = None  # as of this state message (health carries it live)
    zones: dict[str, list[str]] | None = None  # camera -> its named zones (None: no camera has any)


class Percentiles(_Payload):
    p50: float | None
    p95: float | None


class CameraHealth(_Payload):
    """One camera in `health.cameras`."""

    state: CameraState
    frames: int  # valid frames the grabber put into its slot
    dropped: int  # frames overwritten before anyone took them, or refused as invalid
    gated: int  # frames the motion gate held back
    jobs_dropped: int  # scheduled jobs superseded by a newer one of the same task, or skipped
    fps: float


class HealthPayload(_Payload):
    """`health`, every health.interval_s."""

    v: Literal[1] = PAYLOAD_VERSION
    device: str
    at: str
    state: DaemonState
    uptime_s: float
    frames: int
    frames_dropped: int
    gated: int
    jobs: int
    failures: int
    restarts: int
    ttft_ms: Percentiles
    decode_tok_s: Percentiles
    outbox_depth: int
    dropped: int
    rss_mb: float
    worker_rss_mb: float | None = None
    cpu_temp_c: float | None = None
    throttled: bool | None = None
    camera: CameraState = "starting"  # the worst of the cameras: lost if any is, ok if all are
    cameras: dict[str, CameraHealth] = Field(default_factory=dict)
    storage: StorageState | None = None  # can the outbox write to its disk?
    storage_errors: int | None = None  # failed outbox writes since start
    temperature_c: float | None = None  # the board's hottest SoC zone (the heat policy's input)
    under_voltage: bool | None = None  # Raspberry Pi firmware flag, now (None: not known here)
    hot: bool | None = None  # the heat policy is stretching intervals (None: no hot_c set)
    active: bool | None = None  # inside active_hours (None: no window set)
    link: LinkPayload | None = None


class CommandReply(_Payload):
    """Reply to `cmd/{verb}`: to the MQTT 5 response topic with correlation data, else reply/{verb}."""

    v: Literal[1] = PAYLOAD_VERSION
    ok: bool
    error: str | None = None
    result: dict[str, Any] | None = None
