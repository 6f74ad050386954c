"""Gating on generated videos read by the real grabber: every frame, in order (pace="asap"), judged
at its stream time seq/fps, so the expected decisions follow from the clip alone."""

from __future__ import annotations

import numpy as np

from edge.capture import Grabber
from edge.config.settings import CameraSettings, GateSettings
from edge.imaging.gate import Gate, GateDecision
from tests.plugins.streams import Videos


def gate_video(path: str, fps: float, gate: Gate) -> list[tuple[float, GateDecision]]:
    grabber = Grabber(CameraSettings(source=path, pace="asap", loop=False, stall_s=3.0))
    grabber.start()
    out: list[tuple[float, GateDecision]] = []
    last = -1
    try:
        while (frame := grabber.wait_frame(last, timeout=3.0)) is not None:
            assert frame.seq == last + 1, "asap playback must not skip frames"
            last = frame.seq
            t = frame.seq / fps
            out.append((t, gate.decide(frame, t)))
    finally:
        assert grabber.stop(2.0)
    return out


def explained(decisions: list[tuple[float, GateDecision]], threshold: float) -> None:
    """Each decision follows from its score: motion/min_interval had one, below_threshold did not."""
    for t, d in decisions:
        if d.reason in ("motion", "min_interval", "cooldown"):
            assert d.score >= threshold, (t, d)
        elif d.reason == "below_threshold":
            assert d.score < threshold and not d.run, (t, d)


def test_static_scene_runs_only_at_max_interval(stream_videos: Videos) -> None:
    gate = Gate(GateSettings(motion_threshold=0.02, min_interval_s=1.0, max_interval_s=5.0))
    decisions = gate_video(str(stream_videos.constant), stream_videos.fps, gate)
    assert len(decisions) == stream_videos.constant_frames
    runs = [(round(t, 3), d.reason) for t, d in decisions if d.run]
    assert runs == [
        (0.0, "first_frame"),
        (5.0, "max_interval"),
        (10.0, "max_interval"),
        (15.0, "max_interval"),
    ]
    assert max(d.score for _, d in decisions) < 0.005  # sensor noise and JPEG artefacts are not motion
    explained(decisions, 0.02)


def test_moving_object_runs_at_most_every_min_interval(stream_videos: Videos) -> None:
    gate = Gate(GateSettings(motion_threshold=0.02, min_interval_s=1.5, max_interval_s=60.0))
    decisions = gate_video(str(stream_videos.moving), stream_videos.fps, gate)
    run_times = np.array([t for t, d in decisions if d.run])
    assert np.diff(run_times).min() >= 1.5 - 1e-9
    # The box moves for the whole 10 s clip: a run as soon as min_interval allows, every time.
    assert len(run_times) >= 6
    reasons = {d.reason for _, d in decisions[1:]}
    assert "motion" in reasons and "min_interval" in reasons and "max_interval" not in reasons
    explained(decisions, 0.02)


def test_cut_runs_on_the_first_frame_of_the_new_scene(stream_videos: Videos) -> None:
    gate = Gate(GateSettings(motion_threshold=0.02, min_interval_s=2.0, max_interval_s=60.0))
    decisions = gate_video(str(stream_videos.cut), stream_videos.fps, gate)
    runs = [(i, d) for i, (_, d) in enumerate(decisions) if d.run]
    assert runs[0][1].reason == "first_frame"
    cut_index, cut = runs[1]
    assert cut_index == stream_videos.cut_frame and cut.reason == "motion"
    assert cut.score > 0.5
    before_cut = [d for _, d in decisions[1 : stream_videos.cut_frame]]
    assert all(d.reason == "below_threshold" for d in before_cut)
    # The new scene becomes the background: motion runs stop a few time constants after the cut.
    assert all(d.reason == "below_threshold" for _, d in decisions[-20:])
    explained(decisions, 0.02)


def test_testsrc_scene_has_motion() -> None:
    grabber = Grabber(CameraSettings(source="testsrc", width=320, height=240, fps=10, pace="asap"))
    gate = Gate(GateSettings(motion_threshold=0.01, min_interval_s=0.0, max_interval_s=60.0))
    grabber.start()
    scores: list[float] = []
    last = -1
    while len(scores) < 30:
        frame = grabber.wait_frame(last, timeout=3.0)
        assert frame is not None
        last = frame.seq
        scores.append(gate.decide(frame, frame.seq / 10).score)
    assert grabber.stop(2.0)
    assert min(scores[1:]) > 0.01
