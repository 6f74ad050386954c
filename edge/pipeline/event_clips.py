"""Event tasks: the frames of one motion event, collected for one multi-image prompt (pure logic).

Per event task, a small ring buffer holds the last `preroll` frames, at most one per
`frame_interval_s`, so the prompt can show the scene just before the motion started. When a frame's
gate score reaches gate.motion_threshold the event starts with those frames and this one; while
motion lasts a frame is added every `frame_interval_s`. The event ends when it has `frames` frames,
when it has lasted `max_event_s`, or when the score stayed below the threshold for `quiet_s` (then
the quiet frame is added as the "after" picture if there is room). An event of a single frame (a
blip with no pre-roll) is dropped and counted: it would be an ordinary caption.

Frames are the grabber's own read-only arrays: holding one costs a reference, not a copy. At most
`frames` of them per event task are held (the ring is part of that count).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from edge.config.settings import TaskSettings
from edge.core.messages import Frame

EndReason = Literal["frames", "max_event_s", "quiet"]


@dataclass(frozen=True)
class EventClip:
    """The frames of one finished event, oldest first."""

    frames: tuple[Frame, ...]
    started_at: float  # wall clock: the first motion frame's capture time
    ended_at: float  # wall clock: the last frame looked at (the quiet one, or the last collected)
    ended_by: EndReason
    peak_score: float

    @property
    def captured_at(self) -> tuple[float, ...]:
        return tuple(f.captured_at for f in self.frames)


@dataclass
class _Active:
    frames: list[Frame]
    started: float  # monotonic
    started_at: float
    last_added: float  # monotonic
    last_motion: float  # monotonic
    peak: float


@dataclass
class EventCollector:
    """One event task's collector; `on_frame` returns a clip when an event ends."""

    task: TaskSettings
    threshold: float
    dropped: int = 0  # events that ended with a single frame
    _ring: deque[Frame] = field(init=False)
    _active: _Active | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._ring = deque(maxlen=max(1, self.task.preroll))

    @property
    def collecting(self) -> bool:
        return self._active is not None

    def _spaced(self, last: float, now: float) -> bool:
        return now - last >= self.task.frame_interval_s

    def on_frame(self, frame: Frame, score: float, now: float) -> EventClip | None:
        """Feed every frame the gate scored (score 0..1) at monotonic time `now`."""
        t = self.task
        moving = score >= self.threshold
        ev = self._active
        if ev is None:
            if not moving:
                if t.preroll and (not self._ring or self._spaced(self._ring[-1].monotonic, frame.monotonic)):
                    self._ring.append(frame)
                return None
            pre = list(self._ring)[-t.preroll :] if t.preroll else []
            self._ring.clear()
            self._active = ev = _Active([*pre, frame], now, frame.captured_at, now, now, score)
            return self._finish("frames") if len(ev.frames) >= t.event_frames else None
        ev.peak = max(ev.peak, score)
        if moving:
            ev.last_motion = now
            if self._spaced(ev.last_added, now):
                ev.frames.append(frame)
                ev.last_added = now
            if len(ev.frames) >= t.event_frames:
                return self._finish("frames", frame.captured_at)
        elif now - ev.last_motion >= t.quiet_s:
            if len(ev.frames) < t.event_frames:
                ev.frames.append(frame)  # the scene after the motion
            return self._finish("quiet", frame.captured_at)
        if now - ev.started >= t.max_event_s:
            return self._finish("max_event_s", frame.captured_at)
        return None

    def _finish(self, why: EndReason, ended_at: float | None = None) -> EventClip | None:
        ev, self._active = self._active, None
        assert ev is not None
        if len(ev.frames) < 2:
            self.dropped += 1
            return None
        end = ended_at if ended_at is not None else ev.frames[-1].captured_at
        return EventClip(tuple(ev.frames), ev.started_at, end, why, ev.peak)

    def reset(self) -> None:
        """Forget the ring and any event in progress (camera reconnect, settings reload)."""
        self._ring.clear()
        self._active = None
