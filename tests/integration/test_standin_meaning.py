"""Tests of meaning: the demo model (the trained stand-in, edge/assets/models/demo-*) through the real
worker process, its shared-memory frame slot and both real backends must say what is in the frame.

A random-weight model cannot tell a BGR/RGB swap, a stale frame in the slot, crops or frames in the
wrong order from a correct pipeline; this model can: it was trained on the scenes of
edge.capture.demo_world. Scenes the model gets right are fixed by seed; accuracy overall is in the
benchmark (benchmarks/standin_accuracy.py, benchmarks/README.md "The demo model"). One test asks for >= 90 %
captions right over 60 held-out scenes of one fixed seed (measured 97-100 % on fresh scenes): it
fails when the pipeline degrades, never by chance; EDGE_TEST_FRESH_SCENES=1 draws a new seed for a
manual check.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from edge.assets import package_file
from edge.capture import demo_world as S
from edge.core.messages import Frame, GenerationRequest, Job
from edge.imaging.opencv import cv2
from edge.inference.supervisor import Supervisor
from tests.helpers.supervision import real_model, running, watchdog

REAL = "edge.inference.registry:load_backend"
FOLDERS = {"ort-genai": "assets/models/demo-ort", "openvino": "assets/models/demo-ov"}
# Held-out scenes (seed [777, i], 1-3 shapes, sizes 268x452 .. 1823x1080) that both backends get
# fully right at num_crops 1 and 4: caption, count and structured answer (23 of the first 24 are;
# 11 is not: the vision classifier misreads one shape).
SEEDS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12)
IMAGE_TOKENS = {1: 313, 4: 757}  # 640x480 and most landscape frames; portrait ones differ at num_crops 4


def seeded(i: int) -> tuple[S.Scene, np.ndarray]:
    rng = np.random.default_rng([777, i])
    scene = S.random_scene(rng, n_shapes=1 + i % 3)
    return scene, S.draw(scene, rng)


@pytest.fixture(scope="module", params=["ort-genai", "openvino"])
def worker(request: pytest.FixtureRequest):
    backend = request.param
    model = real_model(package_file(FOLDERS[backend]), backend, num_crops=1, max_new_tokens=96)
    with running(model, watchdog(first_token_s=10.0, token_s=3.0, generation_s=20.0, total_s=30.0),
                 loader=REAL) as sup:  # fmt: skip
        yield sup


_ids = iter(range(1_000_000))


def ask(
    sup: Supervisor, image: np.ndarray, prompt: str = S.CAPTION_PROMPTS[0], num_crops: int | None = None,
    schema: dict | None = None, then: np.ndarray | None = None,
):  # fmt: skip
    """One job through the supervisor: the frame (and `then`, a second one) goes to the worker
    through the shared-memory slot."""
    frame = Frame(image=image, captured_at=time.time(), monotonic=time.monotonic(), seq=next(_ids))
    images = (image,) if then is None else (image, then)
    request = GenerationRequest(prompt=prompt, images=images, max_new_tokens=96, json_schema=schema,
                                num_crops=num_crops)  # fmt: skip
    job = Job(id=f"j{frame.seq}", task="t", kind="structured" if schema else "caption", trigger="command",
              request=request, frame=frame, created=time.monotonic())  # fmt: skip
    outcome = sup.submit(job)
    assert outcome.ok and outcome.generation is not None, outcome.failure
    return outcome.generation


@pytest.mark.parametrize("num_crops", [1, 4])
def test_captions_of_seeded_scenes_name_every_shape_color_and_third(
    worker: Supervisor, num_crops: int
) -> None:
    for i in SEEDS[:6]:
        scene, image = seeded(i)
        gen = ask(worker, image, S.CAPTION_PROMPTS[i % len(S.CAPTION_PROMPTS)], num_crops=num_crops)
        assert gen.text.strip() == S.caption(scene), (i, scene.width, scene.height)
        if scene.width > scene.height:
            assert gen.stats.image_tokens == IMAGE_TOKENS[num_crops]


def _one_shape(bgr: tuple[int, int, int], shape: str = "circle") -> np.ndarray:
    img = np.full((480, 640, 3), 128, np.uint8)
    S.draw_shape(img, shape, 320, 240, 70, bgr, cv2.LINE_AA)
    return img


def test_a_pure_blue_shape_is_called_blue(worker: Supervisor) -> None:
    """Frames are BGR in the pipeline: (255, 0, 0) is blue; a swap to RGB anywhere would say red."""
    assert ask(worker, _one_shape((255, 0, 0))).text.strip() == "A blue circle in the center."
    assert ask(worker, _one_shape((0, 0, 255), "square")).text.strip() == "A red square in the center."
    assert (
        ask(worker, _one_shape((0, 255, 255), "triangle")).text.strip() == "A yellow triangle in the center."
    )


def test_the_caption_follows_the_frame_from_job_to_job(worker: Supervisor) -> None:
    """Alternating scenes of different sizes through the one frame slot: never the previous frame."""
    pairs = [seeded(i) for i in (2, 3, 4, 5)]
    for scene, image in pairs + pairs[::-1]:
        assert ask(worker, image).text.strip() == S.caption(scene)


def test_questions_and_structured_answers(worker: Supervisor) -> None:
    for i in SEEDS[6:]:
        scene, image = seeded(i)
        assert ask(worker, image, "How many shapes are there?").text.strip() == S.answer_count(scene)
        gen = ask(worker, image, S.STRUCTURED_PROMPTS[i % len(S.STRUCTURED_PROMPTS)], schema=S.SCHEMA)
        assert gen.schema_error is None and gen.data == json.loads(S.as_json(scene)), gen.text


def test_questions_bind_the_shape_and_color_asked_about(worker: Supervisor) -> None:
    """Color / exists / where about a shape that is there and one that is not: the answer depends on
    the words of the question, not only on the picture."""
    for i in SEEDS[:6]:
        scene, image = seeded(i)
        there = scene.shapes[i % len(scene.shapes)]
        absent = next(
            (sh, c)
            for sh in S.SHAPES
            for c in S.COLORS
            if all((s.shape, s.color) != (sh, c) for s in scene.shapes)
        )
        missing_shape = next((sh for sh in S.SHAPES if all(s.shape != sh for s in scene.shapes)), None)
        asked = {
            f"What color is the {there.shape}?": S.answer_color(scene, there.shape),
            f"Is there a {there.color} {there.shape}?": "yes",
            f"Is there a {absent[1]} {absent[0]}?": "no",
            f"Where is the {there.color} {there.shape}?": S.answer_where(scene, there.color, there.shape),
            f"Where is the {absent[1]} {absent[0]}?": f"there is no {absent[1]} {absent[0]}",
        }
        if missing_shape:
            asked[f"What color is the {missing_shape}?"] = f"there is no {missing_shape}"
        for prompt, expected in asked.items():
            assert ask(worker, image, prompt).text.strip() == expected, (i, prompt)


# Scene pairs (seed [778, i]): a scene and the same scene after random edits, drawn at one size; pairs
# that both backends answer right in both orders at num_crops 1 and 4 (23 of the first 24 are; 7 is
# not: the vision classifier misreads a shape in one frame).
CHANGE_SEEDS = (0, 1, 3, 4, 5, 6)


def changed_pair(i: int) -> tuple[S.Scene, np.ndarray, S.Scene, np.ndarray]:
    rng = np.random.default_rng([778, i])
    before = S.random_scene(rng, n_shapes=1 + i % 3)
    after = S.random_change(before, rng)
    while after == before:  # every pair here has a change (the order test needs one)
        after = S.random_change(before, rng)
    return before, S.draw(before, rng), after, S.draw(after, rng)


@pytest.mark.parametrize("num_crops", [1, 4])
def test_what_changed_between_two_frames_in_their_order(worker: Supervisor, num_crops: int) -> None:
    """Two frames through the slot, one job: the answer names what appeared, disappeared or moved,
    and swapping the frames swaps the answer (frames reach the model in the request's order)."""
    for i in CHANGE_SEEDS:
        before, a, after, b = changed_pair(i)
        prompt = S.CHANGE_PROMPTS[i % len(S.CHANGE_PROMPTS)]
        gen = ask(worker, a, prompt, num_crops=num_crops, then=b)
        assert gen.text.strip() == S.answer_changed(before, after), (i, before, after)
        back = ask(worker, b, prompt, num_crops=num_crops, then=a)
        assert back.text.strip() == S.answer_changed(after, before), (i, after, before)
        if before.width > before.height:
            assert gen.stats.image_tokens == 2 * IMAGE_TOKENS[num_crops]


def test_the_same_frame_twice_is_nothing_changed(worker: Supervisor) -> None:
    _, a, _, _ = changed_pair(0)
    assert ask(worker, a, S.CHANGE_PROMPTS[0], then=a).text.strip() == S.NOTHING_CHANGED


def test_at_least_90_percent_of_fresh_scenes_are_captioned_right(worker: Supervisor) -> None:
    """60 held-out scenes (a seed the trainer never used), >= 90 % right. Fixed so CI never fails by
    chance (a new seed each run would, ~3 % per backend at the measured 95 %); a pipeline that blurs,
    swaps channels or serves stale frames falls far below it. EDGE_TEST_FRESH_SCENES=1: a new seed."""
    fresh = os.environ.get("EDGE_TEST_FRESH_SCENES") == "1"
    seed = int.from_bytes(os.urandom(4), "little") if fresh else 20261129
    rng = np.random.default_rng(seed)
    right = []
    for _ in range(60):
        scene = S.random_scene(rng, n_shapes=int(rng.integers(1, 4)))
        right.append(ask(worker, S.draw(scene, rng)).text.strip() == S.caption(scene))
    assert sum(right) >= 54, f"{sum(right)}/60 right (seed {seed})"
