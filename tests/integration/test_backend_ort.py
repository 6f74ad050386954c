"""ONNX Runtime GenAI backend on the committed tiny fixture models (real runtime, CPU).

The models are random: tests assert structure, token counts, image token counts and stop reasons,
never wording. Prompts were picked so the greedy output is long enough for the stop tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config.settings import OrtGenAIModelSettings
from edge.core.errors import ConfigError, FrameError, GenerationError, ModelError, ProviderError
from edge.core.messages import GenerationRequest
from edge.inference import ort_genai
from edge.inference.phi3v_preprocess import prepare, tokens_for_frame
from edge.inference.prompts import ImageSlot, chat_prompt, split_image_tags
from edge.inference.structured import validate
from tests.helpers.cancel import cancel_from_another_thread
from tests.plugins.models import model_dir

og = pytest.importorskip("onnxruntime_genai")

REPO = Path(__file__).resolve().parents[2]
LONG = "Count the people."  # greedy output runs past 200 tokens on these weights


def _load(name: str, **kw: object) -> ort_genai.OrtGenAIBackend:
    return ort_genai.load(OrtGenAIModelSettings(path=model_dir(name), backend="ort-genai", **kw))


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def text() -> ort_genai.OrtGenAIBackend:
    return _load("ort-phi3-fp32")


@pytest.fixture(scope="module")
def vision() -> ort_genai.OrtGenAIBackend:
    return _load("ort-phi3v-fp32", num_crops=4)


def _check_stats(g, max_new: int) -> None:
    s = g.stats
    assert s.prompt_tokens > 0 and 0 <= s.new_tokens <= max_new
    assert 0 < s.ttft_ms <= s.total_ms
    assert s.decode_tok_s >= 0
    assert s.stop_reason in ("eos", "max_tokens")
    assert (s.stop_reason == "max_tokens") == (s.new_tokens == max_new)
    assert isinstance(g.text, str)


# ----------------------------------------------------------------------------- text


@pytest.mark.parametrize("name", ["ort-phi3-fp32", "ort-phi3-int4"])
def test_text_generation_streams_one_callback_per_token(name: str) -> None:
    backend = _load(name)
    assert (backend.info.backend, backend.info.provider, backend.info.vision) == ("ort-genai", "cpu", False)
    assert backend.info.name == name and backend.info.providers_tried == ()
    seen: list[int] = []
    g = backend.generate(GenerationRequest(prompt=LONG, max_new_tokens=12), on_token=seen.append)
    _check_stats(g, 12)
    assert g.stats.stop_reason == "max_tokens" and g.stats.new_tokens == 12
    assert seen == list(range(1, 13))
    assert g.stats.image_tokens == 0 and g.data is None and g.schema_error is None
    backend.close()


def test_eos_stop_before_the_budget(text: ort_genai.OrtGenAIBackend) -> None:
    g = text.generate(GenerationRequest(prompt="Describe the frame.", max_new_tokens=200))
    _check_stats(g, 200)
    assert g.stats.stop_reason == "eos" and g.stats.new_tokens < 200


def test_immediate_eos_model() -> None:
    eos = _load("ort-phi3-eos")
    calls: list[int] = []
    g = eos.generate(GenerationRequest(prompt=LONG, max_new_tokens=50), on_token=calls.append)
    assert g.stats.stop_reason == "eos" and g.stats.new_tokens == 0 and g.text == ""
    assert calls == [1]  # the <|end|> step still beats the heartbeat


def test_system_prompt_from_request_or_settings() -> None:
    plain = _load("ort-phi3-fp32")
    with_sys = _load("ort-phi3-fp32", system_prompt="You are a camera.")
    req = GenerationRequest(prompt="hi", max_new_tokens=1)
    n_plain = plain.generate(req).stats.prompt_tokens
    n_settings = with_sys.generate(req).stats.prompt_tokens
    n_request = plain.generate(GenerationRequest(prompt="hi", system="You are a camera.", max_new_tokens=1))
    assert n_settings > n_plain and n_request.stats.prompt_tokens == n_settings


def test_sampling_with_temperature(text: ort_genai.OrtGenAIBackend) -> None:
    g = text.generate(GenerationRequest(prompt=LONG, max_new_tokens=16, temperature=0.8))
    _check_stats(g, 16)
    greedy = text.generate(GenerationRequest(prompt=LONG, max_new_tokens=1))
    assert g.stats.prompt_tokens == greedy.stats.prompt_tokens  # sampling changes the answer, not the prompt


# ----------------------------------------------------------------------------- stopping


def test_deadline_returns_partial_text(text: ort_genai.OrtGenAIBackend) -> None:
    g = text.generate(GenerationRequest(prompt=LONG, max_new_tokens=200, deadline_s=0.0))
    assert g.stats.stop_reason == "deadline" and g.stats.new_tokens == 1


def test_deadline_during_slow_decoding(text: ort_genai.OrtGenAIBackend) -> None:
    req = GenerationRequest(prompt=LONG, max_new_tokens=200, deadline_s=0.15)
    g = text.generate(req, on_token=lambda n: time.sleep(0.02))
    assert g.stats.stop_reason == "deadline"
    assert 1 <= g.stats.new_tokens < 200 and g.text


def test_cancel_at_a_token(text: ort_genai.OrtGenAIBackend) -> None:
    cancel = threading.Event()

    def on_token(n: int) -> None:
        if n == 3:
            cancel.set()

    g = text.generate(GenerationRequest(prompt=LONG, max_new_tokens=200), on_token=on_token, cancel=cancel)
    assert g.stats.stop_reason == "cancelled" and g.stats.new_tokens == 3


def test_cancel_from_another_thread(text: ort_genai.OrtGenAIBackend) -> None:
    """Another thread sets the event while the generation runs (tests/helpers/cancel.py); ORT checks
    between tokens: the next token is the last."""
    g, waited = cancel_from_another_thread(
        lambda on_token, cancel: text.generate(
            GenerationRequest(prompt=LONG, max_new_tokens=200), on_token=on_token, cancel=cancel
        )
    )
    assert waited == [True]
    assert g.stats.stop_reason == "cancelled" and g.stats.new_tokens < 200


def test_cancelled_before_start(vision: ort_genai.OrtGenAIBackend) -> None:
    cancel = threading.Event()
    cancel.set()
    calls: list[int] = []
    g = vision.generate(GenerationRequest(prompt=LONG, images=(_frame(480, 640),)), calls.append, cancel)
    assert g.stats.stop_reason == "cancelled" and g.stats.new_tokens == 0 and calls == []


# ----------------------------------------------------------------------------- vision


@pytest.mark.parametrize("num_crops", [1, 4, 16])
def test_image_tokens_follow_num_crops(num_crops: int) -> None:
    backend = _load("ort-phi3v-fp32", num_crops=num_crops)
    assert backend.info.vision
    text_parts = set()
    for h, w in [(480, 640), (720, 1280), (640, 480), (100, 900), (64, 64)]:
        g = backend.generate(GenerationRequest(prompt="What?", images=(_frame(h, w),), max_new_tokens=4))
        _check_stats(g, 4)
        assert g.stats.image_tokens == tokens_for_frame(h, w, num_crops)
        text_parts.add(g.stats.prompt_tokens - g.stats.image_tokens)
    assert len(text_parts) == 1  # the image changes only the image tokens


def test_vga_image_token_counts() -> None:
    counts = [
        _load("ort-phi3v-fp32", num_crops=n)
        .generate(GenerationRequest(prompt="x", images=(_frame(480, 640),), max_new_tokens=1))
        .stats.image_tokens
        for n in (1, 4, 16)
    ]
    assert counts == [313, 757, 1921]


def test_two_images(vision: ort_genai.OrtGenAIBackend) -> None:
    imgs = (_frame(480, 640), _frame(300, 200, seed=1))
    g = vision.generate(GenerationRequest(prompt="Compare.", images=imgs, max_new_tokens=4))
    assert g.stats.image_tokens == tokens_for_frame(480, 640, 4) + tokens_for_frame(300, 200, 4)


def test_text_only_request_on_vision_model(vision: ort_genai.OrtGenAIBackend) -> None:
    g = vision.generate(GenerationRequest(prompt=LONG, max_new_tokens=6))
    assert g.stats.image_tokens == 0 and g.stats.new_tokens == 6


def test_immediate_eos_with_an_image() -> None:
    g = _load("ort-phi3v-eos").generate(GenerationRequest(prompt="x", images=(_frame(480, 640),)))
    assert g.stats.stop_reason == "eos" and g.stats.new_tokens == 0 and g.stats.image_tokens == 757


@pytest.mark.parametrize("size", [(480, 640), (640, 480), (720, 1280), (100, 900), (50, 50)])
def test_pixel_parity_with_the_runtime_processor(size: tuple[int, int], tmp_path: Path) -> None:
    """At the runtime's own num_crops (16) our tensors equal og's processor bit for bit."""
    model = og.Model(str(model_dir("ort-phi3v-fp32")))
    processor = model.create_multimodal_processor()
    tokenizer = og.Tokenizer(model)
    frames = [_frame(*size), _frame(300, 200, seed=3)]
    paths = []
    for i, f in enumerate(frames):
        paths.append(str(tmp_path / f"{i}.png"))  # lossless, so both decoders see the same pixels
        cv2.imwrite(paths[-1], f)
    prompt = chat_prompt("What is in the frame?", num_images=2)
    ref = processor(prompt, images=og.Images.open(*paths))
    pieces = [p.index if isinstance(p, ImageSlot) else p for p in split_image_tags(prompt)]
    ours = prepare(frames, 16, pieces, tokenizer.encode)
    assert np.array_equal(ref["pixel_values"].as_numpy(), ours.pixel_values)
    assert np.array_equal(ref["image_sizes"].as_numpy(), ours.image_sizes)
    assert np.array_equal(ref["num_image_tokens"].as_numpy(), ours.num_image_tokens)
    assert np.array_equal(ref["input_ids"].as_numpy(), ours.input_ids)


# ----------------------------------------------------------------------------- structured output


def test_structured_output_gives_data_or_schema_error(text: ort_genai.OrtGenAIBackend) -> None:
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string"}, "count": {"type": "integer"}},
        "required": ["label", "count"],
    }
    g = text.generate(GenerationRequest(prompt="Count the cars.", max_new_tokens=128, json_schema=schema))
    assert (g.data is None) != (g.schema_error is None)
    if g.data is not None:
        assert validate(g.data, schema) == []
    short = text.generate(GenerationRequest(prompt="Count the cars.", max_new_tokens=2, json_schema=schema))
    assert short.data is None and short.schema_error  # the budget ends inside the JSON


# ----------------------------------------------------------------------------- providers


def test_unavailable_provider_falls_through_to_cpu() -> None:
    backend = _load("ort-phi3-fp32", providers=["cuda", "QNN", "dml", "cpu"])
    assert backend.info.provider == "cpu"
    assert [p for p, _ in backend.info.providers_tried] == ["cuda", "QNN", "dml"]
    assert all(why and "\n" not in why for _, why in backend.info.providers_tried)


@pytest.mark.parametrize("providers", [["cuda"], ["OpenVINO"], ["QNN", "dml"]])
def test_no_provider_loads(providers: list[str]) -> None:
    with pytest.raises(ProviderError) as info:
        _load("ort-phi3-fp32", providers=providers)
    msg = str(info.value)
    assert "\n" not in msg and all(f"{p}:" in msg for p in providers)


def test_provider_options_reach_the_runtime() -> None:
    with pytest.raises(ProviderError, match="QNN"):
        _load("ort-phi3-fp32", providers=["QNN"], provider_options={"qnn": {"backend_path": "libQnnHtp.so"}})


def test_unknown_provider_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown provider 'tpu'"):
        _load("ort-phi3-fp32", providers=["tpu", "cpu"])


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((3, 480, 640), np.uint8),  # CHW
        np.zeros((480, 640, 1), np.uint8),  # 1 channel
        np.zeros((480, 640), np.uint8),  # gray 2-D
        np.zeros((480, 640, 3), np.float32),  # wrong dtype
        np.zeros((8, 8, 3), np.uint8),  # too small
    ],
)
def test_invalid_arrays_are_frame_errors(vision: ort_genai.OrtGenAIBackend, image: np.ndarray) -> None:
    with pytest.raises(FrameError):
        vision.generate(GenerationRequest(prompt="x", images=(image,)))


def test_text_model_refuses_images(text: ort_genai.OrtGenAIBackend) -> None:
    with pytest.raises(GenerationError, match="text-only"):
        text.generate(GenerationRequest(prompt="x", images=(_frame(480, 640),)))


def test_prompt_longer_than_context_is_a_generation_error(text: ort_genai.OrtGenAIBackend) -> None:
    with pytest.raises(GenerationError, match="context"):
        text.generate(GenerationRequest(prompt="hello " * 5000, max_new_tokens=4))


def test_closed_backend_refuses_work() -> None:
    backend = _load("ort-phi3-fp32")
    backend.close()
    with pytest.raises(GenerationError):
        backend.generate(GenerationRequest(prompt="x"))


def test_wrong_folder_format_and_corrupt_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="OpenVINO IR folder"):
        _load("ov-phi3v")
    bad = tmp_path / "bad"
    shutil.copytree(model_dir("ort-phi3-fp32"), bad)
    (bad / "model.onnx").write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ModelError, match="cpu: "):
        ort_genai.load(OrtGenAIModelSettings(path=bad))


_BAD_BYTES_CHILD = r"""
import io, sys
import cv2, numpy as np
from edge.core.errors import FrameError
from edge.imaging.imageio import decode_image_bytes
from edge.inference import ort_genai
from edge.core.messages import GenerationRequest
from edge.config.settings import model_settings, OrtGenAIModelSettings

backend = ort_genai.load(OrtGenAIModelSettings(path=sys.argv[1], num_crops=1))
frame = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
bmp = cv2.imencode(".bmp", frame)[1].tobytes()
cases = {
    "garbage": b"not an image at all",
    "truncated_jpeg": jpeg[:2000],
    "truncated_jpeg_90": jpeg[: int(len(jpeg) * 0.9)],
    "png_header_garbage": b"\x89PNG\r\n\x1a\n" + b"garbage" * 10,
    "empty": b"",
    "bmp": bmp,
    "jpeg": jpeg,
}
for name, data in cases.items():
    try:
        image = decode_image_bytes(data)
        g = backend.generate(GenerationRequest(prompt="x", images=(image,), max_new_tokens=2))
        print(name, "OK", g.stats.image_tokens, flush=True)
    except FrameError as err:
        print(name, "FrameError", str(err).replace(" ", "_")[:60], flush=True)
print("ALIVE", flush=True)
"""


def test_bad_image_bytes_never_reach_the_runtime() -> None:
    """ORT's own decoder dies on garbage/BMP and hangs on a truncated JPEG: run them in a child."""
    proc = subprocess.run(
        [sys.executable, "-c", _BAD_BYTES_CHILD, str(model_dir("ort-phi3v-fp32"))],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=str(REPO),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line != "ALIVE")
    assert "ALIVE" in proc.stdout
    for name in ("garbage", "truncated_jpeg", "truncated_jpeg_90", "png_header_garbage", "empty"):
        assert results[name].startswith("FrameError"), (name, results[name])
    assert results["jpeg"] == "OK 313"
    # BMP is decoded by OpenCV, never by ORT: it becomes an ordinary validated frame
    assert results["bmp"] == "OK 313"


def test_a_raising_token_callback_propagates_and_the_backend_survives(
    text: ort_genai.OrtGenAIBackend,
) -> None:
    def on_token(n: int) -> None:
        if n == 3:
            raise ValueError("heartbeat broke")

    with pytest.raises(ValueError, match="heartbeat broke"):
        text.generate(GenerationRequest(prompt=LONG, max_new_tokens=50), on_token=on_token)
    g = text.generate(GenerationRequest(prompt=LONG, max_new_tokens=4))
    assert g.stats.stop_reason == "max_tokens" and g.stats.new_tokens == 4
