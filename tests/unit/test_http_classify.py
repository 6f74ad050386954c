"""A server's 4xx is read by what its body says; a request is bound to the chain entry that runs it."""

from __future__ import annotations

import pytest

from edge.config.settings import OrtGenAIModelSettings
from edge.core.errors import EndpointUnavailable, GenerationError
from edge.core.messages import GenerationRequest
from edge.inference.http_answers import ModelNotServed, status_error
from edge.inference.requests import bind


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, b"{\"detail\":\"Server is pinned to '/m/tiny'; requested 'phi'.\"}"),  # transformers serve
        (404, b'{"error":{"message":"model \\"phi\\" not found, try pulling it first"}}'),  # Ollama
        (404, b'{"error":{"message":"The model `phi` does not exist.","code":"model_not_found"}}'),  # OpenAI
        (400, b'{"object":"error","message":"The model `phi` does not exist.","code":400}'),  # vLLM
    ],
)
def test_a_missing_model_is_a_config_error_that_moves_the_chain(status: int, body: bytes) -> None:
    err = status_error(status, "Bad Request", body, "http://h/v1 model phi", "phi", None)
    assert isinstance(err, ModelNotServed) and isinstance(err, EndpointUnavailable)
    assert "config error: model.name 'phi' is not served" in str(err)


@pytest.mark.parametrize(
    "body",
    [
        b'{"error":{"message":"response_format json_schema is not supported for model phi"}}',
        b'{"error":{"message":"max_tokens must be at least 1"}}',
    ],
)
def test_other_400s_stay_request_errors(body: bytes) -> None:
    err = status_error(400, "Bad Request", body, "http://h/v1 model phi", "phi", None)
    assert type(err) is GenerationError


def test_bind_takes_the_entry_settings_and_keeps_the_task_num_crops() -> None:
    entry = OrtGenAIModelSettings(max_new_tokens=3, temperature=0.5, system_prompt="brief", num_crops=2)
    bare = bind(GenerationRequest(prompt="p", max_new_tokens=40), entry)
    assert (bare.max_new_tokens, bare.temperature, bare.system, bare.num_crops) == (3, 0.5, "brief", 2)
    own = bind(GenerationRequest(prompt="p", task_num_crops=1, num_crops=4), entry)
    assert own.num_crops == 1
