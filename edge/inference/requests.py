"""Binding a request to the model that will run it: its generation settings and its image budget.

A job is built once but may run on any entry of the chain `[model, *model.fallback]`, each with its own
max_new_tokens, temperature, system prompt and num_crops. The supervisor binds every request to the
entry in use just before it runs (and a one-shot to its one model), so a fallback never generates with
the primary's settings. num_crops is resolved here once (the task's own, else the entry's), so the
backends and the deadline scaling read the request alone.
"""

from __future__ import annotations

import dataclasses

from edge.config.model_settings import num_crops_of
from edge.config.settings import ModelSettings
from edge.core.messages import GenerationRequest


def bind(request: GenerationRequest, model: ModelSettings) -> GenerationRequest:
    """The request with `model`'s settings; a task's own num_crops wins over the model's."""
    return dataclasses.replace(
        request,
        system=model.system_prompt,
        max_new_tokens=model.max_new_tokens,
        temperature=model.temperature,
        num_crops=request.task_num_crops or num_crops_of(model),
    )
