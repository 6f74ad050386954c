"""Turning a job's outcome into the contract's result payload, and a console line (pure functions).

The result's `seq` and `id` are allocated by the outbox in the same transaction that stores the
result, so `build_result` runs inside that transaction and must not fail on valid input.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from edge.core.messages import (
    Frame,
    Generation,
    ModelPayload,
    ModelRef,
    PositionPayload,
    ResultPayload,
    StatsPayload,
    TriggerKind,
    utc_iso,
)


@dataclass(frozen=True)
class ResultInput:
    device: str
    task: str
    camera: str
    trigger: TriggerKind
    generation: Generation
    model: ModelRef
    frame: Frame | None
    gate_score: float | None
    position: PositionPayload | None
    context: dict[str, Any] | None


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
        captured_at=utc_iso(item.frame.captured_at) if item.frame is not None else None,
        published_at=utc_iso(now),
        trigger=item.trigger,
        text=g.text,
        data=g.data,
        schema_error=g.schema_error,
        gate_score=None if item.gate_score is None else round(item.gate_score, 5),
        model=ModelPayload(name=item.model.name, backend=item.model.backend, provider=item.model.provider),
        stats=StatsPayload(
            prompt_tokens=s.prompt_tokens,
            image_tokens=s.image_tokens,
            new_tokens=s.new_tokens,
            ttft_ms=round(s.ttft_ms, 2),
            decode_tok_s=round(s.decode_tok_s, 2),
            total_ms=round(s.total_ms, 2),
            stop_reason=s.stop_reason,
        ),
        position=item.position,
        context=item.context or None,
    )


def console_line(payload: ResultPayload) -> str:
    """One line per result for a terminal: seq, task, timing, stop reason, text."""
    s = payload.stats
    text = payload.text.replace("\n", " ").strip()
    if len(text) > 160:
        text = text[:157] + "..."
    data = f" data={json.dumps(payload.data)}" if payload.data is not None else ""
    err = f" schema_error={payload.schema_error!r}" if payload.schema_error else ""
    return (
        f"[{payload.seq}] {payload.task} ({payload.trigger}) {s.total_ms:.0f} ms, "
        f"{s.new_tokens} tok, {s.stop_reason}: {text}{data}{err}"
    )
