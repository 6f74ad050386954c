"""Smoke checks of the committed fixture models on the real runtimes (structure only: the models are
random, so their text is noise; token counts, image token counts and stop behaviour are not).

The regeneration test at the end rebuilds every folder with tools/make_fixture_models.py; it needs the
`fixtures` extra (torch, transformers, the ORT GenAI model builder) and is skipped without it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "models"
GENERATOR = REPO / "tools" / "make_fixture_models.py"
NEW_TOKENS = 6
# Padded HD sizes (multiples of 336) -> image tokens, from the Phi-3 HD formula
# ((h/336)(w/336)+1)*144 + 1 + (h/336+1)*12.
HD_TOKENS = {(336, 336): 313, (672, 672): 757, (336, 1008): 601, (1344, 1344): 2509}
FRAME_SIZES = ((320, 240), (640, 480))  # (width, height)


def phi3_hd_tokens(height: int, width: int) -> int:
    hc, wc = height // 336, width // 336
    return (hc * wc + 1) * 144 + 1 + (hc + 1) * 12


def hd_tokens_for_image(width: int, height: int, num_crops: int) -> int:
    """Image tokens of a width x height frame after the Phi-3 HD transform with num_crops."""
    if width < height:
        width, height = height, width
    ratio = width / height
    scale = 1
    while scale * math.ceil(scale / ratio) <= num_crops:
        scale += 1
    new_w = (scale - 1) * 336
    padded_h = math.ceil(int(new_w / ratio) / 336) * 336
    return phi3_hd_tokens(padded_h, new_w)


def load_manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text(encoding="utf-8"))


MANIFEST = load_manifest(MODELS)
END_ID = MANIFEST["tokens"]["end"]


def entries(backend: str | None = None, kind: str | None = None) -> list[dict]:
    return [
        m
        for m in MANIFEST["models"]
        if (backend is None or m["backend"] == backend) and (kind is None or m["kind"] == kind)
    ]


def ids_of(models: list[dict]) -> list[str]:
    return [m["name"] for m in models]


def frame(width: int, height: int) -> np.ndarray:
    """A deterministic RGB uint8 HWC test frame (gradient + noise)."""
    rng = np.random.default_rng(width * height)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    img = (x + y) / 2 + rng.normal(0, 20, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg_bytes(width: int, height: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", frame(width, height)[..., ::-1])
    assert ok
    return buf.tobytes()


# ---------------------------------------------------------------- runtime helpers (shared with regen)


def ort_text_generate(model_dir: Path, max_new: int, force_length: bool) -> tuple[list[int], bool]:
    """Greedy-generate after a chat prompt; returns (new token ids incl. a final EOS, is_done)."""
    import onnxruntime_genai as og

    model = og.Model(str(model_dir))
    tokenizer = og.Tokenizer(model)
    ids = tokenizer.encode("<|user|>\nWhat is in the frame?<|end|>\n<|assistant|>\n")
    params = og.GeneratorParams(model)
    total = len(ids) + max_new
    params.set_search_options(max_length=total, **({"min_length": total} if force_length else {}))
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    new: list[int] = []
    while not generator.is_done():
        generator.generate_next_token()
        new.append(int(generator.get_next_tokens()[0]))
    return new, generator.is_done()


def ort_vision_generate(model_dir: Path, image: bytes | None, max_new: int, force_length: bool) -> dict:
    """Run the multimodal processor + generator; returns token counts and the new tokens."""
    import onnxruntime_genai as og

    model = og.Model(str(model_dir))
    processor = model.create_multimodal_processor()
    tag = "<|image_1|>\n" if image is not None else ""
    prompt = f"<|user|>\n{tag}What is in the frame?<|end|>\n<|assistant|>\n"
    images = og.Images.open_bytes(image) if image is not None else None
    inputs = processor(prompt, images=images)
    input_ids = inputs["input_ids"].as_numpy()
    result: dict[str, Any] = {"prompt_len": int(input_ids.shape[1]), "image_ids": int((input_ids < 0).sum())}
    if image is not None:
        result["num_image_tokens"] = int(inputs["num_image_tokens"].as_numpy().sum())
        result["image_sizes"] = inputs["image_sizes"].as_numpy().reshape(-1, 2).tolist()
        result["pixel_values"] = inputs["pixel_values"].as_numpy()
    params = og.GeneratorParams(model)
    total = result["prompt_len"] + max_new
    params.set_search_options(max_length=total, **({"min_length": total} if force_length else {}))
    generator = og.Generator(model, params)
    generator.set_inputs(inputs)
    new: list[int] = []
    while not generator.is_done():
        generator.generate_next_token()
        new.append(int(generator.get_next_tokens()[0]))
    result["new"] = new
    return result


def ov_generate(model_dir: Path, kind: str, images: list[np.ndarray], max_new: int, ignore_eos: bool):
    """Generate with LLMPipeline / VLMPipeline; returns (generated token ids, input token count)."""
    import openvino as ov
    import openvino_genai as ovg

    class Collect(ovg.StreamerBase):
        def __init__(self) -> None:
            super().__init__()
            self.tokens: list[int] = []

        def write(self, token):
            self.tokens.extend(token if isinstance(token, list) else [token])
            return ovg.StreamingStatus.RUNNING

        def end(self) -> None:
            pass

    config = ovg.GenerationConfig(max_new_tokens=max_new)
    config.ignore_eos = ignore_eos
    streamer = Collect()
    if kind == "text":
        pipe = ovg.LLMPipeline(str(model_dir), "CPU")
        result = pipe.generate(["What is in the frame?"], config, streamer)
    else:
        pipe = ovg.VLMPipeline(str(model_dir), "CPU")
        tensors = [ov.Tensor(img) for img in images]
        result = pipe.generate(
            "What is in the frame?", images=tensors, generation_config=config, streamer=streamer
        )
    return (
        streamer.tokens,
        result.perf_metrics.get_num_input_tokens(),
        result.perf_metrics.get_num_generated_tokens(),
    )


def check_loads_and_generates(root: Path, entry: dict) -> int:
    """One short generation per folder; eos-biased folders must stop at once. Returns the new tokens."""
    path = root / entry["name"]
    biased = entry["eos_biased"]
    if entry["backend"] == "ort-genai" and entry["kind"] == "text":
        new, done = ort_text_generate(path, NEW_TOKENS, force_length=not biased)
        assert done
        assert new == [END_ID] if biased else len(new) == NEW_TOKENS
        return len(new)
    elif entry["backend"] == "ort-genai":
        out = ort_vision_generate(path, jpeg_bytes(320, 240), NEW_TOKENS, force_length=not biased)
        assert out["image_ids"] == out["num_image_tokens"] > 0
        assert out["new"] == [END_ID] if biased else len(out["new"]) == NEW_TOKENS
        return len(out["new"])
    else:
        images = [frame(320, 240)] if entry["kind"] == "vision" else []
        tokens, _, generated = ov_generate(path, entry["kind"], images, NEW_TOKENS, ignore_eos=not biased)
        assert generated == (1 if biased else NEW_TOKENS)
        assert len(tokens) >= generated - 1
        return int(generated)


# ---------------------------------------------------------------- the committed folders


def test_manifest_matches_folders() -> None:
    on_disk = {p.name for p in MODELS.iterdir() if p.is_dir()}
    listed = {m["name"] for m in MANIFEST["models"]}
    assert listed == on_disk
    for m in MANIFEST["models"]:
        assert m["kind"] in ("text", "vision")
        assert m["backend"] in ("ort-genai", "openvino")
        assert isinstance(m["eos_biased"], bool)
    assert {(m["backend"], m["kind"]) for m in MANIFEST["models"]} == {
        ("ort-genai", "text"),
        ("ort-genai", "vision"),
        ("openvino", "text"),
        ("openvino", "vision"),
    }


def test_committed_files_are_world_readable() -> None:
    for path in MODELS.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_one_tokenizer_shared_by_every_folder() -> None:
    originals = {(MODELS / m["name"] / "tokenizer.json").read_bytes() for m in entries("ort-genai")}
    assert len(originals) == 1
    config = json.loads((MODELS / "ort-phi3-fp32" / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "LlamaTokenizer"
    specials = {t["content"] for t in config["added_tokens_decoder"].values() if t["special"]}
    assert {"<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>", "<|image|>"} <= specials


@pytest.mark.parametrize("entry", MANIFEST["models"], ids=ids_of(MANIFEST["models"]))
def test_loads_and_generates(entry: dict) -> None:
    assert check_loads_and_generates(MODELS, entry) == (1 if entry["eos_biased"] else NEW_TOKENS)


@pytest.mark.parametrize("entry", entries("ort-genai", "vision"), ids=ids_of(entries("ort-genai", "vision")))
@pytest.mark.parametrize("size", FRAME_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_ort_vision_image_tokens_follow_phi3_hd(entry: dict, size: tuple[int, int]) -> None:
    out = ort_vision_generate(
        MODELS / entry["name"], jpeg_bytes(*size), 2, force_length=not entry["eos_biased"]
    )
    [(h, w)] = out["image_sizes"]
    assert h % 336 == 0 and w % 336 == 0
    assert out["num_image_tokens"] == phi3_hd_tokens(h, w) == out["image_ids"]
    assert out["new"] == [END_ID] if entry["eos_biased"] else len(out["new"]) == 2


@pytest.mark.parametrize("hw", sorted(HD_TOKENS), ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_ort_vision_graph_returns_one_row_per_image_token(hw: tuple[int, int]) -> None:
    """The vision graph alone, fed the way the project's own num_crops=4 preprocessing feeds it."""
    import onnxruntime as ort

    gc = json.loads((MODELS / "ort-phi3v-fp32" / "genai_config.json").read_text(encoding="utf-8"))
    session = ort.InferenceSession(str(MODELS / "ort-phi3v-fp32" / gc["model"]["vision"]["filename"]))
    pixels = np.zeros((1, 5, 3, 336, 336), np.float32)
    (features,) = session.run(None, {"pixel_values": pixels, "image_sizes": np.array([hw], np.int64)})
    assert features.shape == (HD_TOKENS[hw], gc["model"]["decoder"]["hidden_size"])


def test_ort_vision_text_only_prompt() -> None:
    out = ort_vision_generate(MODELS / "ort-phi3v-fp32", None, 3, force_length=True)
    assert out["image_ids"] == 0
    assert len(out["new"]) == 3


@pytest.mark.parametrize("entry", entries("openvino", "vision"), ids=ids_of(entries("openvino", "vision")))
@pytest.mark.parametrize("size", FRAME_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_ov_vision_generates_on_frames(entry: dict, size: tuple[int, int]) -> None:
    tokens, _, generated = ov_generate(MODELS / entry["name"], "vision", [frame(*size)], 3, ignore_eos=True)
    assert generated == 3
    assert len(tokens) >= 2


@pytest.mark.parametrize("entry", entries("openvino", "vision"), ids=ids_of(entries("openvino", "vision")))
def test_ov_vision_image_tokens_follow_phi3_hd(entry: dict) -> None:
    """OpenVINO GenAI honours num_crops 4 from preprocessor_config.json: both frames map to a 2x2 HD
    layout (757 image tokens). Only square layouts are checked: for 1xN layouts OpenVINO GenAI
    2026.4.1 counts newline tokens by crop columns instead of rows (the runtime's own count)."""
    expected = hd_tokens_for_image(640, 480, num_crops=4)
    assert expected == hd_tokens_for_image(320, 240, num_crops=4) == HD_TOKENS[(672, 672)]
    path = MODELS / entry["name"]
    _, text_only, _ = ov_generate(path, "vision", [], 1, ignore_eos=True)
    counts = {ov_generate(path, "vision", [frame(*size)], 1, ignore_eos=True)[1] for size in FRAME_SIZES}
    assert len(counts) == 1
    extra = counts.pop() - text_only - expected
    assert 0 <= extra <= 8  # the image tag's separator tokens


# ---------------------------------------------------------------- regeneration


def _can_regenerate() -> bool:
    needed = ("torch", "transformers", "onnxruntime_genai.models.builder", "optimum.intel")
    try:
        return all(importlib.util.find_spec(name) is not None for name in needed)
    except ModuleNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(not _can_regenerate(), reason="needs the fixtures extra (torch, transformers, builder)")
def test_regenerated_models_load(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path)], check=True, timeout=600)
    manifest = load_manifest(tmp_path)
    assert [m["name"] for m in manifest["models"]] == [m["name"] for m in MANIFEST["models"]]
    assert manifest["tokens"] == MANIFEST["tokens"]
    for entry in manifest["models"]:
        check_loads_and_generates(tmp_path, entry)
