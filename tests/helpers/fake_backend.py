"""A fake backend for pure supervision logic: a seam fake, loaded by the REAL worker process.

Behaviour comes from the settings the supervisor already passes (so nothing is test-only in the
production path):
- providers: "broken" fails to load (the next one is tried), "crashy" loads but the process exits
  at the first token of every job, "cpu" (or anything else) works;
- provider_options["fake"]: token_s (sleep per token), load_s (sleep while loading), fail_load
  (message: every load raises ModelError);
- the prompt: "crash" (os._exit mid-generation), "raise" (GenerationError), "leak:N" (keep N MB).
The per-token sleep stands in for a slow board; stalls are made by the tests with real signals.
"""

from __future__ import annotations

import os
import threading
import time

from edge.config.settings import ModelSettings
from edge.core.errors import GenerationError, ModelError, ProviderError
from edge.core.messages import Generation, GenerationRequest, StatsPayload
from edge.inference.base import BackendInfo, TokenCallback
from tests.helpers.model_sections import local

_LEAKED: list[bytearray] = []


class FakeBackend:
    def __init__(self, info: BackendInfo, token_s: float, crashy: bool) -> None:
        self.info = info
        self._token_s = token_s
        self._crashy = crashy

    def generate(
        self,
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Generation:
        t0 = time.monotonic()
        prompt = request.prompt
        if prompt == "raise":
            raise GenerationError("prompt is longer than the model's context")
        if prompt.startswith("leak:"):
            _LEAKED.append(bytearray(os.urandom(1024)) * (int(prompt[5:]) * 1024))
        deadline = None if request.deadline_s is None else t0 + request.deadline_s
        pieces: list[str] = []
        stop = "max_tokens"
        ttft = 0.0
        for n in range(1, request.max_new_tokens + 1):
            if self._token_s:
                time.sleep(self._token_s)
            if self._crashy or prompt == "crash":
                os._exit(3)
            pieces.append(f"t{n}")
            if n == 1:
                ttft = (time.monotonic() - t0) * 1000
            if on_token is not None:
                on_token(n)
            if cancel is not None and cancel.is_set():
                stop = "cancelled"
                break
            if deadline is not None and time.monotonic() >= deadline:
                stop = "deadline"
                break
        total = (time.monotonic() - t0) * 1000
        n = len(pieces)
        decode_s = max(1e-9, (total - ttft) / 1000)
        stats = StatsPayload(
            prompt_tokens=len(prompt.split()),
            image_tokens=0 if not request.images else 144 * len(request.images),
            new_tokens=n,
            ttft_ms=ttft,
            decode_tok_s=(n - 1) / decode_s if n > 1 else 0.0,
            total_ms=total,
            stop_reason=stop,
        )
        return Generation(" ".join(pieces), stats)

    def close(self) -> None:
        pass


def load(settings: ModelSettings) -> FakeBackend:
    t0 = time.monotonic()
    opts = local(settings).provider_options.get("fake", {})
    if opts.get("load_s"):
        time.sleep(float(opts["load_s"]))
    if opts.get("fail_load"):
        raise ModelError(opts["fail_load"])
    tried: list[tuple[str, str]] = []
    for provider in local(settings).providers:
        if provider == "broken":
            tried.append((provider, "provider library missing"))
            continue
        info = BackendInfo(
            name="fake",
            backend="fake",
            provider=provider,
            vision=True,
            load_ms=(time.monotonic() - t0) * 1000,
            providers_tried=tuple(tried),
        )
        return FakeBackend(info, float(opts.get("token_s", "0.005")), crashy=provider == "crashy")
    raise ProviderError("no provider could load the model: " + "; ".join(f"{p}: {w}" for p, w in tried))
