#!/usr/bin/env python3
"""What supervision costs: the per-token heartbeat, and the per-job process hop.

    python benchmarks/worker_overhead.py [--model tests/fixtures/models/ort-phi3-fp32] [--runs 30]

1. The worker's on_token (shared-memory beat + phase + cancel/deadline check) against a no-op
   callback, per call.
2. The real backend in this process, interleaved: generate() with no callback vs. through the
   worker's run_job (heartbeat on every token). On the tiny fixture model a token takes ~35 us, so
   this is a worst case; on a real Phi-3.5 a token takes tens of ms.
3. Through the supervisor (spawned worker): job wall time vs. the generation's own total_ms, i.e.
   pickling, the pipe and the poll loop per job.
Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.config.settings import WatchdogSettings, model_settings  # noqa: E402
from edge.core.messages import GenerationRequest, Job  # noqa: E402
from edge.inference.heartbeat import Heartbeat  # noqa: E402
from edge.inference.protocol import JobDone, RunJob  # noqa: E402
from edge.inference.registry import load_backend  # noqa: E402
from edge.inference.supervisor import Supervisor  # noqa: E402
from edge.inference.worker import run_job  # noqa: E402

PROMPT = "Count the people."


def per_call_ns(fn, n: int = 1_000_000) -> float:
    t0 = time.perf_counter_ns()
    for i in range(1, n + 1):
        fn(i)
    return (time.perf_counter_ns() - t0) / n


def heartbeat_callback(beat: Heartbeat):
    """The same closure shape as worker.run_job builds (kept in step with it by hand)."""
    arr = beat.array
    cancel = threading.Event()
    clock = time.monotonic
    deadline = clock() + 1e9
    seq = 1

    def on_token(n: int) -> None:
        arr[0] = n
        arr[1] = 3
        if arr[3] == seq or clock() >= deadline:
            cancel.set()

    return on_token


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tests/fixtures/models/ort-phi3-fp32")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--max-new", type=int, default=120)
    args = ap.parse_args()
    ctx = multiprocessing.get_context("spawn")
    beat = Heartbeat(ctx)

    noop = per_call_ns(lambda n: None)
    hb = per_call_ns(heartbeat_callback(beat))
    print("## per-token callback")
    print("| callback | ns/call |\n|---|---|")
    print(f"| no-op | {noop:.0f} |\n| worker heartbeat | {hb:.0f} |\n| difference | {hb - noop:.0f} |")

    settings = model_settings(path=Path(args.model), backend="ort-genai", providers=["cpu"])
    backend = load_backend(settings)
    request = GenerationRequest(prompt=PROMPT, max_new_tokens=args.max_new)
    bare_ms: list[float] = []
    hb_ms: list[float] = []
    tokens = 0
    for i in range(args.runs * 2 + 4):
        if i % 2 == 0:
            t0 = time.perf_counter()
            g = backend.generate(request)
            dt = (time.perf_counter() - t0) * 1000
            (bare_ms if i >= 4 else []).append(dt)
        else:
            t0 = time.perf_counter()
            done = run_job(backend, RunJob(i, f"j{i}", request, 1e9), beat)
            dt = (time.perf_counter() - t0) * 1000
            assert isinstance(done, JobDone)
            g = done.generation
            (hb_ms if i >= 4 else []).append(dt)
        tokens = g.stats.new_tokens
    b, h = statistics.median(bare_ms), statistics.median(hb_ms)
    print(f"\n## in-process generate, {Path(args.model).name}, {tokens} new tokens, median of {args.runs}")
    print("| path | ms/job | us/token |\n|---|---|---|")
    print(f"| backend.generate, no callback | {b:.3f} | {b * 1000 / tokens:.2f} |")
    print(f"| worker.run_job (heartbeat) | {h:.3f} | {h * 1000 / tokens:.2f} |")
    print(f"| overhead | {h - b:+.3f} ({(h / b - 1) * 100:+.2f} %) | {(h - b) * 1000 / tokens:+.2f} |")
    backend.close()

    wd = WatchdogSettings(first_token_s=30, token_s=10, generation_s=60, total_s=90, recycle_after_jobs=0)
    sup = Supervisor(settings, wd)
    sup.start()
    assert sup.wait_ready(60)
    wall: list[float] = []
    inner: list[float] = []
    for i in range(args.runs + 3):
        job = Job(id=f"b{i}", task="bench", kind="ask", trigger="command", request=request)
        t0 = time.perf_counter()
        o = sup.submit(job)
        dt = (time.perf_counter() - t0) * 1000
        assert o.ok and o.generation is not None
        if i >= 3:
            wall.append(dt)
            inner.append(o.generation.stats.total_ms)
    sup.stop(10)
    w, n = statistics.median(wall), statistics.median(inner)
    print(f"\n## through the supervisor (spawned worker), median of {args.runs}")
    print("| measure | ms |\n|---|---|")
    print(f"| job wall time (submit -> outcome) | {w:.3f} |")
    print(f"| generation total_ms in the worker | {n:.3f} |")
    print(f"| per-job process hop (pickle, pipe, poll) | {w - n:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
