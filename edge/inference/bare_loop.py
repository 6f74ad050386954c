"""Bare generation loops straight on the runtime APIs: the baseline the runtime is measured against.

This file imports NOTHING of edge, on purpose: it is the independent baseline for `edge bench`'s
overhead figure and for benchmarks/backend_bench.py: going through edge's backend would measure edge
against itself. It sits in edge/inference (the package that owns the runtime SDKs); the only edge
module that imports it is the bench's in-process probe (overhead_probe.py, its own process), which runs
`ort_decode` on the backend's model object; `edge bench` runs this file as a script, by its path:

    python edge/inference/bare_loop.py --backend ort-genai --path MODEL [--provider cpu] [--num-crops 4]

and talks JSON lines: it prints {"ok": true, "load_ms": ...} once loaded, then answers each
{"inputs": "x.npz", "max_new": 64} line on stdin with one {"ok": true, "new_tokens", "ttft_ms",
"decode_tok_s", "total_ms", "prompt_tokens"} line; ORT's adds "steps_ms", the per-token decode times
(token k to k+1), stamped after each generate_next_token as the daemon's token clock stamps them. Inputs are prepared by the caller: for ORT the
prompt split into text pieces and image slots plus the preprocessed pixel tensors (so both sides
feed the model identical tensors), for OpenVINO the chat prompt and the RGB frame.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- ONNX Runtime GenAI


def ort_load(
    path: str, provider: str = "cpu", options: dict[str, str] | None = None, threads: int | None = None
) -> tuple[Any, Any]:
    import onnxruntime_genai as og

    config = og.Config(path)
    config.clear_providers()
    if threads:  # intra_op_num_threads on every session the folder has (as the runtime's [model] threads)
        model = json.loads((Path(path) / "genai_config.json").read_text())["model"]
        sessions = [k for k in ("decoder", "vision", "embedding") if isinstance(model.get(k), dict)]
        config.overlay(
            json.dumps(
                {"model": {k: {"session_options": {"intra_op_num_threads": threads}} for k in sessions}}
            )
        )
    if provider != "cpu":
        config.append_provider(provider)
        for key, value in (options or {}).items():
            config.set_provider_option(provider, key, str(value))
    model = og.Model(config)
    return model, og.Tokenizer(model)


def ort_generate(
    model: Any, tokenizer: Any, prompt: str, max_new: int, image_paths: list[str] | None = None
) -> dict[str, Any]:
    """append_tokens (or the runtime's own processor for images) + generate_next_token loop."""
    import onnxruntime_genai as og

    t0 = time.perf_counter()
    params = og.GeneratorParams(model)
    if image_paths:
        processor = model.create_multimodal_processor()
        inputs = processor(prompt, images=og.Images.open(*image_paths))
        prompt_len = int(inputs["input_ids"].shape()[1])
        params.set_search_options(max_length=prompt_len + max_new, do_sample=False)
        gen = og.Generator(model, params)
        gen.set_inputs(inputs)
    else:
        ids = tokenizer.encode(prompt)
        prompt_len = len(ids)
        params.set_search_options(max_length=prompt_len + max_new, do_sample=False)
        gen = og.Generator(model, params)
        gen.append_tokens(ids)
    n = 0
    t_first = 0.0
    while not gen.is_done():
        gen.generate_next_token()
        n += 1
        if n == 1:
            t_first = time.perf_counter()
    text = tokenizer.decode(gen.get_sequence(0)[prompt_len:])
    t_end = time.perf_counter()
    return {"new_tokens": n, "ttft_s": t_first - t0, "total_s": t_end - t0, "text": text}


def ort_generate_prepared(
    model: Any, tokenizer: Any, pieces: list[str | int], arrays: dict[str, np.ndarray], max_new: int
) -> dict[str, Any]:
    """The same loop on caller-prepared inputs: text pieces are tokenized here, an int piece is
    image slot i and becomes num_image_tokens[i] copies of -(i+1) (the phi3v placeholder ids)."""
    import onnxruntime_genai as og

    t0 = time.perf_counter()
    parts = []
    for piece in pieces:
        if isinstance(piece, str):
            parts.append(np.asarray(tokenizer.encode(piece), np.int32).reshape(-1))
        else:
            parts.append(np.full(int(arrays["num_image_tokens"][piece][0]), -(piece + 1), np.int32))
    ids = np.concatenate(parts)[None, :]
    prompt_len = int(ids.shape[-1])
    if "pixel_values" in arrays:
        named = og.NamedTensors()
        named["input_ids"] = ids
        for key in ("pixel_values", "image_sizes", "num_image_tokens"):
            named[key] = arrays[key]
        return ort_decode(model, tokenizer, named, prompt_len, max_new, t0)
    return ort_decode(model, tokenizer, ids, prompt_len, max_new, t0)


def ort_decode(
    model: Any,
    tokenizer: Any,
    inputs: Any,
    prompt_len: int,
    max_new: int,
    t0: float | None = None,
    sdk: Any = None,
) -> dict[str, Any]:
    """The bare generate_next_token loop on ready inputs (an ids array, or NamedTensors for images).

    Split out so the bench's in-process probe (overhead_probe.py) can run this very loop on the model
    object the daemon's backend holds; `t0` is when the caller started preparing the inputs, `sdk` a
    stand-in for the onnxruntime_genai module (the probe's, which interleaves a partner's tokens)."""
    import onnxruntime_genai

    og = sdk if sdk is not None else onnxruntime_genai

    t0 = time.perf_counter() if t0 is None else t0
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=prompt_len + max_new, do_sample=False)
    gen = og.Generator(model, params)
    if isinstance(inputs, np.ndarray):
        gen.append_tokens(inputs)
    else:
        gen.set_inputs(inputs)
    n = 0
    t_first = 0.0
    stamps: list[float] = []  # each token's time, kept as the daemon's token clock keeps it for the bench
    while not gen.is_done():
        gen.generate_next_token()
        stamps.append(time.perf_counter())
        n += 1
        if n == 1:
            t_first = time.perf_counter()
    out = gen.get_sequence(0)[prompt_len:]
    del gen
    text = tokenizer.decode(out) if len(out) else ""
    t_end = time.perf_counter()
    timings = _timings(n, t0, t_first, t_end, prompt_len, text)
    timings["steps_ms"] = [round((b - a) * 1000.0, 4) for a, b in zip(stamps, stamps[1:], strict=False)]
    return timings


# --------------------------------------------------------------------------- OpenVINO GenAI


def ov_load(path: str, device: str = "CPU", vision: bool = False, **properties: Any) -> Any:
    import openvino_genai as ovg

    return (ovg.VLMPipeline if vision else ovg.LLMPipeline)(path, device, **properties)


def _noop_streamer() -> Any:
    import openvino_genai as ovg

    running = ovg.StreamingStatus.RUNNING

    class Noop(ovg.StreamerBase):  # type: ignore[misc]
        def write(self, token: Any) -> Any:
            return running

        def end(self) -> None:
            return None

    return Noop()


def ov_generate(
    pipe: Any, prompt: str, max_new: int, images_rgb: list[np.ndarray] | None = None, stream: bool = False
) -> dict[str, Any]:
    """One pipeline.generate(), the prompt used verbatim (no chat template).

    stream=True adds a do-nothing per-token StreamerBase: the runtime's own cost of streaming.
    """
    import openvino as ov

    t0 = time.perf_counter()
    cfg = pipe.get_generation_config()
    cfg.max_new_tokens = max_new
    cfg.apply_chat_template = False
    cfg.do_sample = False
    streamer = _noop_streamer() if stream else None
    if images_rgb is not None:
        tensors = [ov.Tensor(i) for i in images_rgb]
        res = pipe.generate(prompt, images=tensors, generation_config=cfg, streamer=streamer)
    else:
        res = pipe.generate([prompt], cfg, streamer)
    t_end = time.perf_counter()
    pm = res.perf_metrics
    return {
        "new_tokens": int(pm.get_num_generated_tokens()),
        "ttft_s": pm.get_ttft().mean / 1000.0,
        "total_s": t_end - t0,
        "text": res.texts[0],
        "prompt_tokens": int(pm.get_num_input_tokens()),
    }


def ov_crops_folder(path: Path, num_crops: int) -> tuple[Path, Path | None]:
    """(folder to load, temp dir to remove): a symlink shadow with num_crops patched in, if needed."""
    config_path = path / "preprocessor_config.json"
    if not config_path.exists():
        return path, None
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("num_crops") == num_crops:
        return path, None
    shadow = Path(tempfile.mkdtemp(prefix="edge-bare-crops-"))
    for entry in path.resolve().iterdir():
        if entry.name != "preprocessor_config.json":
            os.symlink(entry, shadow / entry.name)
    config["num_crops"] = num_crops
    (shadow / "preprocessor_config.json").write_text(json.dumps(config), encoding="utf-8")
    return shadow, shadow


# --------------------------------------------------------------------------- the JSON-lines server


def _timings(n: int, t0: float, t_first: float, t_end: float, prompt_len: int, text: str) -> dict[str, Any]:
    """Stats computed the way the runtime computes its own (tokens after the first over the time
    from the first token to the end, text decoding included), so the two compare like for like."""
    first = t_first or t_end
    decode_s = t_end - first
    return {
        "new_tokens": n,
        "prompt_tokens": prompt_len,
        "ttft_ms": (first - t0) * 1000.0,
        "total_ms": (t_end - t0) * 1000.0,
        "decode_tok_s": (n - 1) / decode_s if n > 1 and decode_s > 0 else 0.0,
        "text_chars": len(text),
    }


class _Runner:
    def __init__(
        self,
        backend: str,
        path: Path,
        provider: str,
        num_crops: int,
        options: dict[str, Any],
        threads: int | None = None,
    ) -> None:
        self.backend = backend
        self._temp: Path | None = None
        t0 = time.perf_counter()
        if backend == "ort-genai":
            self.model, self.tokenizer = ort_load(str(path), provider, options, threads)
        else:
            vision = (path / "openvino_vision_embeddings_model.xml").exists()
            folder = path
            if vision:
                folder, self._temp = ov_crops_folder(path, num_crops)
            if threads and provider.upper().startswith("CPU"):
                options = {"INFERENCE_NUM_THREADS": threads, **options}
            self.pipe = ov_load(str(folder), provider.upper(), vision=vision, **options)
            self.vision = vision
        self.load_ms = (time.perf_counter() - t0) * 1000.0

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        data = np.load(request["inputs"], allow_pickle=False)
        arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
        max_new = int(request["max_new"])
        if self.backend == "ort-genai":
            return ort_generate_prepared(self.model, self.tokenizer, meta["pieces"], arrays, max_new)
        t0 = time.perf_counter()
        rgb = [arrays["frame_rgb"]] if self.vision and "frame_rgb" in arrays else None
        res = ov_generate(self.pipe, meta["prompt"], max_new, rgb)
        t_end = t0 + res["total_s"]
        return _timings(res["new_tokens"], t0, t0 + res["ttft_s"], t_end, res["prompt_tokens"], res["text"])

    def close(self) -> None:
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)


def _reply(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="bare runtime loop for edge bench (JSON lines on stdin/stdout)")
    ap.add_argument("--backend", choices=("ort-genai", "openvino"), required=True)
    ap.add_argument("--path", type=Path, required=True)
    ap.add_argument("--provider", default="cpu")
    ap.add_argument("--num-crops", type=int, default=4)
    ap.add_argument("--provider-options", default="{}", help="JSON object of provider options")
    ap.add_argument("--threads", type=int, default=None, help="runtime CPU threads (default: the runtime's)")
    ap.add_argument("--nice", type=int, default=0, help="nice value of this process (as [model] worker_nice)")
    args = ap.parse_args(argv)
    if args.nice > 0:
        os.nice(args.nice)
    try:
        runner = _Runner(
            args.backend,
            args.path,
            args.provider,
            args.num_crops,
            json.loads(args.provider_options),
            args.threads,
        )
    except Exception as err:
        _reply(
            {"ok": False, "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
        )
        return 1
    _reply({"ok": True, "load_ms": runner.load_ms, "pid": os.getpid()})
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                _reply({"ok": True, **runner.run(json.loads(line))})
            except Exception as err:
                _reply({"ok": False, "error": f"{type(err).__name__}: {err}".splitlines()[0]})
    finally:
        runner.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
