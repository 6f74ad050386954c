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
from pathlib import Path

import numpy as np

from edge.config.settings import DEFAULT_CAPTION_PROMPT, ModelSettings, Settings, TaskSettings
from edge.core.errors import ConfigError
from edge.core.kinds import TaskKind
from edge.core.messages import Generation, ModelPayload, ResultPayload
from edge.imaging.imageio import read_image_file
from edge.inference.registry import load_backend
from edge.pipeline.jobs import JobSpec, build_request
from edge.pipeline.results import ResultInput, build_result

log = logging.getLogger(__name__)


def _caption_prompt(settings: Settings) -> str:
    task = next((t for t in settings.tasks if t.kind == "caption"), None)
    return task.prompt if task is not None else DEFAULT_CAPTION_PROMPT


def _run(
    settings: Settings,
    model: ModelSettings,
    task: TaskKind,
    prompt: str,
    image: Path | None,
    as_json: bool,
    grabbed: tuple[np.ndarray, float] | None = None,
) -> int:
    if model.backend != "http" and model.path is None:  # an endpoint has url and name instead
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
    # A one-shot is a command-triggered job of an ad-hoc task: the daemon's request builder.
    spec = JobSpec(
        task=TaskSettings(name=task, kind=task, prompt=prompt, trigger="command"), trigger="command"
    )
    backend = load_backend(model)
    try:
        result = backend.generate(build_request(spec, model, settings.watchdog.generation_s, frame))
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
        model_ref = ModelPayload(name=info.name, backend=info.backend, provider=info.provider)
        payload = result_payload(settings, task, result, model_ref, captured_at)
        sys.stdout.write(payload.model_dump_json() + "\n")
    else:
        sys.stdout.write(result.text.strip() + "\n")
    sys.stdout.flush()
    return 0


def result_payload(
    settings: Settings, task: str, result: Generation, model: ModelPayload, captured_at: float | None
) -> ResultPayload:
    """The daemon's result payload for a one-shot run: seq 0, trigger "command", boot "cli"."""
    item = ResultInput(
        device=settings.device_id,
        task=task,
        camera=settings.camera.name,
        trigger="command",
        generation=result,
        model=model,
        captured_at=captured_at,
    )
    return build_result(item, seq=0, result_id=f"{settings.device_id}-cli-0")


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
