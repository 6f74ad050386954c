#!/usr/bin/env python3
"""Decode speed with glibc's mmap threshold fixed at 128 KB, against a raised one, in one process.

    python benchmarks/malloc_threshold.py --path ~/.cache/edge-bench/ort-phi3v-40m [--pairs 30] [--tokens 48]

The daemon's main process fixes the threshold (edge/daemon/malloc.py) so that freed frames leave its
RSS; doing the same in the worker took ~9 MB off its RSS on the demo model, but then every buffer of
128 KB or more the runtime mallocs per token (the logits, for one) is an mmap, page faults and a
munmap. This measures what that costs per decoded token, in one process on one model object (two
processes differ by several % on their own): rounds alternate `mallopt(M_MMAP_THRESHOLD, 128 KB)`
(A) and `mallopt(M_MMAP_THRESHOLD, 32 MB)` (B, what glibc's own adjustment reaches after large
frees), each round one greedy generation of `--tokens` tokens on the same prompt; per round the
median per-token time after the first 4 tokens; per pair log(A/B); the mean with its 95 %
t-interval, in %. The first pair is a warm-up and dropped. Prints one table; asserts nothing.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "edge" / "inference"))

from bare_loop import ort_load  # noqa: E402  (the independent baseline, imports no edge code)

M_MMAP_THRESHOLD = -3
FIXED, RAISED = 128 * 1024, 32 * 1024 * 1024
T975 = {10: 2.228, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000}


def t975(df: int) -> float:
    return next((v for k, v in sorted(T975.items()) if df <= k), 1.96)


def one_round(model: object, tokenizer: object, ids: list[int], tokens: int) -> float:
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + tokens, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(ids)
    stamps = []
    while not gen.is_done():
        gen.generate_next_token()
        stamps.append(time.perf_counter())
    steps = [b - a for a, b in zip(stamps[4:], stamps[5:], strict=False)]
    if not steps:
        raise SystemExit(
            f"the model stopped after {len(stamps)} tokens: too few to time (use a bigger model)"
        )
    return statistics.median(steps)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", required=True)
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--tokens", type=int, default=48)
    args = ap.parse_args()
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    model, tokenizer = ort_load(os.path.expanduser(args.path))
    ids = list(tokenizer.encode("Describe what you see in one sentence, then list every object."))
    ratios = []
    for i in range(args.pairs + 1):
        times = {}
        for name, threshold in (("A", FIXED), ("B", RAISED)) if i % 2 else (("B", RAISED), ("A", FIXED)):
            mallopt(M_MMAP_THRESHOLD, threshold)
            times[name] = one_round(model, tokenizer, ids, args.tokens)
        if i:
            ratios.append(math.log(times["A"] / times["B"]))
    mean = statistics.fmean(ratios)
    half = t975(len(ratios) - 1) * statistics.stdev(ratios) / math.sqrt(len(ratios))
    pct = [100 * (math.exp(x) - 1) for x in (mean, mean - half, mean + half)]
    print(
        f"model {args.path}, {args.tokens} tokens a round, {len(ratios)} pairs, load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"per-token time, threshold fixed at 128 KB vs 32 MB: {pct[0]:+.2f} % [{pct[1]:+.2f}, {pct[2]:+.2f}]"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
