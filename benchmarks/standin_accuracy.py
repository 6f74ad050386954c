#!/usr/bin/env python3
"""Accuracy of the demo model (the trained Phi-3.5-vision stand-in) on held-out scenes of its world.

    python benchmarks/standin_accuracy.py [--n 500] [--backends ort-genai openvino] [--crops 1 4]
                                          [--ort FOLDER] [--ov FOLDER] [--json OUT]

N scenes drawn from edge.capture.demo_world (all sizes 320x240..1920x1080, portrait and landscape, grey
64-192, 0-3 shapes, JPEG 70-95, clock overlay sometimes; seeds disjoint from the trainer's), each as
a BGR uint8 frame as the grabber hands it, through the project's own backends (edge.inference.ort_genai
/ openvino_genai: their phi3v preprocessing, prompt format and constrained decoding). Per backend and
num_crops: captions fully right (exact sentence), questions answered right (per kind), structured
answers valid (schema) and right (exactly the shapes), with mean image tokens and median ttft beside it;
then how often ORT and OpenVINO give the same text for the same request. Two-image "what changed"
runs only when the model's manifest says it was trained for it. Prints markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.assets import package_file  # noqa: E402
from edge.capture import demo_world as S  # noqa: E402
from edge.config.settings import model_settings  # noqa: E402
from edge.core.messages import GenerationRequest  # noqa: E402

BENCH_SEED = 424242  # held out: the trainer draws from seeds 1234 and 1235 (tools/standin/train.py)
MAX_NEW = 96
MANIFEST = "standin-manifest.json"


def cases(n: int, two_image: bool = False) -> list[dict[str, Any]]:
    """n scenes, each with a caption request, a question (kinds in turn) and a structured request;
    with two_image also "what changed" between the frame and a second one of the scene after 0-2
    edits (scenes.random_change), drawn at the same size."""
    out = []
    for i in range(n):
        rng = np.random.default_rng([BENCH_SEED, i])
        scene = S.random_scene(rng)
        frame = S.draw(scene, rng)
        after = S.random_change(scene, rng)
        after_frame = S.draw(after, rng)
        kind = S.QUESTION_KINDS[i % len(S.QUESTION_KINDS)]
        q, a = S.question(scene, kind, rng)
        cap = S.CAPTION_PROMPTS[0] if i % 2 == 0 else S.CAPTION_PROMPTS[i // 2 % len(S.CAPTION_PROMPTS)]
        out.append(
            {
                "scene": scene,
                "frame": frame,
                "tasks": [
                    ("caption", cap, S.caption(scene), None),
                    (f"question:{kind}", q, a, None),
                    (
                        "structured",
                        S.STRUCTURED_PROMPTS[i % len(S.STRUCTURED_PROMPTS)],
                        S.as_json(scene),
                        S.SCHEMA,
                    ),
                ]
                + (
                    [
                        (
                            "change",
                            S.CHANGE_PROMPTS[i % len(S.CHANGE_PROMPTS)],
                            S.answer_changed(scene, after),
                            None,
                        )
                    ]
                    if two_image
                    else []
                ),
                "after": after_frame,
            }
        )
    return out


def load(backend: str, folder: Path, num_crops: int) -> Any:
    from edge.inference import openvino_genai, ort_genai

    providers = ["cpu"] if backend == "ort-genai" else ["CPU"]
    settings = model_settings(path=folder, backend=backend, providers=providers, num_crops=num_crops)
    return (ort_genai if backend == "ort-genai" else openvino_genai).load(settings)


def pct(xs: list[int]) -> str:
    return f"{100.0 * sum(xs) / len(xs):.1f} %" if xs else "-"


def run_one(backend: str, folder: Path, num_crops: int, data: list[dict[str, Any]]) -> dict[str, Any]:
    be = load(backend, folder, num_crops)
    ok: dict[str, list[int]] = defaultdict(list)
    texts: dict[tuple[int, str], str] = {}
    ttft: list[float] = []
    image_tokens: list[int] = []
    misses: list[str] = []
    t0 = time.perf_counter()
    for i, case in enumerate(data):
        for kind, prompt, expected, schema in case["tasks"]:
            images = (case["frame"], case["after"]) if kind == "change" else (case["frame"],)
            req = GenerationRequest(prompt=prompt, images=images, max_new_tokens=MAX_NEW, json_schema=schema)
            gen = be.generate(req)
            text = gen.text.strip()
            texts[(i, kind)] = text
            if kind != "change":
                ttft.append(gen.stats.ttft_ms)
                image_tokens.append(gen.stats.image_tokens)
            if schema is not None:
                valid = gen.data is not None and gen.schema_error is None
                right = valid and gen.data == json.loads(expected)
                ok["structured valid"].append(int(valid))
                ok["structured"].append(int(right))
            else:
                right = text == expected
                ok[kind].append(int(right))
                if kind.startswith("question"):
                    ok["question"].append(int(right))
            if not right and len(misses) < 5:
                sc = case["scene"]
                misses.append(
                    f"{backend} nc={num_crops} #{i} {sc.width}x{sc.height} {prompt[:32]!r}: {text!r} != {expected!r}"
                )
    be.close()
    return {
        "ok": dict(ok),
        "texts": texts,
        "ttft_ms": statistics.median(ttft),
        "image_tokens": statistics.mean(image_tokens),
        "seconds": time.perf_counter() - t0,
        "misses": misses,
    }


def two_image_supported(folder: Path) -> bool:
    path = folder / MANIFEST
    if not path.is_file():
        return False
    return "what changed" in path.read_text(encoding="utf-8").lower()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="held-out scenes (default 500)")
    ap.add_argument(
        "--backends", nargs="+", default=["ort-genai", "openvino"], choices=["ort-genai", "openvino"]
    )
    ap.add_argument("--crops", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--ort", type=Path, default=package_file("assets/models/demo-ort"))
    ap.add_argument("--ov", type=Path, default=package_file("assets/models/demo-ov"))
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    folders = {"ort-genai": args.ort, "openvino": args.ov}
    two_image = all(two_image_supported(folders[b]) for b in args.backends)
    data = cases(args.n, two_image)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for backend in args.backends:
        for nc in args.crops:
            results[(backend, nc)] = r = run_one(backend, folders[backend], nc, data)
            print(f"# {backend} num_crops={nc}: {args.n} scenes in {r['seconds']:.0f} s", file=sys.stderr)
    kinds = [f"question:{k}" for k in S.QUESTION_KINDS]
    print(f"Demo model (trained stand-in), {args.n} held-out scenes, greedy, CPU.\n")
    print(
        "| backend | num_crops | image tokens | ttft ms (median) | captions right | answers right | "
        "structured valid | structured right | "
        + " | ".join(k.split(":")[1] for k in kinds)
        + " | what changed (2 images) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * (len(kinds) + 1))
    for (backend, nc), r in results.items():
        ok = r["ok"]
        cells = [
            backend,
            str(nc),
            f"{r['image_tokens']:.0f}",
            f"{r['ttft_ms']:.0f}",
            pct(ok.get("caption", [])),
            pct(ok.get("question", [])),
            pct(ok.get("structured valid", [])),
            pct(ok.get("structured", [])),
            *[pct(ok.get(k, [])) for k in kinds],
            pct(ok.get("change", [])),
        ]
        print("| " + " | ".join(cells) + " |")
    agreement: dict[int, float] = {}
    for nc in args.crops:
        a, b = results.get(("ort-genai", nc)), results.get(("openvino", nc))
        if a and b:
            same = [int(a["texts"][k] == b["texts"].get(k)) for k in a["texts"]]
            agreement[nc] = 100.0 * sum(same) / len(same)
    if agreement:
        print()
        print("| num_crops | ORT and OpenVINO give the same text |")
        print("|---:|---:|")
        for nc, v in agreement.items():
            print(f"| {nc} | {v:.1f} % |")
    if not two_image:
        print('\nTwo-image "what changed": not measured (the model\'s manifest lists no two-image task).')
    misses = [m for r in results.values() for m in r["misses"]]
    if misses:
        print("\nFirst misses:", *misses, sep="\n  ", file=sys.stderr)
    if args.json:
        doc = {
            f"{b} num_crops={nc}": {
                **{k: sum(v) / len(v) for k, v in r["ok"].items()},
                "image_tokens": r["image_tokens"],
                "ttft_ms": r["ttft_ms"],
            }
            for (b, nc), r in results.items()
        }
        doc["agreement"] = {str(k): v for k, v in agreement.items()}
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
