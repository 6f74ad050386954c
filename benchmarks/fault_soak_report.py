"""The fault soak's windows (one per injected fault) and how they are printed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from edge.consumer import Report


@dataclass
class Window:
    fault: str
    injected: str = ""
    t0: float = 0.0
    i0: int = 0
    hi0: dict[int, int] = field(default_factory=dict)
    t1: float = 0.0
    i1: int = 0
    hi1: dict[int, int] = field(default_factory=dict)
    dup0: int = 0
    dup1: int = 0
    recv0: int = 0
    recv1: int = 0
    restored: float = 0.0  # monotonic: when the fault ended
    recovery_s: float | None = None  # fault end -> first result captured after it arrives
    drained_s: float | None = None  # fault end -> a health message with an empty outbox
    stranded: set[str] = field(default_factory=set)  # result ids seen queued in a stopped outbox
    skipped: str | None = None
    # filled in at the end
    events: Counter[str] = field(default_factory=Counter)
    reported: int = 0
    reported_unknown: int = 0  # loss events that could not say how many
    lost: list[str] = field(default_factory=list)
    produced: int = 0


def fmt_s(v: float | None) -> str:
    return "—" if v is None else f"{max(v, 0.0):.1f}"


def fmt_reported(w: Window) -> str:
    if not w.reported_unknown:
        return str(w.reported)
    return f"{w.reported} + {w.reported_unknown} event(s) with an unknown count"


def table(windows: list[Window]) -> str:
    lines = [
        "| fault | injected | events seen (count) | results numbered | delivered | lost | reported lost (events) | redelivered | first fresh result / outbox empty after, s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for w in windows:
        evs = ", ".join(f"{k}" + (f" ×{n}" if n > 1 else "") for k, n in sorted(w.events.items())) or "none"
        if w.skipped:
            lines.append(f"| {w.fault} | skipped: {w.skipped} | | | | | | | |")
            continue
        lines.append(
            f"| {w.fault} | {w.injected} | {evs} | {w.produced} | {w.recv1 - w.recv0} | {len(w.lost)} | "
            f"{fmt_reported(w)} | {w.dup1 - w.dup0} | {fmt_s(w.recovery_s)} / {fmt_s(w.drained_s)} |"
        )
    return "\n".join(lines)


def to_json(windows: list[Window], report: Report) -> dict[str, Any]:
    return {
        "windows": [
            {
                "fault": w.fault,
                "injected": w.injected,
                "skipped": w.skipped,
                "events": dict(w.events),
                "produced": w.produced,
                "delivered": w.recv1 - w.recv0,
                "lost": w.lost,
                "reported": w.reported,
                "reported_unknown": w.reported_unknown,
                "redelivered": w.dup1 - w.dup0,
                "recovery_s": w.recovery_s,
                "drained_s": w.drained_s,
            }
            for w in windows
        ],
        "report": report.to_dict(),
    }
