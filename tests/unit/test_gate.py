"""Motion gate: scores on real OpenCV arithmetic, decisions by the documented rule order."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config.settings import GateSettings
from edge.core.messages import Frame
from edge.imaging.gate import Gate, GateDecision, MotionScorer

W, H = 320, 240


def scene(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((H, W, 3), 90, np.uint8)
    for _ in range(10):
        x, y = int(rng.integers(0, W - 50)), int(rng.integers(0, H - 50))
        img[y : y + 40, x : x + 40] = rng.integers(0, 255, 3)
    return img


def noisy(img: np.ndarray, seed: int, amplitude: int = 4) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(-amplitude, amplitude + 1, img.shape)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def with_box(img: np.ndarray, x: int, size: int = 60) -> np.ndarray:
    out = img.copy()
    out[90 : 90 + size, x : x + size] = 250
    return out


def frame(image: np.ndarray, seq: int) -> Frame:
    return Frame(image=image, captured_at=0.0, monotonic=0.0, seq=seq)


def run_gate(gate: Gate, images: list[np.ndarray], fps: float) -> list[tuple[float, GateDecision]]:
    return [(i / fps, gate.decide(frame(img, i), i / fps)) for i, img in enumerate(images)]


def settings(**kw: float) -> GateSettings:
    base = {"motion_threshold": 0.02, "min_interval_s": 1.0, "max_interval_s": 5.0, "cooldown_s": 0.0}
    base.update(kw)
    return GateSettings(**base)


def test_first_frame_runs() -> None:
    d = Gate(settings()).decide(frame(scene(), 0), 100.0)
    assert d == GateDecision(True, 0.0, "first_frame")


def test_static_noisy_scene_runs_only_at_max_interval() -> None:
    base = scene()
    decisions = run_gate(Gate(settings()), [noisy(base, i) for i in range(121)], fps=10)
    runs = [(t, d.reason) for t, d in decisions if d.run]
    assert runs == [(0.0, "first_frame"), (5.0, "max_interval"), (10.0, "max_interval")]
    assert max(d.score for _, d in decisions) < 0.005
    assert {d.reason for _, d in decisions if not d.run} == {"below_threshold"}


def test_moving_object_runs_at_most_every_min_interval() -> None:
    base = scene()
    images = [noisy(with_box(base, 4 + 2 * i), i) for i in range(100)]
    decisions = run_gate(Gate(settings(min_interval_s=1.0, max_interval_s=30.0)), images, fps=10)
    run_times = [t for t, d in decisions if d.run]
    gaps = np.diff(run_times)
    assert len(run_times) >= 8
    assert gaps.min() >= 1.0 - 1e-9
    for _, d in decisions:
        # Each decision is explained by its score: held-back frames had motion, skipped ones did not.
        if d.reason in ("motion", "min_interval"):
            assert d.score >= 0.02
        elif d.reason == "below_threshold":
            assert d.score < 0.02
    assert {d.reason for _, d in decisions[1:]} <= {"motion", "min_interval", "below_threshold"}
    assert any(d.reason == "min_interval" for _, d in decisions)


def test_cooldown_holds_motion_after_a_triggered_job() -> None:
    gate = Gate(settings(min_interval_s=0.0, cooldown_s=2.0, max_interval_s=60.0))
    base = scene()
    gate.decide(frame(base, 0), 0.0)
    gate.mark_triggered(0.0)
    d1 = gate.decide(frame(with_box(base, 10), 1), 1.0)
    assert (d1.run, d1.reason) == (False, "cooldown") and d1.score >= 0.02
    d2 = gate.decide(frame(with_box(base, 200), 2), 2.5)
    assert (d2.run, d2.reason) == (True, "motion")


def test_max_interval_wins_over_cooldown() -> None:
    gate = Gate(settings(max_interval_s=3.0, cooldown_s=10.0))
    base = scene()
    gate.decide(frame(base, 0), 0.0)
    gate.mark_triggered(0.0)
    assert gate.decide(frame(with_box(base, 10), 1), 1.0).reason == "cooldown"
    d = gate.decide(frame(with_box(base, 10), 2), 3.0)
    assert (d.run, d.reason) == (True, "max_interval") and d.score >= 0.02


def test_background_absorbs_a_change_that_stays() -> None:
    scorer = MotionScorer(tau_s=1.0)
    before = scene(1)
    after = with_box(before, 100, size=100)  # ~13% of the picture changes and stays
    assert scorer.score(before, 0.0) == 0.0
    first = scorer.score(after, 0.1)
    later = [scorer.score(after, 0.1 + k * 0.2) for k in range(1, 40)]
    assert 0.08 < first < 0.5
    assert later[5] > 0.02  # still motion a second later: the background adapts slowly
    assert later[-1] < 0.005  # after ~8 time constants the change is the background
    assert all(a >= b for a, b in zip(later, later[1:], strict=False))


def test_scene_cut_scores_once_then_is_the_background() -> None:
    scorer = MotionScorer(tau_s=3.0)
    dark = scene(1)
    bright = np.clip(dark.astype(np.int16) + 120, 0, 255).astype(np.uint8)  # the lights went on
    scorer.score(dark, 0.0)
    assert scorer.score(bright, 0.1) > 0.5
    assert scorer.score(bright, 0.2) == 0.0


def test_adaptation_depends_on_time_not_frame_rate() -> None:
    before = scene(1)
    after = with_box(before, 100, size=100)
    results = []
    for fps in (5, 30):
        scorer = MotionScorer(tau_s=2.0)
        scorer.score(before, 0.0)
        t, score = 0.0, 1.0
        while t < 2.0:
            t += 1 / fps
            score = scorer.score(after, t)
        results.append(score)
    assert results[0] == pytest.approx(results[1], abs=0.05)


def test_new_aspect_ratio_counts_as_full_change() -> None:
    scorer = MotionScorer()
    scorer.score(scene(), 0.0)  # 4:3
    wide = np.zeros((720, 1280, 3), np.uint8)  # the camera came back at 16:9
    assert scorer.score(wide, 0.1) == 1.0
    assert scorer.score(wide, 0.2) == 0.0


def test_reset_forgets_background_and_intervals() -> None:
    gate = Gate(settings())
    gate.decide(frame(scene(1), 0), 0.0)
    gate.reset()
    assert gate.decide(frame(scene(2), 1), 0.1).reason == "first_frame"


def test_zero_threshold_runs_every_min_interval() -> None:
    base = scene()
    decisions = run_gate(Gate(settings(motion_threshold=0.0, min_interval_s=0.5)), [base] * 21, fps=10)
    assert [t for t, d in decisions if d.run] == [0.0, 0.5, 1.0, 1.5, 2.0]
