#!/usr/bin/env python3
"""The whole pipeline for N jobs: `edge run` as a subprocess against a local mosquitto.

    python benchmarks/pipeline.py [--jobs 1000] [--model tests/fixtures/models/ort-phi3v-fp32]
                                  [--num-crops 4] [--max-new-tokens 64] [--json]

The same phases and numbers as `edge bench` (edge/bench.py: load, ttft, decode, overhead against
the bare runtime loop, frame-to-PUBACK latency, gating, idle CPU, RSS), with a testsrc camera at
640x480 / 15 fps, plus the main process's RSS sampled every half second over the job phase: its
growth over the N jobs (target: < 10 MB over 1,000) and after the first 10 % of them (caches warm).
Prints the table (or one JSON object); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.cli.bench.command import run_bench  # noqa: E402
from edge.cli.bench.options import BenchOptions  # noqa: E402
from edge.cli.bench.report import evaluate_targets, render_table  # noqa: E402
from edge.config.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def rss_growth(report: dict[str, Any]) -> None:
    """Growth of the main process's RSS over the job phase, from the samples run_bench took."""
    samples = [s for s in report.pop("rss_samples", []) if s["main_mb"] is not None]
    if len(samples) < 2:
        return
    first, last = samples[0], samples[-1]
    jobs = max(1, last["jobs"])
    warm = next((s for s in samples if s["jobs"] >= 0.1 * jobs), first)
    report["rss_growth_mb"] = round(last["main_mb"] - first["main_mb"], 2)
    report["rss_growth_steady_mb"] = round(last["main_mb"] - warm["main_mb"], 2)
    report["rss_main_mb_start"] = first["main_mb"]
    report["rss_main_mb_peak"] = max(s["main_mb"] for s in samples)
    workers = [s["worker_mb"] for s in samples if s["worker_mb"] is not None]
    if workers:
        report["rss_worker_mb_start"], report["rss_worker_mb_end"] = workers[0], workers[-1]
    # a coarse trace for plots: ~20 points
    step = max(1, len(samples) // 20)
    report["rss_trace"] = [[s["jobs"], s["main_mb"]] for s in samples[::step]]
    report["duration_s"] = last["t"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000, help="jobs in the latency/memory phase (default 1000)")
    ap.add_argument("--model", type=Path, default=REPO / "tests/fixtures/models/ort-phi3v-fp32")
    ap.add_argument("--backend", choices=["ort-genai", "openvino"], default="ort-genai")
    ap.add_argument("--provider", default="cpu")
    ap.add_argument("--num-crops", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--overhead-runs", type=int, default=20, help="daemon/bare pairs (default 20)")
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--recycle-after-jobs", type=int, default=1000, help="watchdog.recycle_after_jobs")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    settings = Settings(
        device_id="pipeline",
        camera={"source": "testsrc", "width": a.width, "height": a.height, "fps": a.fps},
        model={
            "path": a.model,
            "backend": a.backend,
            "providers": [a.provider],
            "num_crops": a.num_crops,
            "max_new_tokens": a.max_new_tokens,
        },
        watchdog={"recycle_after_jobs": a.recycle_after_jobs},
    )
    opts = BenchOptions(
        jobs=a.jobs, overhead_runs=a.overhead_runs, idle_s=a.idle_s, force_local_broker=True, rss_sample_s=0.5
    )

    def progress(msg: str) -> None:
        print(f"pipeline: {msg}", file=sys.stderr, flush=True)

    report = run_bench(settings, opts, progress)
    rss_growth(report)
    evaluate_targets(report)
    print(json.dumps(report) if a.json else render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
