"""The backend seam: one small protocol, implementations keyed by name in an explicit registry.

A backend owns one loaded model on one provider. It is used from exactly one thread of the worker
process; `cancel` may be set from another thread and is honoured at the next token.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edge.core.messages import Generation, GenerationRequest

# Called once per generated token with the number of new tokens so far. It must cost microseconds:
# the worker uses it to bump a shared-memory heartbeat counter, never to send a message.
TokenCallback = Callable[[int], None]


@dataclass(frozen=True)
class BackendInfo:
    name: str  # model folder name, e.g. "Phi-3.5-vision-instruct-onnx-cpu-int4"
    backend: str  # "ort-genai" | "openvino"
    provider: str  # the provider actually used, e.g. "cpu", "cuda", "NPU"
    vision: bool  # accepts images
    load_ms: float
    providers_tried: tuple[tuple[str, str], ...] = ()  # (provider, why it failed) before the one used


class Backend(Protocol):
    info: BackendInfo

    def generate(
        self,
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Generation:
        """Run one request to completion, a stop condition, the soft deadline, or cancellation.

        Raises GenerationError for runtime failures and FrameError for invalid images.
        """
        ...

    def close(self) -> None:
        """Release the model; the object is unusable afterwards."""
        ...
