#!/usr/bin/env python3
"""Events and motion crops: image tokens and time to first token, on a real backend.

    python benchmarks/events_bench.py [--model tests/fixtures/models/ort-phi3v-fp32] [--backend ort-genai]
                                      [--num-crops 4] [--runs 3]

A. An event of 3 frames (one prompt, <|image_1|>..<|image_3|>) against 3 single-frame jobs, at the
   model's num_crops and at a per-task num_crops of 1.
B. A 1280x720 frame with a small moving object: the whole frame against the motion crop (the real
   gate's mask -> imaging.crops.motion_box), both at num_crops 1 and at the model's num_crops.
Medians of --runs after one warm-up each. Prints a table; asserts nothing. On the random fixture
models the numbers are the runtime's cost of these token counts, not a real model's speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.config.settings import GateSettings, model_settings  # noqa: E402
from edge.core.messages import Frame, GenerationRequest  # noqa: E402
from edge.imaging.crops import crop  # noqa: E402
from edge.imaging.gate import Gate  # noqa: E402
from edge.inference.registry import load_backend  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _frames(n: int, h: int = 480, w: int = 640) -> list[np.ndarray]:
    from edge.capture.testsrc import render_frame

    return [render_frame(i * 5, w, h, 10.0) for i in range(n)]


def _run(backend: Any, images: tuple[np.ndarray, ...], num_crops: int | None, runs: int) -> tuple[int, float]:
    req = GenerationRequest(prompt="What happened?", images=images, max_new_tokens=1, num_crops=num_crops)
    backend.generate(req)  # warm-up
    gens = [backend.generate(req) for _ in range(runs)]
    return gens[0].stats.image_tokens, statistics.median(g.stats.ttft_ms for g in gens)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=REPO / "tests/fixtures/models/ort-phi3v-fp32")
    ap.add_argument("--backend", default="ort-genai")
    ap.add_argument("--providers", default="cpu")
    ap.add_argument("--num-crops", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    model = model_settings(
        path=a.model, backend=a.backend, providers=a.providers.split(","), num_crops=a.num_crops
    )
    backend = load_backend(model)
    rows: list[tuple[str, int, float]] = []
    frames = tuple(_frames(3))
    for crops in (None, 1):
        k = a.num_crops if crops is None else crops
        tok, ttft = _run(backend, frames, crops, a.runs)
        rows.append((f"event, 3 frames, 640x480, num_crops {k}: one prompt", tok, ttft))
        singles = [_run(backend, (f,), crops, a.runs) for f in frames]
        rows.append(
            (
                f"3 single-frame jobs, num_crops {k}: sum",
                sum(t for t, _ in singles),
                sum(s for _, s in singles),
            )
        )
    # B: 1280x720, a 48x48 object moving on a static scene; the box from the real gate
    bg = _frames(1, 720, 1280)[0].copy()
    bg[:] = np.clip(bg.astype(np.int16) // 2 + 60, 0, 255).astype(np.uint8)
    gate = Gate(GateSettings(motion_threshold=0.0001, min_interval_s=0))
    gate.decide(Frame(bg, 0.0, 0.0, 0), 0.0)
    moved = bg.copy()
    moved[560:608, 1000:1048] = (40, 220, 250)
    gate.decide(Frame(moved, 0.1, 0.1, 1), 0.1)
    box = gate.motion_box(Frame(moved, 0.1, 0.1, 1))
    assert box is not None
    roi = crop(moved, box)
    for crops in (1, a.num_crops):
        tok, ttft = _run(backend, (moved,), crops, a.runs)
        rows.append((f"1280x720 full frame, num_crops {crops}", tok, ttft))
        tok, ttft = _run(backend, (roi,), crops, a.runs)
        rows.append((f"ROI {box[2]}x{box[3]} at {box[0]},{box[1]}, num_crops {crops}", tok, ttft))
    backend.close()
    print(
        f"model {a.model.name} ({a.backend}, {a.providers}), model num_crops {a.num_crops}, median of {a.runs}"
    )
    print(f"{'case':58} {'image tokens':>12} {'ttft ms':>9}")
    for name, tok, ttft in rows:
        print(f"{name:58} {tok:>12} {ttft:>9.1f}")
    # The object's share of the picture the model sees: a 48 px object in 1280 px vs in the box.
    print(f"object width share: full frame {48 / 1280:.1%}, ROI {48 / box[2]:.1%}")


if __name__ == "__main__":
    main()
