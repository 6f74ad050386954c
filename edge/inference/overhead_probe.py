"""The in-process overhead probe of `edge bench`: the daemon's per-job path against the bare loop,
on ONE loaded model object, in one process.

Why: on a shared or virtualised board two processes of the same program can decode at speeds a few
percent apart (each process gets its own physical pages for the weights; the decode is memory bound),
and that offset is as large as the 2 % target. Comparing the daemon's worker with a bare-loop
*process* therefore measures the two processes as much as the code. Here the weights, the sessions
and the process are shared, so only the code differs:

- A: `worker.run_job(backend, job, beat)`, exactly what the worker runs per job: the backend loaded
  by the worker's own loader (registry.load_backend), a real shared-memory Heartbeat, the soft
  deadline, the token clock with its per-token callback, and the answer's sanitising;
- B: bare_loop.ort_decode, the bare process's own loop, on the backend's og.Model and tokenizer and
  on the inputs the backend builds for the same request (prompt, frame, max_new tokens);
- B': B again, the A/A.

Each round runs A B B' or, mirrored, B' B A (even / odd rounds): B' takes A's place, so whatever the
order does to a run it does to A and B' alike. A's per-token times come through the token clock's
EDGE_BENCH_TOKEN_TIMES file, as the bench reads them from the daemon; B's from the bare loop's stamps.
Both greedy on identical inputs and the same model, so both decode the same tokens.

ONNX Runtime GenAI only: the OpenVINO pipeline's bare loop has no per-token times.

Run by the bench as `python -m edge.inference.overhead_probe --model SETTINGS.json --frame F.npy
--prompt TEXT`; JSON lines: {"ok": true, "load_ms", "pid", "prompt_tokens"} once loaded, then one
{"ok": true, "a": {...}, "b": {...}, "b2": {...}} per {"round": i, "max_new": n} line on stdin.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TOKEN_TIMES_ENV = "EDGE_BENCH_TOKEN_TIMES"  # token_clock reads it at import: set before importing it


class Probe:
    """One backend, loaded once; `round(i, max_new)` runs the three arms on it."""

    def __init__(self, model_json: str, frame: np.ndarray, prompt: str, times_path: Path) -> None:
        import multiprocessing

        from pydantic import TypeAdapter

        from edge.config.model_settings import ModelSettings
        from edge.inference.heartbeat import Heartbeat
        from edge.inference.ort_genai import OrtGenAIBackend
        from edge.inference.registry import load_backend

        settings = TypeAdapter(ModelSettings).validate_json(model_json)
        t0 = time.perf_counter()
        backend = load_backend(settings)
        self.load_ms = (time.perf_counter() - t0) * 1000.0
        if not isinstance(backend, OrtGenAIBackend):
            backend.close()
            raise RuntimeError(f"the in-process probe runs on ort-genai only, not {settings.backend}")
        self.backend = backend
        self.beat = Heartbeat(multiprocessing.get_context("spawn"))
        self.frame = frame
        self.prompt = prompt
        self.times_path = times_path
        self.seq = 0

    def _request(self, max_new: int) -> Any:
        from edge.core.messages import GenerationRequest

        return GenerationRequest(prompt=self.prompt, images=(self.frame,), max_new_tokens=max_new)

    def run_a(self, max_new: int) -> dict[str, Any]:
        """The worker's per-job path: run_job with the heartbeat, the deadline and the token clock."""
        from edge.inference.protocol import JobDone, RunJob
        from edge.inference.worker import run_job

        self.seq += 1
        before = self.times_path.stat().st_size if self.times_path.exists() else 0
        done = run_job(
            self.backend, RunJob(self.seq, f"probe-{self.seq}", self._request(max_new), 600.0), self.beat
        )
        if not isinstance(done, JobDone):
            raise RuntimeError(f"run_job failed: {done.error_type}: {done.message}")
        with self.times_path.open(encoding="utf-8") as fh:
            fh.seek(before)
            lines = fh.read().splitlines()
        stats = done.generation.stats
        return {
            "new_tokens": stats.new_tokens,
            "decode_tok_s": stats.decode_tok_s,
            "ttft_ms": stats.ttft_ms,
            "steps_ms": json.loads(lines[-1])["steps_ms"],
        }

    def run_b(self, max_new: int) -> dict[str, Any]:
        """The bare loop on the backend's own model and the inputs it builds for the same request."""
        from edge.imaging.imageio import validate_array
        from edge.inference import bare_loop

        t0 = time.perf_counter()
        be = self.backend
        inputs, prompt_len, _ = be._inputs(self._request(max_new), [validate_array(self.frame)])
        ctx = be._folder.context_length  # the backend clamps the answer to the context: so does B
        if ctx is not None:
            max_new = min(max_new, ctx - prompt_len)
        return bare_loop.ort_decode(be._model, be._tokenizer, inputs, prompt_len, max_new, t0)

    def round(self, i: int, max_new: int) -> dict[str, Any]:
        if i % 2 == 0:
            a = self.run_a(max_new)
            b = self.run_b(max_new)
            b2 = self.run_b(max_new)
        else:
            b2 = self.run_b(max_new)
            b = self.run_b(max_new)
            a = self.run_a(max_new)
        return {"a": a, "b": b, "b2": b2}


def _reply(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="edge bench's in-process overhead probe (JSON lines)")
    ap.add_argument("--model", type=Path, required=True, help="the [model] settings as JSON")
    ap.add_argument("--frame", type=Path, required=True, help="a BGR frame (.npy)")
    ap.add_argument("--prompt", required=True)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edge-probe-") as tmp:
        times = Path(os.environ.get(TOKEN_TIMES_ENV) or Path(tmp) / "token_times.jsonl")
        os.environ[TOKEN_TIMES_ENV] = str(times)
        try:
            probe = Probe(args.model.read_text(encoding="utf-8"), np.load(args.frame), args.prompt, times)
        except Exception as err:
            _reply({"ok": False, "error": f"{type(err).__name__}: {err}".splitlines()[0]})
            return 1
        _reply({"ok": True, "load_ms": probe.load_ms, "pid": os.getpid()})
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                req = json.loads(line)
                _reply({"ok": True, **probe.round(int(req["round"]), int(req["max_new"]))})
            except Exception as err:
                _reply({"ok": False, "error": f"{type(err).__name__}: {err}".splitlines()[0]})
        probe.backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
