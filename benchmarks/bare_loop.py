"""Bare generation loops straight on the runtime APIs: the baseline our backend layer is measured against.

Imports nothing of edge on purpose (other benchmarks reuse it): same model folder, same prompt
string, same token budget, the minimum of runtime calls. Each generate function returns a dict with
new_tokens, ttft_s, total_s and text.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def ort_load(path: str, provider: str = "cpu") -> tuple[Any, Any]:
    import onnxruntime_genai as og

    config = og.Config(path)
    config.clear_providers()
    if provider != "cpu":
        config.append_provider(provider)
    model = og.Model(config)
    return model, og.Tokenizer(model)


def ort_generate(
    model: Any, tokenizer: Any, prompt: str, max_new: int, image_paths: list[str] | None = None
) -> dict:
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


def ov_load(path: str, device: str = "CPU", vision: bool = False) -> Any:
    import openvino_genai as ovg

    return (ovg.VLMPipeline if vision else ovg.LLMPipeline)(path, device)


def _noop_streamer() -> Any:
    import openvino_genai as ovg

    running = ovg.StreamingStatus.RUNNING

    class Noop(ovg.StreamerBase):
        def write(self, token: Any) -> Any:
            return running

        def end(self) -> None:
            return None

    return Noop()


def ov_generate(
    pipe: Any, prompt: str, max_new: int, images_rgb: list[np.ndarray] | None = None, stream: bool = False
) -> dict:
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
    }
