"""Watchdog deadlines scale with the prompt: N frames prefill about N times longer than one."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config.settings import WatchdogSettings
from edge.core.messages import GenerationRequest
from edge.inference.deadlines import Limits, prompt_scale

VGA = np.zeros((480, 640, 3), np.uint8)


def _req(n: int, num_crops: int | None = None) -> GenerationRequest:
    return GenerationRequest(prompt="p", images=(VGA,) * n, num_crops=num_crops)


def test_text_and_single_frame_jobs_keep_the_configured_limits() -> None:
    assert prompt_scale(GenerationRequest(prompt="p"), 4) == 1.0
    assert prompt_scale(_req(1), 4) == 1.0
    assert prompt_scale(_req(1, 1), 4) == 1.0  # fewer crops: never shorter than configured


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_n_frames_at_the_model_crops_scale_n_times(n: int) -> None:
    assert prompt_scale(_req(n), 4) == pytest.approx(n)


def test_scale_follows_image_tokens_not_just_the_count() -> None:
    # 4 frames at 1 crop (313 tokens each) against one frame at 4 crops (757)
    assert prompt_scale(_req(4, 1), 4) == pytest.approx(4 * 313 / 757)
    assert prompt_scale(_req(1, 16), 4) > 1.0  # one frame with more crops than configured


def test_scaled_limits_move_soft_and_total_by_the_extra_prefill() -> None:
    base = Limits.from_settings(WatchdogSettings(first_token_s=10, token_s=2, generation_s=40, total_s=60))
    assert base.scaled(1.0) is base
    lim = base.scaled(3.0)
    assert lim.first_token_s == 30 and lim.token_s == 2
    assert lim.soft_s == 60 and lim.total_s == 80  # +20 s: the two extra frames' prefill
    assert lim.total_s > lim.soft_s
