"""Turning a job's outcome into the contract's result payload, and a console line (pure functions).

The one result builder: the daemon's executor and the one-shot CLI (`edge caption --json`) both
call `build_result`, so a one-shot line is exactly what the daemon would publish. The result's `seq` and `id` are allocated by the outbox in the same transaction that stores the
result, so `build_result` runs inside that transaction and must not fail on valid input.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from edge.core.clock import clock_synchronised
from edge.core.kinds import TriggerKind
from edge.core.messages import (
    FramePayload,
    Generation,
    ModelPayload,
    PositionPayload,
    ResultPayload,
    utc_iso,
)


@dataclass(frozen=True)
class ResultInput:
    """Everything a result says except its seq and id (the outbox allocates those)."""

    device: str
    task: str
    camera: str
    trigger: TriggerKind
    generation: Generation
    model: ModelPayload
    captured_at: float | None  # the frame's wall-clock capture time; None for text-only jobs
    gate_score: float | None = None
    position: PositionPayload | None = None
    context: dict[str, Any] | None = None
    frames: tuple[float, ...] | None = None  # event: each frame's wall-clock capture time, in order
    roi: tuple[int, int, int, int] | None = None  # the region described, in frame pixels (None: all)
    zone: str | None = None  # the camera's named zone the task looked at


def build_result(item: ResultInput, seq: int, result_id: str, now: float | None = None) -> ResultPayload:
    now = time.time() if now is None else now
    g = item.generation
    s = g.stats
    return ResultPayload(
        id=result_id,
        device=item.device,
        camera=item.camera,
        task=item.task,
        seq=seq,
        captured_at=utc_iso(item.captured_at) if item.captured_at is not None else None,
        published_at=utc_iso(now),
        trigger=item.trigger,
        text=g.text,
        data=g.data,
        schema_error=g.schema_error,
        gate_score=None if item.gate_score is None else round(item.gate_score, 5),
        model=item.model,
        stats=s.model_copy(
            update={
                "ttft_ms": round(s.ttft_ms, 2),
                "decode_tok_s": round(s.decode_tok_s, 2),
                "total_ms": round(s.total_ms, 2),
            }
        ),
        position=item.position,
        context=item.context or None,
        clock_synced=clock_synchronised(),
        frames=[FramePayload(captured_at=utc_iso(t)) for t in item.frames] if item.frames else None,
        roi=list(item.roi) if item.roi is not None else None,
        zone=item.zone,
    )


def _printable(text: str) -> str:
    """Model text for a terminal: one line, and no control characters (an ESC could drive it)."""
    return "".join(c if c.isprintable() else " " for c in text).strip()


def console_line(payload: ResultPayload) -> str:
    """One line per result for a terminal: seq, task, timing, stop reason, and the text itself."""
    s = payload.stats
    text = " ".join(_printable(payload.text).split()) or "(no text)"
    if len(text) > 160:
        text = text[:157] + "..."
    data = f" data={json.dumps(payload.data)}" if payload.data is not None else ""
    err = f" schema_error={payload.schema_error!r}" if payload.schema_error else ""
    return (
        f"[{payload.seq}] {payload.task} ({payload.trigger}) {s.total_ms:.0f} ms, "
        f"{s.new_tokens} tok, {s.stop_reason}: {text}{data}{err}"
    )
