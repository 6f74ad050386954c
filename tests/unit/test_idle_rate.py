"""The idle rate: a camera whose gate saw nothing move for gate.idle_after_s decodes and gates only
gate.idle_fps frames a second, and goes back to every frame at the first motion. The scheduler's
policy is pure logic on explicit clocks; the grabber's side uses a source at the Camera seam and
waits for conditions, never for durations."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from edge.capture import CameraInfo, Grabber
from edge.capture import grabber as grabber_module
from edge.config.settings import CameraSettings, GateSettings, TaskSettings
from edge.core.messages import Frame
from edge.daemon.triggers import TriggerLoop
from edge.pipeline.jobs import JobSpec, Scheduler

MOTION = TaskSettings(name="moving", trigger="motion")
INTERVAL = TaskSettings(name="caption", trigger="interval", interval_s=60)
GATE = GateSettings(idle_fps=2.0, idle_after_s=10.0)
FULL = (48, 64, 3)


def scene(moving: bool = False, x: int = 8) -> np.ndarray:
    img = np.full(FULL, 90, np.uint8)
    img[30:40, 40:60] = 200  # something still in the picture
    if moving:
        img[5:25, x : x + 20] = 250  # ~13 % of the pixels
    return img


def frame(t: float, seq: int, moving: bool = False, camera: str = "main") -> Frame:
    return Frame(scene(moving, 8 + (seq % 3) * 4), 1000.0 + t, t, seq, camera)


def event_task(**kw: object) -> TaskSettings:
    base: dict[str, object] = {
        "name": "visit",
        "kind": "event",
        "trigger": "motion",
        "frames": 3,
        "preroll": 1,
        "frame_interval_s": 1.0,
        "quiet_s": 2.0,
    }
    return TaskSettings(**(base | kw))


# --------------------------------------------------------------------------- the scheduler's policy


def test_a_quiet_camera_goes_to_the_idle_rate_and_back_to_every_frame_at_the_first_motion() -> None:
    s = Scheduler([MOTION], GATE, cameras=["main"])
    t, seq = 0.0, 0
    while t < 9.9:
        s.on_frame(frame(t, seq), t)
        assert s.idle_fps("main", t) is None, t  # started (or moved) less than idle_after_s ago
        t, seq = t + 0.5, seq + 1
    s.on_frame(frame(10.0, seq), 10.0)
    assert s.idle_fps("main", 10.0) == 2.0
    jobs = s.on_frame(frame(10.5, seq + 1, moving=True), 10.5)
    assert [j.trigger for j in jobs] == ["motion"]  # the idle-rate frame that saw it opens the gate
    assert s.idle_fps("main", 10.5) is None  # every frame again, from the next one on
    t = 11.0
    while t < 40.0:
        s.on_frame(frame(t, seq), t)
        t, seq = t + 0.5, seq + 1
    assert s.idle_fps("main", t) == 2.0  # quiet again


@pytest.mark.parametrize("idle_fps", [0.0, None])
def test_the_idle_rate_is_off_with_zero_or_none(idle_fps: float | None) -> None:
    s = Scheduler([MOTION], GateSettings(idle_fps=idle_fps, idle_after_s=1.0), cameras=["main"])
    for n in range(40):
        s.on_frame(frame(n * 0.5, n), n * 0.5)
        assert s.idle_fps("main", n * 0.5) is None


def test_a_camera_that_nothing_gates_idles_and_a_reset_starts_at_every_frame() -> None:
    s = Scheduler([INTERVAL], GATE, cameras=["main"])
    s.on_frame(frame(0.0, 0), 0.0)
    assert s.idle_fps("main", 0.0) is None
    s.on_frame(frame(10.0, 1), 10.0)
    assert s.idle_fps("main", 10.0) == 2.0  # interval jobs take the newest frame: 0.5 s old at most
    s.reset_camera("main")  # a reconnect: the gate relearns its background at full rate
    assert s.idle_fps("main", 10.5) is None


def test_an_event_task_s_preroll_raises_the_idle_rate_and_an_event_in_progress_holds_full_rate() -> None:
    s = Scheduler([event_task(frame_interval_s=0.25, frames=6, max_event_s=60)], GATE, cameras=["main"])
    s.on_frame(frame(0.0, 0), 0.0)
    assert s.idle_fps("main", 0.0) is None
    s.on_frame(frame(10.0, 1), 10.0)
    assert s.idle_fps("main", 10.0) == 4.0  # one pre-roll frame per 0.25 s, as the task asks
    s.on_frame(frame(10.25, 2, moving=True), 10.25)
    s.on_frame(frame(20.5, 3, moving=True), 20.5)  # still moving: the event is being collected
    assert s.idle_fps("main", 20.5) is None  # within idle_after_s of motion
    assert s.idle_fps("main", 40.0) is None  # and, past it, because the event is still open
    every = Scheduler([event_task(frame_interval_s=0.0)], GATE, cameras=["main"])
    every.on_frame(frame(0.0, 0), 0.0)
    assert every.idle_fps("main", 20.0) is None  # a pre-roll of the frame just before: every frame


def test_the_preroll_still_holds_the_frame_before_the_trigger_at_the_idle_rate() -> None:
    """The camera fed at the rate the scheduler asks for; the event's first frame is a still frame
    from before the motion, at most frame_interval_s + 1/idle rate older than the trigger."""
    task = event_task()
    s = Scheduler([task], GATE, cameras=["main"])
    t, seq, first_motion = 0.0, 0, None
    clips: list[tuple[Frame, ...]] = []
    while t < 30.0 and not clips:
        moving = 20.0 <= t < 22.0
        if moving and first_motion is None:
            first_motion = t
        clips += [j.frames for j in s.on_frame(frame(t, seq, moving), t) if j.task.kind == "event"]
        rate = s.idle_fps("main", t)
        if t < 20.0:
            assert (rate is None) == (t < 10.0), t
        t, seq = t + (1.0 / rate if rate else 1.0 / 15), seq + 1
    assert first_motion is not None and len(clips) == 1
    frames = clips[0]
    assert frames[0].monotonic < first_motion  # the pre-roll: the scene before anything moved
    assert first_motion - frames[0].monotonic <= task.frame_interval_s + 1.0 / 2.0
    assert frames[1].monotonic == first_motion  # then the frame that opened the gate
    assert all(f.image.shape == FULL for f in frames)  # full frames, for the model


def test_idle_settings_validate() -> None:
    assert GateSettings().idle_fps == 1.0 and GateSettings().idle_after_s == 10.0
    assert GateSettings(idle_fps=0).idle_fps == 0
    for bad in ({"idle_fps": -1}, {"idle_fps": 500}, {"idle_after_s": 0}, {"idle_after_s": -2}):
        with pytest.raises(ValidationError):
            GateSettings(**bad)


# --------------------------------------------------------------------------- the grabber's side


class TwoStep:
    """An MJPEG-like source: grab() takes a frame off the stream, retrieve() decodes it."""

    kind = "http-mjpeg"
    description = "http://camera.local/stream"
    paced_by_consumer = False

    def __init__(self) -> None:
        self.grabs = 0
        self.decodes = 0

    def open(self) -> CameraInfo:
        return CameraInfo(kind=self.kind, source=self.description)

    def grab(self) -> None:
        time.sleep(0.005)
        self.grabs += 1

    def retrieve(self) -> np.ndarray:
        self.decodes += 1
        return np.full((720, 1280, 3), 100, np.uint8)

    def read(self) -> np.ndarray:
        self.grab()
        return self.retrieve()

    def close(self) -> None:
        pass


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.01)


def test_an_idle_grabber_grabs_every_frame_decodes_only_the_due_ones_and_wakes_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    camera = TwoStep()
    monkeypatch.setattr(grabber_module, "build_camera", lambda settings, cancel=None: camera)
    grabber = Grabber(CameraSettings(source="http://camera.local/stream", max_edge=None))
    grabber.idle_fps = 0.001  # one frame due now, the next in 1000 s: no race with the clock
    grabber.start()
    try:
        first = grabber.wait_frame(-1, timeout=20.0)
        assert first is not None
        wait_for(lambda: camera.grabs >= 40, "40 frames grabbed")
        stats = grabber.stats()
        assert stats.frames == 1 and camera.decodes == 1  # before: every frame decoded
        assert stats.skipped >= 38 and stats.state == "ok"
        grabber.idle_fps = None  # motion: every frame again
        woke = grabber.wait_frame(first.seq, timeout=20.0)
        assert woke is not None and woke.image.shape == (720, 1280, 3)  # the full frame, for the model
        wait_for(lambda: grabber.stats().frames >= 10, "10 frames at full rate")
    finally:
        assert grabber.stop(5.0)


# --------------------------------------------------------------------------- the trigger loop wires them


class StillCamera:
    """A grabber stand-in: a new frame each time one is asked for (every 10 ms), still or moving."""

    def __init__(self) -> None:
        self.seq = 0
        self.moving = False
        self.idle_fps: float | None = None

    def latest(self, after_seq: int = -1) -> Frame | None:
        time.sleep(0.01)
        self.seq += 1
        t = time.monotonic()
        return Frame(scene(self.moving, 8 + (self.seq % 3) * 4), t, t, self.seq, "main")

    def wait_frame(self, after_seq: int = -1, timeout: float = 1.0) -> Frame | None:
        return self.latest(after_seq)


def test_the_trigger_loop_sets_the_grabber_s_rate_from_the_scheduler() -> None:
    camera = StillCamera()
    scheduler = Scheduler([MOTION], GateSettings(idle_fps=3.0, idle_after_s=0.3), cameras=["main"])
    jobs: list[JobSpec] = []

    def enqueue(spec: JobSpec) -> str:
        jobs.append(spec)
        return "queued"

    stop = threading.Event()
    pipeline = SimpleNamespace(grabbers={"main": camera})
    loop = TriggerLoop(lambda: pipeline, scheduler, enqueue, stop)  # type: ignore[arg-type, return-value]
    loop.start()
    try:
        wait_for(lambda: camera.idle_fps == 3.0, "the idle rate after quiet")
        camera.moving = True
        wait_for(lambda: camera.idle_fps is None, "every frame again at motion")
        assert any(j.trigger == "motion" for j in jobs)
    finally:
        stop.set()


def test_the_idle_schedule_keeps_its_rate_and_every_frame_of_a_camera_no_faster_than_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(grabber_module, "time", SimpleNamespace(monotonic=lambda: clock[0], time=time.time))
    grabber = Grabber(CameraSettings(source="http://camera.local/stream"))
    session = grabber_module._Session(0)

    def published(times: list[float]) -> int:
        kept = 0
        for t in times:
            clock[0] = t
            kept += not grabber._skip(session)
        return kept

    grabber.idle_fps = 1.0
    # A 1 fps camera whose frames come a little early or late: none is dropped (before: every other).
    assert published([100.0 + k + (-0.01 if k % 2 else 0.01) for k in range(20)]) == 20
    # A 15 fps camera: one frame a second, on a fixed schedule.
    assert published([200.0 + k / 15 for k in range(150)]) == 10
    grabber.idle_fps = None
    assert published([300.0 + k / 15 for k in range(15)]) == 15
