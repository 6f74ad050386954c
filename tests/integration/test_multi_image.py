"""Several frames in one prompt on both local backends, and per-request num_crops.

The arithmetic under test: N frames at num_crops k cost N x tokens(k) image tokens. ORT GenAI's
count is ours (our preprocessing builds input_ids), but the fixture's vision graph returns exactly
that many features per image and the embedding graph splices them into the placeholders, so a wrong
count fails the run; OpenVINO's prompt_tokens is the runtime's own count (get_num_input_tokens), so
the prompt growth per frame is measured there, not assumed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config.settings import OpenVINOModelSettings, OrtGenAIModelSettings
from edge.core.messages import GenerationRequest
from edge.inference.phi3v_preprocess import tokens_for_frame
from tests.plugins.models import model_dir


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


FRAMES = tuple(_frame(480, 640, seed=i) for i in range(4))


def _req(n: int, num_crops: int | None = None) -> GenerationRequest:
    return GenerationRequest(prompt="What changed?", images=FRAMES[:n], max_new_tokens=2, num_crops=num_crops)


def _tag_tokens(backend: object, one: int, two: int) -> int:
    """Text tokens one more `<|image_N|>\\n` tag adds: prompt(2) - prompt(1) - tokens of one frame."""
    return two - one


def _check_arithmetic(backend: object, num_crops: int | None, per_frame: int) -> int:
    """N frames cost N x per_frame image tokens; returns the text tokens each frame's tag adds."""
    gens = [backend.generate(_req(n, num_crops)) for n in (1, 2, 3, 4)]  # type: ignore[attr-defined]
    for n, g in enumerate(gens, start=1):
        assert g.stats.image_tokens == n * per_frame
    # each further frame adds its image tokens and its tag's few text tokens, the same every time
    steps = {gens[i + 1].stats.prompt_tokens - gens[i].stats.prompt_tokens for i in range(3)}
    assert len(steps) == 1
    tag = steps.pop() - per_frame
    assert 0 < tag <= 8, tag
    return tag


def test_ort_n_frames_cost_n_times_the_tokens_of_one() -> None:
    pytest.importorskip("onnxruntime_genai")
    from edge.inference import ort_genai

    backend = ort_genai.load(OrtGenAIModelSettings(path=model_dir("ort-phi3v-fp32"), num_crops=4))
    try:
        tag_4 = _check_arithmetic(backend, None, tokens_for_frame(480, 640, 4))  # 757
        tag_1 = _check_arithmetic(backend, 1, tokens_for_frame(480, 640, 1))  # 313: the per-task value wins
        assert tag_4 == tag_1  # num_crops changes the image tokens only, never the tag's text
    finally:
        backend.close()


def test_ort_pixel_values_for_n_images() -> None:
    from edge.inference.phi3v_preprocess import prepare
    from edge.inference.prompts import ImageSlot, chat_prompt, split_image_tags

    prompt = chat_prompt("x", num_images=3)
    pieces = [p.index if isinstance(p, ImageSlot) else p for p in split_image_tags(prompt)]
    assert prompt.count("<|image_") == 3 and "<|image_3|>" in prompt
    vi = prepare(FRAMES[:3], 2, pieces, lambda s: list(range(len(s))))
    assert vi.pixel_values.shape == (3, 3, 3, 336, 336)
    assert vi.image_sizes.tolist() == [[336, 336]] * 3  # 640x480 at 2 crops: one crop row and column
    assert vi.num_image_tokens.shape == (3, 1)
    for i in range(3):  # image i's placeholders are -(i+1), as many as its tokens
        assert int((vi.input_ids == -(i + 1)).sum()) == int(vi.num_image_tokens[i, 0])


def test_openvino_n_frames_and_a_per_request_num_crops(tmp_path: Path) -> None:
    pytest.importorskip("openvino_genai")
    from edge.inference import openvino_genai
    from edge.inference.openvino_genai import ov_image_tokens

    backend = openvino_genai.load(
        OpenVINOModelSettings(
            path=model_dir("ov-phi3v"), backend="openvino", providers=["CPU"], num_crops=4, cache_dir=tmp_path
        )
    )
    try:
        _check_arithmetic(backend, None, ov_image_tokens(480, 640, 4))
        # num_crops 1 for this request only: one more pipeline, through that value's shadow folder
        _check_arithmetic(backend, 1, ov_image_tokens(480, 640, 1))
        assert (tmp_path / "openvino-crops" / "ov-phi3v-crops1" / "preprocessor_config.json").exists()
        # the configured value is still what a plain request gets
        assert backend.generate(_req(1)).stats.image_tokens == ov_image_tokens(480, 640, 4)
        # runtime-measured: prompt tokens at 1 crop are smaller by exactly the image-token difference
        a, b = backend.generate(_req(2)), backend.generate(_req(2, 1))
        assert a.stats.prompt_tokens - b.stats.prompt_tokens == 2 * (757 - 313)
    finally:
        backend.close()
