"""Motion / scene-change gating: whether a motion-triggered task should look at this frame.

A model call costs seconds of CPU on a Pi, so most frames must be turned away cheaply. The score is
the share of pixels of a small blurred grayscale copy that differ clearly from a slowly adapting
background: sensor noise and JPEG artefacts stay under the per-pixel delta, a person walking in or
a cut to another scene does not. The background adapts with a time constant in seconds (not per
frame), so the behaviour does not depend on the camera's frame rate, and something that stays
(a parked car) stops counting as motion after a few time constants. A change of most of the picture
(a cut, the lights going on) is scored once and then taken as the new background at once, so it
triggers one run instead of a run every min_interval_s until the slow average catches up.

Every decision carries its score and the reason, so a result can say why it was produced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge.config.settings import GateSettings
from edge.core.messages import Frame
from edge.imaging.crops import Box, motion_box

GateReason = Literal["motion", "max_interval", "min_interval", "cooldown", "below_threshold", "first_frame"]

GATE_WIDTH = 160  # pixels of the scoring image; 640x480 -> 160x120
SAMPLES = 4  # at most this many pixels per axis of each block are averaged (4x4 per scoring pixel)
# OpenCV's 5-tap Gaussian for sigma 0 (getGaussianKernel: a fixed binomial kernel for ksize <= 7)
_BLUR = (0.0625, 0.25, 0.375, 0.25, 0.0625)
_GREY = np.array([0.114, 0.587, 0.299], np.float32)  # BGR weights of ITU-R BT.601 luma
PIXEL_DELTA = 20  # grey levels a blurred pixel must differ from the background to count as changed
BACKGROUND_TAU_S = 3.0  # time constant of the background's adaptation
SCENE_CUT = 0.5  # this share of changed pixels is a new scene (cut, lights on): it becomes the background


@dataclass(frozen=True)
class GateDecision:
    run: bool
    score: float  # share of changed pixels, 0..1
    reason: GateReason


class MotionScorer:
    """Share of changed pixels against a running-average background (stateful, one camera)."""

    def __init__(
        self,
        width: int = GATE_WIDTH,
        pixel_delta: float = PIXEL_DELTA,
        tau_s: float = BACKGROUND_TAU_S,
        scene_cut: float = SCENE_CUT,
    ) -> None:
        self.width = width
        self.pixel_delta = float(pixel_delta)
        self.tau_s = tau_s
        self.scene_cut = scene_cut
        self._background: np.ndarray | None = None
        self._last_t: float | None = None
        self.last_mask: np.ndarray | None = None  # changed pixels of the last scored frame (small copy)

    def reset(self) -> None:
        self._background = None
        self._last_t = None
        self.last_mask = None

    def _small_gray(self, image: np.ndarray) -> np.ndarray:
        return small_gray(image, self.width)

    def score(self, image: np.ndarray, t: float) -> float:
        """Score `image` taken at time `t` (seconds), then let the background adapt towards it."""
        gray = self._small_gray(image)
        background = self._background
        if background is None or background.shape != gray.shape:
            # First frame, or the camera came back at another size: everything is new.
            score = 0.0 if background is None else 1.0
            self.last_mask = None if background is None else np.ones(gray.shape, bool)
            self._background = gray
            self._last_t = t
            return score
        diff = np.abs(gray - background)
        mask = diff > self.pixel_delta
        self.last_mask = mask
        score = float(np.count_nonzero(mask)) / float(diff.size)
        if score >= self.scene_cut:
            self._background = gray
            self._last_t = t
            return score
        dt = max(0.0, t - (self._last_t if self._last_t is not None else t))
        alpha = 1.0 - math.exp(-dt / self.tau_s) if self.tau_s > 0 else 1.0
        if alpha > 0:
            background += alpha * (gray - background)  # a running average, in place
        self._last_t = t
        return score


def small_gray(image: np.ndarray, width: int = GATE_WIDTH) -> np.ndarray:
    """A blurred grey copy `width` pixels wide (float32): the picture the score compares.

    Each scoring pixel is the mean of up to SAMPLES x SAMPLES pixels spread over its block of the
    frame (every pixel of a 640x480 frame's 4x4 blocks; every other of 1280x720's 8x8), taken as
    strided views: no gather, no copy of the frame, ~1 ms at 720p. Then grey (BT.601) and a 5x5
    Gaussian with reflected borders, the same kernel as OpenCV's GaussianBlur(5x5, sigma 0): what the
    score compares is within one grey level of the OpenCV pipeline it replaced, far under
    PIXEL_DELTA, so the thresholds kept their meaning. A few edge pixels beyond the last whole block
    are not looked at.
    """
    h, w = image.shape[:2]
    width = min(width, w)
    height = max(1, min(h, round(h * width / w)))
    ky, kx = h // height, w // width
    sy, sx = -(-ky // SAMPLES), -(-kx // SAMPLES)  # stride inside a block: at most SAMPLES samples
    view = image[: height * ky, : width * kx]
    total = np.zeros((height, width, 3), np.uint16)  # 16 samples x 255 fits
    n = 0
    for dy in range(0, ky, sy):
        for dx in range(0, kx, sx):
            total += view[dy::ky, dx::kx]
            n += 1
    grey = total.astype(np.float32) @ (_GREY / n)
    return _blur5(_blur5(grey, axis=1), axis=0)


def _blur5(a: np.ndarray, axis: int) -> np.ndarray:
    """One pass of the 5-tap Gaussian along `axis`, borders reflected without repeating the edge."""
    n = a.shape[axis]
    if n < 3:
        return a  # nothing to reflect from: a 1-2 pixel image is left as it is
    pad = [(0, 0), (0, 0)]
    pad[axis] = (2, 2)
    p = np.pad(a, pad, mode="reflect")
    out = np.zeros_like(a)
    for i, weight in enumerate(_BLUR):
        out += weight * (p[:, i : i + a.shape[1]] if axis == 1 else p[i : i + a.shape[0]])
    return out


class Gate:
    """Decides per frame: run the motion task now, or not, and why.

    Order of the rules (the first that applies wins):
    first frame -> run; `max_interval_s` since the last run -> run (even without motion);
    score below threshold -> no; within `cooldown_s` of `mark_triggered` -> no;
    within `min_interval_s` of the last run -> no; otherwise motion -> run.
    So "min_interval" and "cooldown" mean: there was motion, but it was held back.
    """

    def __init__(self, gate_settings: GateSettings, scorer: MotionScorer | None = None) -> None:
        self.settings = gate_settings
        self.scorer = scorer or MotionScorer()
        self._last_run: float | None = None
        self._cooldown_until = -math.inf

    def decide(self, frame: Frame, now: float) -> GateDecision:
        """Score `frame` and decide at time `now` (monotonic seconds; any clock, used consistently)."""
        score = round(self.scorer.score(frame.image, now), 5)
        s = self.settings
        if self._last_run is None:
            decision = GateDecision(True, score, "first_frame")
        elif now - self._last_run >= s.max_interval_s:
            decision = GateDecision(True, score, "max_interval")
        elif score < s.motion_threshold:
            decision = GateDecision(False, score, "below_threshold")
        elif now < self._cooldown_until:
            decision = GateDecision(False, score, "cooldown")
        elif now - self._last_run < s.min_interval_s:
            decision = GateDecision(False, score, "min_interval")
        else:
            decision = GateDecision(True, score, "motion")
        if decision.run:
            self._last_run = now
        return decision

    def motion_box(self, frame: Frame) -> Box | None:
        """The padded box around what changed in the last frame scored (`frame`), in its pixels."""
        mask = self.scorer.last_mask
        return None if mask is None else motion_box(mask, frame.width, frame.height)

    def mark_triggered(self, now: float) -> None:
        """A job was triggered (by this gate or anything else) at `now`: hold motion runs for cooldown_s."""
        self._cooldown_until = now + self.settings.cooldown_s

    def reset(self) -> None:
        """Forget the background and the intervals (e.g. after a camera reconnect or a settings reload)."""
        self.scorer.reset()
        self._last_run = None
        self._cooldown_until = -math.inf
