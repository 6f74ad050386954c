#!/usr/bin/env python3
"""How long the supervisor takes to recover from a worker fault, on the real backend.

    python benchmarks/recovery_bench.py [--model tests/fixtures/models/ort-phi3v-fp32] [--runs 3]

For SIGKILL and SIGSTOP sent to the worker mid-stream (image jobs on the tiny vision model): time to
detect (the failed job's outcome), and time until the next job succeeds (kill + backoff + spawn +
model load). SIGSTOP is found at the deadline of the phase it hit (first_token_s or token_s).
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.config.settings import WatchdogSettings, model_settings  # noqa: E402
from edge.core.messages import GenerationRequest, Job  # noqa: E402
from edge.inference.supervisor import Supervisor  # noqa: E402


def one(sup: Supervisor, sig: signal.Signals, image: np.ndarray, n: int) -> tuple[float, float, str]:
    for i in range(3):  # warm
        sup.submit(_job(f"w{n}-{i}", image))
    pid = sup.stats().worker_pid
    assert pid is not None
    fired: list[float] = []

    def shoot() -> None:
        time.sleep(0.03)
        fired.append(time.monotonic())
        os.kill(pid, sig)

    threading.Thread(target=shoot, daemon=True).start()
    i = 0
    while True:
        o = sup.submit(_job(f"f{n}-{i}", image))
        i += 1
        if not o.ok:
            detected = time.monotonic()
            reason = o.failure.reason if o.failure else "?"
            break
    while not sup.submit(_job(f"r{n}-{i}", image)).ok:
        i += 1
    return detected - fired[0], time.monotonic() - fired[0], reason


def _job(job_id: str, image: np.ndarray) -> Job:
    req = GenerationRequest(prompt="Describe.", images=(image,), max_new_tokens=64)
    return Job(id=job_id, task="bench", kind="caption", trigger="command", request=req)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tests/fixtures/models/ort-phi3v-fp32")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    backend = "openvino" if Path(args.model).name.startswith("ov-") else "ort-genai"
    model = model_settings(
        path=Path(args.model), backend=backend, providers=["cpu" if backend == "ort-genai" else "CPU"]
    )
    wd = WatchdogSettings(first_token_s=2.0, token_s=1.0, generation_s=8, total_s=10, backoff_initial_s=0.2,
                          max_restarts=100, recycle_after_jobs=0)  # fmt: skip
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    sup = Supervisor(model, wd)
    sup.start()
    assert sup.wait_ready(60)
    print(
        f"## recovery on {Path(args.model).name} ({backend}); first_token_s=2 token_s=1 backoff_initial_s=0.2"
    )
    print("| fault | detected after s (median) | next job ok after s (median) | failure reasons |")
    print("|---|---|---|---|")
    for sig in (signal.SIGKILL, signal.SIGSTOP):
        rows = [one(sup, sig, image, n) for n in range(args.runs)]
        det = statistics.median(r[0] for r in rows)
        rec = statistics.median(r[1] for r in rows)
        reasons = ", ".join(sorted({r[2] for r in rows}))
        print(f"| {sig.name} | {det:.2f} | {rec:.2f} | {reasons} |")
    sup.stop(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
