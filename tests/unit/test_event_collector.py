"""Event tasks: which frames one motion event collects, and when it ends."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from edge.config.settings import Settings, TaskSettings
from edge.core.messages import Frame
from edge.pipeline.event_clips import EventCollector

IMG = np.zeros((4, 4, 3), np.uint8)


def _task(**kw: object) -> TaskSettings:
    base: dict[str, object] = {
        "name": "ev",
        "kind": "event",
        "frames": 3,
        "frame_interval_s": 1.0,
        "preroll": 1,
    }
    base.update(kw)
    return TaskSettings(**base)


def _frame(t: float, seq: int) -> Frame:
    return Frame(IMG, 1_700_000_000.0 + t, t, seq)


def _feed(c: EventCollector, scores: list[float], dt: float = 0.5) -> list:
    out = []
    for i, s in enumerate(scores):
        clip = c.on_frame(_frame(i * dt, i), s, i * dt)
        if clip is not None:
            out.append(clip)
    return out


def test_preroll_then_frames_at_intervals_up_to_frames() -> None:
    c = EventCollector(_task(), threshold=0.1)
    clips = _feed(c, [0, 0, 0, 0.5, 0.5, 0.5, 0.5, 0.5, 0, 0])
    assert len(clips) == 1
    clip = clips[0]
    seqs = [f.seq for f in clip.frames]
    assert seqs == [2, 3, 5] and clip.ended_by == "frames"  # pre-roll, motion start, +1 s
    assert clip.started_at == 1_700_000_001.5 and clip.captured_at[0] < clip.started_at
    assert c.collecting  # motion went on after the clip (seq 6, 7): the next event has begun


def test_event_ends_when_quiet_with_the_after_frame() -> None:
    c = EventCollector(_task(frames=6, quiet_s=1.0), threshold=0.1)
    clips = _feed(c, [0, 0.5, 0.5, 0, 0, 0, 0])
    assert len(clips) == 1 and clips[0].ended_by == "quiet"
    assert [f.seq for f in clips[0].frames] == [0, 1, 4]  # before, motion, after (quiet for 1 s)


def test_event_ends_at_max_event_s() -> None:
    c = EventCollector(_task(frames=6, max_event_s=2.0, frame_interval_s=0.0), threshold=0.1)
    clips = _feed(c, [0.5] * 3, dt=1.5)
    assert len(clips) == 1 and clips[0].ended_by == "max_event_s" and len(clips[0].frames) == 3


def test_an_event_of_one_frame_is_dropped() -> None:
    c = EventCollector(_task(preroll=0, frame_interval_s=10.0, max_event_s=0.5), threshold=0.1)
    assert _feed(c, [0.5, 0.5]) == [] and c.dropped == 1


@pytest.mark.parametrize("frames", [0, 1, 7, 100])
def test_frames_out_of_range_is_a_config_error(frames: int) -> None:
    with pytest.raises(ValidationError, match="frames"):
        _task(frames=frames)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"kind": "caption", "frames": 3}, "only for kind 'event'"),
        ({"trigger": "interval", "interval_s": 5}, "started by motion"),
        ({"preroll": 3}, "preroll must be less than frames"),
        ({"roi": "motion"}, "not supported for kind 'event'"),
    ],
)
def test_event_config_errors(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        _task(**kw)


def test_roi_and_num_crops_keys() -> None:
    t = TaskSettings(name="c", roi="motion", num_crops=1)
    assert (t.roi, t.num_crops) == ("motion", 1)
    with pytest.raises(ValidationError, match="roi 'motion' needs trigger 'motion'"):
        TaskSettings(name="c", roi="motion", trigger="command")
    with pytest.raises(ValidationError):
        TaskSettings(name="c", num_crops=17)
    s = Settings(tasks=[{"name": "ev", "kind": "event"}])
    assert s.tasks[0].event_frames == 3


# ----------------------------------------------------------------------------- scheduler wiring


def _scene(x: int) -> np.ndarray:
    img = np.full((480, 640, 3), 80, np.uint8)
    if x >= 0:
        img[200:240, x : x + 40] = 250
    return img


def test_scheduler_turns_each_motion_event_into_one_job_with_its_frames() -> None:
    from edge.config.settings import GateSettings
    from edge.pipeline.jobs import Scheduler, build_request

    task = _task(frames=3, frame_interval_s=0.5, num_crops=1)
    caption = TaskSettings(name="cap", roi="motion")
    sched = Scheduler(
        [task, caption], GateSettings(motion_threshold=0.001, min_interval_s=0)
    )  # one gate per camera
    specs = []
    xs = [-1, -1, 100, 150, 200, 250, 300]
    for i, x in enumerate(xs):
        f = Frame(_scene(x), 1000.0 + i * 0.5, i * 0.5, i)
        specs += sched.on_frame(f, i * 0.5)
    events = [s for s in specs if s.task.name == "ev"]
    assert len(events) == 2  # motion went on: a second event followed the first (seq 4, 5, 6)
    ev = events[0]
    assert [f.seq for f in events[1].frames] == [4, 5, 6]
    assert [f.seq for f in ev.frames] == [1, 2, 3] and ev.context["event"]["ended_by"] == "frames"
    req = build_request(ev, _model(), 30.0, tuple(f.image for f in ev.frames))
    assert len(req.images) == 3 and req.num_crops == 1
    rois = [s for s in specs if s.task.name == "cap" and s.roi is not None]
    assert rois and all(len(s.frames) == 1 for s in rois)
    assert rois[0].roi is not None
    x, y, w, h = rois[0].roi  # the first motion frame: the square at x=100..140, y=200..240
    assert x <= 100 and y <= 200 and x + w >= 140 and y + h >= 240


def _model():
    from edge.config.settings import OrtGenAIModelSettings

    return OrtGenAIModelSettings()
