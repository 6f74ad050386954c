"""The in-process overhead probe of `edge bench`: the daemon's per-job path against the bare loop,
on ONE loaded model object, in one process, token by token.

Why: on a shared or virtualised board two processes of the same program can decode at speeds a few
percent apart (each process gets its own physical pages for the weights; the decode is memory bound),
and that offset is as large as the 2 % target. Comparing the daemon's worker with a bare-loop
*process* measures the two processes as much as the code. Here the weights, the sessions and the
process are shared, so only the code differs:

- A: `worker.run_job(backend, job, beat)`, exactly what the worker runs per job: the backend loaded
  by the worker's own loader (registry.load_backend), a real shared-memory Heartbeat, the soft
  deadline, the token clock with its per-token callback, and the answer's sanitising;
- B: a bare generator on the backend's og.Model, built from the inputs the backend builds for the
  same request (prompt, frame, answer length), as bare_loop builds its own.

The two decode *interleaved, token by token*: the backend's SDK handle is swapped for a stand-in whose
Generator runs one step of the partner (B) before each of its own steps, timed; that time is taken
off A's step, and is B's step. Whatever slows the board for a moment (another process, the host)
then lands on both sides within ~10 ms, not one run and not the next: a run-level alternation left a
per-round sd of 5-8 % on the loaded VM, the token-level one 0.4-0.6 %. The A/A is the same with the
bare loop itself (bare_loop.ort_decode, with the same stand-in) in A's place: B' against its partner.

Rounds alternate the order of the two pairs (A first, then B' first). The partner's steps are bare
generate_next_token calls; A's also carry the loop, the token clock and the stand-in's one Python
call per token, so the figure leans against the daemon, never for it (the A/A carries the same call).

ONNX Runtime GenAI only: the OpenVINO pipeline's bare loop has no per-token steps to interleave.

Run by the bench as `python -m edge.inference.overhead_probe --model SETTINGS.json --frame F.npy
--prompt TEXT`; JSON lines: {"ok": true, "load_ms", "pid"} once loaded, then one
{"ok": true, "a", "b", "b2", "b2_ref"} per {"round": i, "max_new": n} line on stdin, each a run's
{"new_tokens", "decode_tok_s", "steps_ms"}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TOKEN_TIMES_ENV = "EDGE_BENCH_TOKEN_TIMES"  # token_clock reads it at import: set before importing it


class _Partnered:
    """A generator that runs one step of its partner, timed, before each of its own."""

    __slots__ = ("_gen", "_partner", "inner")

    def __init__(self, gen: Any, partner: Any) -> None:
        self._gen, self._partner = gen, partner
        self.inner: list[float] = []  # per own call, the partner's step inside it (s; 0 once it is done)

    def generate_next_token(self) -> None:
        partner = self._partner
        if partner.is_done():
            self.inner.append(0.0)
        else:
            t0 = time.perf_counter()
            partner.generate_next_token()
            self.inner.append(time.perf_counter() - t0)
        self._gen.generate_next_token()

    def is_done(self) -> bool:
        return bool(self._gen.is_done())

    def set_inputs(self, inputs: Any) -> None:
        self._gen.set_inputs(inputs)

    def append_tokens(self, ids: Any) -> None:
        self._gen.append_tokens(ids)

    def get_sequence(self, index: int) -> Any:
        return self._gen.get_sequence(index)


class _PartneredSdk:
    """Stands in for the onnxruntime_genai module: each Generator comes with a fresh partner."""

    def __init__(self, og: Any, make_partner: Callable[[], Any]) -> None:
        self._og, self._make = og, make_partner
        self.last: _Partnered | None = None

    def Generator(self, model: Any, params: Any) -> _Partnered:  # noqa: N802 (the SDK's name)
        self.last = _Partnered(self._og.Generator(model, params), self._make())
        return self.last

    def __getattr__(self, name: str) -> Any:
        return getattr(self._og, name)


def split_steps(own_steps_ms: list[float], inner_s: list[float]) -> tuple[list[float], list[float]]:
    """(own steps less the partner's step inside each, the partner's steps), in ms.

    own_steps_ms[k] runs from own token k+1 to k+2: it holds own call k+1, so partner step inner[k+1].
    The partner's first call (inner[0], its first token) is not a decode step, as on the bare loop.
    """
    inner = [x * 1000.0 for x in inner_s]
    own = [round(s - inner[k + 1], 4) for k, s in enumerate(own_steps_ms) if k + 1 < len(inner)]
    partner = [round(x, 4) for x in inner[1:] if x > 0]
    return own, partner


def _run(steps_ms: list[float]) -> dict[str, Any]:
    mean = sum(steps_ms) / len(steps_ms) if steps_ms else 0.0
    return {
        "new_tokens": len(steps_ms) + 1,
        "decode_tok_s": round(1000.0 / mean, 2) if mean > 0 else 0.0,
        "steps_ms": steps_ms,
    }


class Probe:
    """One backend, loaded once; `round(i, max_new)` runs both interleaved pairs on it."""

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
        self.og = backend._og
        self.beat = Heartbeat(multiprocessing.get_context("spawn"))
        self.frame = frame
        self.prompt = prompt
        self.times_path = times_path
        self.seq = 0

    def _request(self, max_new: int) -> Any:
        from edge.core.messages import GenerationRequest

        return GenerationRequest(prompt=self.prompt, images=(self.frame,), max_new_tokens=max_new)

    def _inputs(self, max_new: int) -> tuple[Any, int, int]:
        """(inputs, prompt tokens, max_new clamped to the context as the backend clamps it)."""
        from edge.imaging.imageio import validate_array

        be = self.backend
        inputs, prompt_len, _ = be._inputs(self._request(max_new), [validate_array(self.frame)])
        ctx = be._folder.context_length
        return inputs, prompt_len, max_new if ctx is None else min(max_new, ctx - prompt_len)

    def _bare_generator(self, max_new: int) -> Any:
        """A prefilled generator, built as bare_loop builds its own, on the backend's model."""
        og, model = self.og, self.backend._model
        inputs, prompt_len, max_new = self._inputs(max_new)
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=prompt_len + max_new, do_sample=False)
        gen = og.Generator(model, params)
        if isinstance(inputs, np.ndarray):
            gen.append_tokens(inputs)
        else:
            gen.set_inputs(inputs)
        return gen

    def run_a(self, max_new: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The worker's per-job path (run_job), a bare partner interleaved: (A, its partner B)."""
        from edge.inference.protocol import JobDone, RunJob
        from edge.inference.worker import run_job

        self.seq += 1
        sdk = _PartneredSdk(self.og, lambda: self._bare_generator(max_new))
        before = self.times_path.stat().st_size if self.times_path.exists() else 0
        self.backend._og = sdk
        try:
            job = RunJob(self.seq, f"probe-{self.seq}", self._request(max_new), 600.0)
            done = run_job(self.backend, job, self.beat)
        finally:
            self.backend._og = self.og
        if not isinstance(done, JobDone):
            raise RuntimeError(f"run_job failed: {done.error_type}: {done.message}")
        with self.times_path.open(encoding="utf-8") as fh:
            fh.seek(before)
            steps = json.loads(fh.read().splitlines()[-1])["steps_ms"]
        assert sdk.last is not None
        own, partner = split_steps(steps, sdk.last.inner)
        return _run(own), _run(partner)

    def run_b(self, max_new: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The bare loop's own decode loop in A's place, a bare partner interleaved: (B', its partner)."""
        from edge.inference import bare_loop

        be = self.backend
        sdk = _PartneredSdk(self.og, lambda: self._bare_generator(max_new))
        inputs, prompt_len, clamped = self._inputs(max_new)
        res = bare_loop.ort_decode(be._model, be._tokenizer, inputs, prompt_len, clamped, sdk=sdk)
        assert sdk.last is not None
        own, partner = split_steps(res["steps_ms"], sdk.last.inner)
        return _run(own), _run(partner)

    def round(self, i: int, max_new: int) -> dict[str, Any]:
        if i % 2 == 0:
            a, b = self.run_a(max_new)
            b2, b2_ref = self.run_b(max_new)
        else:
            b2, b2_ref = self.run_b(max_new)
            a, b = self.run_a(max_new)
        return {"a": a, "b": b, "b2": b2, "b2_ref": b2_ref}


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
