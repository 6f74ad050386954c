"""`edge caption IMAGE` and `edge ask "question"`: one request through the model, in this process.

One-shot commands load the backend directly (no worker process, no watchdog): they run once,
in the foreground, and a hung runtime is the user's Ctrl-C. They read the same settings as the
daemon, so `EDGE_MODEL__PATH=... edge caption frame.jpg` tries a model folder exactly as the daemon
would load it. With `--json` the output is one line shaped like the daemon's MQTT result payload.

Errors are EdgeErrors and propagate: the CLI prints one line and exits 1 (2 for config errors).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from edge.config.settings import ModelSettings, Settings
from edge.core.errors import ConfigError
from edge.core.messages import (
    Generation,
    GenerationRequest,
    ModelPayload,
    ResultPayload,
    StatsPayload,
    TaskKind,
    utc_iso,
)
from edge.imaging.imageio import read_image_file
from edge.inference.registry import load_backend

log = logging.getLogger(__name__)

DEFAULT_CAPTION = "Describe what you see in one sentence."


def _caption_prompt(settings: Settings) -> str:
    task = next((t for t in settings.tasks if t.kind == "caption"), None)
    return task.prompt if task is not None else DEFAULT_CAPTION


def _run(
    settings: Settings,
    model: ModelSettings,
    task: TaskKind,
    prompt: str,
    image: Path | None,
    as_json: bool,
    grabbed: tuple[np.ndarray, float] | None = None,
) -> int:
    if model.path is None:
        raise ConfigError(
            ["model.path: not set (a model folder; e.g. EDGE_MODEL__PATH=/opt/models/phi-3.5-v)"]
        )
    frame: np.ndarray | None = None
    captured_at: float | None = None
    if image is not None:
        frame = read_image_file(str(image))  # decoded and validated here, never by the runtime
        captured_at = os.stat(image).st_mtime
    elif grabbed is not None:
        frame, captured_at = grabbed
    backend = load_backend(model)
    try:
        request = GenerationRequest(
            prompt=prompt,
            images=(frame,) if frame is not None else (),
            system=model.system_prompt,
            max_new_tokens=model.max_new_tokens,
            temperature=model.temperature,
            deadline_s=settings.watchdog.generation_s,
        )
        result = backend.generate(request)
        info = backend.info
    finally:
        backend.close()
    s = result.stats
    log.info(
        "%s: %d prompt + %d image tokens, %d new, ttft %.0f ms, %.1f tok/s, %s",
        task,
        s.prompt_tokens,
        s.image_tokens,
        s.new_tokens,
        s.ttft_ms,
        s.decode_tok_s,
        s.stop_reason,
    )
    if as_json:
        payload = result_payload(settings, task, result, info.name, info.backend, info.provider, captured_at)
        sys.stdout.write(payload.model_dump_json() + "\n")
    else:
        sys.stdout.write(result.text.strip() + "\n")
    sys.stdout.flush()
    return 0


def result_payload(
    settings: Settings,
    task: str,
    result: Generation,
    model_name: str,
    backend: str,
    provider: str,
    captured_at: float | None,
) -> ResultPayload:
    """The contract's result payload for a one-shot run: seq 0, trigger "command", boot "cli"."""
    s = result.stats
    return ResultPayload(
        id=f"{settings.device_id}-cli-0",
        device=settings.device_id,
        camera=settings.camera.name,
        task=task,
        seq=0,
        captured_at=utc_iso(captured_at) if captured_at is not None else None,
        published_at=utc_iso(time.time()),
        trigger="command",
        text=result.text,
        data=result.data,
        schema_error=result.schema_error,
        model=ModelPayload(name=model_name, backend=backend, provider=provider),
        stats=StatsPayload(
            prompt_tokens=s.prompt_tokens,
            image_tokens=s.image_tokens,
            new_tokens=s.new_tokens,
            ttft_ms=round(s.ttft_ms, 2),
            decode_tok_s=round(s.decode_tok_s, 2),
            total_ms=round(s.total_ms, 2),
            stop_reason=s.stop_reason,
        ),
    )


def caption(settings: Settings, image: Path | None, prompt: str | None, as_json: bool) -> int:
    """Caption one image file with [model]; prints the text (or the result payload as JSON)."""
    if image is None:
        raise ConfigError(["caption: give an IMAGE file (or --camera)"])
    return _run(settings, settings.model, "caption", prompt or _caption_prompt(settings), image, as_json)


def ask(settings: Settings, question: str, image: Path | None, as_json: bool) -> int:
    """Answer a question, about an image with [model], or text-only with [text_model] when set."""
    if not question.strip():
        raise ConfigError(["ask: the question is empty"])
    model = settings.model if image is not None or settings.text_model is None else settings.text_model
    return _run(settings, model, "ask", question, image, as_json)


def caption_camera(settings: Settings, prompt: str | None, as_json: bool) -> int:
    """`edge caption --camera`: one validated frame from the configured camera through the model."""
    from edge.capture import grab_frame

    frame = grab_frame(settings.camera)
    return _run(
        settings,
        settings.model,
        "caption",
        prompt or _caption_prompt(settings),
        None,
        as_json,
        grabbed=(frame.image, frame.captured_at),
    )
