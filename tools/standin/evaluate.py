"""Check the exported folders through the project's real backends (edge.inference.*), both runtimes.

Held-out scenes (seeds disjoint from training) at sizes over the whole grammar; per backend and
num_crops: caption exact match, question answers, structured output (constrained decoding with the
world's schema) valid and right, and the ORT-vs-OpenVINO agreement on the same requests.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from . import world as W

log = logging.getLogger(__name__)

EVAL_SEED = 987654


def cases(n: int) -> list[tuple[np.ndarray, W.Scene, list[tuple[str, str, str, dict | None]]]]:
    """n held-out scenes, each with a caption, a question and a structured request."""
    out = []
    for i in range(n):
        rng = np.random.default_rng([EVAL_SEED, i])
        scene = W.random_scene(rng, n_shapes=1 + i % 3)
        img = W.draw(scene, rng)
        cap = W.CAPTION_PROMPTS[0] if i % 2 == 0 else W.CAPTION_PROMPTS[rng.integers(len(W.CAPTION_PROMPTS))]
        kind, q, a = "caption", "", ""
        while not kind.startswith("question"):
            kind, q, a = W.sample_task(scene, rng, weights=(0, 1, 0))
        tasks = [
            ("caption", cap, W.caption(scene), None),
            (kind, q, a, None),
            ("json", W.JSON_PROMPTS[i % len(W.JSON_PROMPTS)], W.as_json(scene), W.SCHEMA),
        ]
        out.append((img, scene, tasks))
    return out


def pure_blue() -> tuple[np.ndarray, W.Scene]:
    """A pure-blue (BGR 255,0,0) circle in the center, drawn without jitter: channel order check."""
    import cv2

    img = np.full((480, 640, 3), 128, np.uint8)
    cv2.circle(img, (320, 240), 70, (255, 0, 0), -1, cv2.LINE_AA)
    return img, W.Scene((W.Shape("circle", "blue", "center"),), 640, 480, 128)


def run(out: Path, n: int, backends: list[str], crops: list[int]) -> int:
    from edge.config.settings import model_settings
    from edge.core.messages import GenerationRequest
    from edge.inference.registry import load_backend

    folders = {"ort-genai": out / "ort-phi3v-standin", "openvino": out / "ov-phi3v-standin"}
    names = {"ort": "ort-genai", "ort-genai": "ort-genai", "openvino": "openvino", "ov": "openvino"}
    data = cases(n)
    blue_img, blue_scene = pure_blue()
    answers: dict[tuple, str] = {}
    report: dict[str, dict] = {}
    for b in backends:
        backend_name = names[b]
        for nc in crops:
            settings = model_settings(
                path=folders[backend_name], backend=backend_name, num_crops=nc, max_new_tokens=160
            )
            be = load_backend(settings)
            stats: dict[str, list[int]] = {}
            t0 = time.time()
            failures = []
            for i, (img, scene, tasks) in enumerate(data):
                for kind, prompt, expected, schema in tasks:
                    gen = be.generate(
                        GenerationRequest(
                            prompt=prompt, images=(img,), max_new_tokens=160, json_schema=schema
                        )
                    )
                    text = gen.text.strip()
                    answers[(backend_name, nc, i, kind)] = text
                    if schema is not None:
                        ok = (
                            gen.data is not None
                            and gen.schema_error is None
                            and gen.data == json.loads(expected)
                        )
                        key = "json"
                    else:
                        ok = text == expected
                        key = "caption" if kind == "caption" else "question"
                    stats.setdefault(key, []).append(int(ok))
                    if kind.startswith("question"):
                        stats.setdefault(kind, []).append(int(ok))
                    if not ok and len(failures) < 8:
                        failures.append((i, scene.width, scene.height, prompt[:40], expected, text))
            gen = be.generate(GenerationRequest(prompt=W.CAPTION_PROMPTS[0], images=(blue_img,)))
            stats["pure_blue"] = [int(gen.text.strip() == W.caption(blue_scene))]
            be.close()
            summary = {k: f"{sum(v)}/{len(v)} = {100.0 * sum(v) / len(v):.1f}%" for k, v in stats.items()}
            summary["seconds"] = round(time.time() - t0, 1)
            report[f"{backend_name} num_crops={nc}"] = summary
            log.info("%s nc=%d %s", backend_name, nc, summary)
            for f in failures:
                log.info("  miss %s", f)
    if len({k[0] for k in answers}) == 2:
        for nc in crops:
            keys = [k for k in answers if k[0] == "ort-genai" and k[1] == nc]
            same = [answers[k] == answers.get(("openvino",) + k[1:]) for k in keys]
            report[f"agreement num_crops={nc}"] = (
                f"{sum(same)}/{len(same)} = {100.0 * sum(same) / len(same):.1f}%"
            )
    print(json.dumps(report, indent=2))
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def vision_accuracy(weights: list[Path], n: int = 300, seed: int = 5150) -> dict[str, str]:
    """Held-out scenes (seed [seed, i], the whole grammar, num_crops 1 view) whose every third the
    classifier gets right (shape, and color where a shape is), per weights file: the cap on captions."""
    import torch

    from . import vision as V
    from .train import _quantize, to_input

    models = {}
    for path in weights:
        model = V.Vision()
        model.load_state_dict(torch.load(path, map_location="cpu"))
        models[str(path)] = model.eval()
    right = dict.fromkeys(models, 0)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        scene = W.random_scene(rng)
        x = to_input(_quantize(V.global_view(W.draw(scene, rng), 1))[None])
        shapes, colors = V.targets(scene)
        for name, model in models.items():
            with torch.no_grad():
                ls, lc = V.split_logits(model(x))
            ok = (ls.argmax(-1)[0].numpy() == shapes).all() and all(
                colors[t] < 0 or lc.argmax(-1)[0, t].item() == colors[t] for t in range(3)
            )
            right[name] += int(ok)
    return {name: f"{k}/{n}" for name, k in right.items()}
