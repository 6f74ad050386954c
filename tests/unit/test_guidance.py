"""Constrained decoding is refused per schema: one schema the runtime cannot take leaves guidance on
for the others (before: the first refusal turned it off for the life of the worker)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from edge.config.settings import OrtGenAIModelSettings
from edge.core.messages import GenerationRequest
from edge.inference.ort_genai import OrtGenAIBackend
from edge.inference.structured import Guidance, schema_text

GOOD = {"type": "object", "properties": {"count": {"type": "integer"}}}
BAD = {"type": "object", "properties": {"x": {"type": "string", "pattern": "(?<=unsupported)"}}}


class Params:
    """ORT GenAI's GeneratorParams at the seam the backend uses; refuses the BAD schema."""

    def __init__(self, _model: Any) -> None:
        self.guidance: tuple[str, str] | None = None

    def set_search_options(self, **_options: Any) -> None:
        pass

    def set_guidance(self, kind: str, text: str) -> None:
        if text == schema_text(BAD):
            raise RuntimeError("grammar compile failed: lookbehind\nmore detail")
        self.guidance = (kind, text)


def test_one_refused_schema_keeps_guidance_for_the_others(caplog: pytest.LogCaptureFixture) -> None:
    guidance, applied = Guidance(), []

    def set_guidance(text: str) -> None:
        if text == schema_text(BAD):
            raise ValueError("unsupported keyword")
        applied.append(text)

    assert not guidance.apply(BAD, set_guidance)
    assert guidance.apply(GOOD, set_guidance)
    assert not guidance.apply(BAD, set_guidance)  # not retried: one warning, not one per job
    assert guidance.apply(GOOD, set_guidance)
    assert applied == [schema_text(GOOD)] * 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "unsupported keyword" in warnings[0]


def test_ort_backend_guides_each_schema_on_its_own() -> None:
    og = SimpleNamespace(Tokenizer=lambda _model: None, GeneratorParams=Params)
    folder: Any = SimpleNamespace(context_length=None)
    backend = OrtGenAIBackend(og, object(), folder, OrtGenAIModelSettings(providers=["cpu"]), info=None)  # type: ignore[arg-type]

    def params(schema: dict[str, Any]) -> Params:
        p, _ = backend._params(GenerationRequest(prompt="p", json_schema=schema), prompt_len=4)
        return p

    assert params(BAD).guidance is None
    assert params(GOOD).guidance == ("json_schema", schema_text(GOOD))
