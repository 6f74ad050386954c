#!/usr/bin/env python3
"""Decode speed and ttft against the runtime's thread count (and the worker's nice value), with 95 % CIs.

    python benchmarks/threads_sweep.py --model ~/.cache/edge-bench/ort-phi3v-40m [--threads 1,2,0] [--rounds 8]

One bare-loop process per setting (edge/inference/bare_loop.py, as `edge bench` uses it), all loaded at
once, and the rounds interleave them (A B C, C B A, ...) so a drifting shared machine hits every
setting alike. 0 = the runtime's default (all cores). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.cli.bench.measure import BareProcess, bare_inputs  # noqa: E402
from edge.cli.bench.stats import mean_ci  # noqa: E402
from edge.config.settings import model_settings  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--backend", default="ort-genai")
    ap.add_argument("--threads", default="1,2,0")
    ap.add_argument("--nice", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=48)
    ap.add_argument("--num-crops", type=int, default=1)
    args = ap.parse_args()
    settings = {
        t: model_settings(
            path=args.model,
            backend=args.backend,
            providers=["cpu" if args.backend == "ort-genai" else "CPU"],
            threads=t or None,
            num_crops=args.num_crops,
        )
        for t in (int(x) for x in args.threads.split(","))
    }
    provider = "cpu" if args.backend == "ort-genai" else "CPU"
    procs = {t: BareProcess(s, provider, {}, 300) for t, s in settings.items()}
    if args.nice:  # the lever [model] would need: measured here first (benchmarks only)
        for p in procs.values():
            os.setpriority(os.PRIO_PROCESS, p.pid, args.nice)
    out: dict[int, list[dict]] = {t: [] for t in procs}
    with tempfile.TemporaryDirectory() as tmp:
        first = next(iter(settings.values()))
        inputs = bare_inputs(first, True, "Describe the image.", 640, 480, Path(tmp) / "in.npz")
        try:
            for p in procs.values():
                p.generate(inputs, 4)  # warm-up
            order = list(procs)
            for r in range(args.rounds):
                for t in order if r % 2 == 0 else reversed(order):
                    out[t].append(procs[t].generate(inputs, args.max_new))
                print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        finally:
            for p in procs.values():
                p.close()
    print(
        f"| threads | decode tok/s (95 % CI) | ttft ms median | image tokens {inputs.image_tokens}, nice {args.nice} |"
    )
    print("|---|---|---|---|")
    for t, rs in out.items():
        ci = mean_ci([x["decode_tok_s"] for x in rs])
        ttft = statistics.median(x["ttft_ms"] for x in rs)
        rng = f"{ci.value:.1f} [{ci.low:.1f}, {ci.high:.1f}]" if ci else "n/a"
        print(f"| {t or 'default'} | {rng} | {ttft:.0f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
