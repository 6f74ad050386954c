"""The http backend against a scripted OpenAI-compatible server on 127.0.0.1: answers, images, JSON
schema, stats, and every fault as one clear line (never a hang, never the API key).

No real server that takes images runs here (llama-cpp-python has no prebuilt wheel for this
CPU/Python and building it takes too long on 2 cores), so image requests are recorded and checked
against the chat-completions request schema below, transcribed from OpenAI's API reference
(CreateChatCompletionRequest: the fields this backend sends).
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.config.settings import HttpModelSettings
from edge.core.errors import EndpointUnavailable, FrameError, GenerationError, ModelError
from edge.core.messages import GenerationRequest
from edge.imaging.imageio import decode_image_bytes
from edge.inference import http_backend, structured
from tests.helpers.openai_server import OpenAIStub

KEY = "sk-test-SECRET-1234"

_TEXT_PART = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
}
_IMAGE_PART = {
    "type": "object",
    "required": ["type", "image_url"],
    "properties": {
        "type": {"const": "image_url"},
        "image_url": {
            "type": "object",
            "required": ["url"],
            "properties": {"url": {"type": "string", "pattern": "^data:image/jpeg;base64,[A-Za-z0-9+/=]+$"},
                           "detail": {"enum": ["auto", "low", "high"]}},
        },
    },
}  # fmt: skip
CHAT_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"enum": ["system", "developer", "user", "assistant"]},
                    "content": {"anyOf": [
                        {"type": "string"},
                        {"type": "array", "minItems": 1, "items": {"anyOf": [_TEXT_PART, _IMAGE_PART]}},
                    ]},
                },
            },
        },
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "max_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "response_format": {
            "type": "object",
            "required": ["type", "json_schema"],
            "properties": {
                "type": {"const": "json_schema"},
                "json_schema": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
                                   "schema": {"type": "object"}, "strict": {"type": "boolean"}},
                },
            },
        },
    },
    "additionalProperties": False,
}  # fmt: skip


def settings(url: str, **kw: Any) -> HttpModelSettings:
    values: dict[str, Any] = {"backend": "http", "url": url, "name": "phi", "timeout_s": 5.0}
    values.update(kw)
    return HttpModelSettings(**values)


@pytest.fixture
def server() -> Any:
    with OpenAIStub() as stub:
        yield stub


def request(prompt: str = "describe", **kw: Any) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, max_new_tokens=kw.pop("max_new_tokens", 32), **kw)


def test_a_streamed_answer_with_stats_and_a_heartbeat_per_token(server: OpenAIStub) -> None:
    backend = http_backend.load(settings(server.url))
    assert (backend.info.backend, backend.info.name, backend.info.provider) == ("http", "phi", server.base)
    beats: list[int] = []
    gen = backend.generate(request(), beats.append)
    assert gen.text == "A red circle."
    assert beats == [1, 2, 3, 4]
    s = gen.stats
    assert (s.prompt_tokens, s.new_tokens, s.stop_reason) == (7, 4, "eos")
    assert s.ttft_ms > 0 and s.total_ms >= s.ttft_ms and s.decode_tok_s > 0
    body = server.chats()[0]
    assert body["stream"] is True and body["max_tokens"] == 32 and body["model"] == "phi"
    assert structured.validate(body, CHAT_REQUEST_SCHEMA) == []
    backend.close()


def test_images_go_as_scaled_jpeg_data_urls_matching_the_request_schema(server: OpenAIStub) -> None:
    backend = http_backend.load(settings(server.url, image_max_edge=320, system_prompt="be brief"))
    rng = np.random.default_rng(1)
    frames = tuple(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(2))  # multi-frame event
    backend.generate(request("what changed?", images=frames))
    body = server.chats()[-1]
    assert structured.validate(body, CHAT_REQUEST_SCHEMA) == []
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    parts = body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    jpeg = base64.b64decode(parts[0]["image_url"]["url"].split(",", 1)[1])
    assert jpeg[:2] == b"\xff\xd8"
    assert decode_image_bytes(jpeg).shape == (240, 320, 3)
    with pytest.raises(FrameError):
        backend.generate(request(images=(np.zeros((4, 4), np.uint8),)))
    assert len(server.chats()) == 1  # a bad frame is never sent


SCHEMA = {"type": "object", "required": ["shape"], "properties": {"shape": {"type": "string"}}}


def test_structured_output_uses_response_format_and_is_validated(server: OpenAIStub) -> None:
    server.tokens = ['{"shape":', ' "circle"}']
    backend = http_backend.load(settings(server.url))
    gen = backend.generate(request(json_schema=SCHEMA))
    assert gen.data == {"shape": "circle"} and gen.schema_error is None
    rf = server.chats()[-1]["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["schema"] == SCHEMA
    server.tokens = ['{"colour": 3}']
    gen = backend.generate(request(json_schema=SCHEMA))
    assert gen.data is None and gen.schema_error


def test_a_server_without_json_schema_output_runs_unconstrained(server: OpenAIStub) -> None:
    server.mode = "no_schema"
    server.tokens = ['Sure: {"shape": "square"}']
    backend = http_backend.load(settings(server.url))
    gen = backend.generate(request(json_schema=SCHEMA))
    assert gen.data == {"shape": "square"}
    backend.generate(request(json_schema=SCHEMA))
    assert ["response_format" in b for b in server.chats()] == [True, False, False]  # remembered


def test_a_non_streamed_answer_is_accepted(server: OpenAIStub) -> None:
    server.mode = "json"
    gen = http_backend.load(settings(server.url)).generate(request())
    assert gen.text == "A red circle." and gen.stats.new_tokens == 4


def test_the_key_comes_from_credentials_and_is_never_shown(
    server: OpenAIStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.key = KEY
    with pytest.raises(ModelError) as err:
        http_backend.load(settings(server.url))
    assert "HTTP 401" in str(err.value) and "API key" in str(err.value) and KEY not in str(err.value)
    (tmp_path / "model_api_key").write_text(KEY + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    backend = http_backend.load(settings(server.url))
    assert backend.generate(request()).text == "A red circle."
    assert server.requests[-1]["headers"]["Authorization"] == f"Bearer {KEY}"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    monkeypatch.setenv("MY_KEY", KEY)
    assert http_backend.api_key(settings(server.url, api_key_env="MY_KEY")) == KEY
    assert KEY not in repr(settings(server.url, api_key_env="MY_KEY"))


def test_max_tokens_and_an_endless_answer(server: OpenAIStub) -> None:
    backend = http_backend.load(settings(server.url))
    server.finish = "length"
    assert backend.generate(request()).stats.stop_reason == "max_tokens"
    server.mode = "endless"  # ignores max_tokens: cut a few events later
    t0 = time.monotonic()
    gen = backend.generate(request(max_new_tokens=20))
    assert gen.stats.stop_reason == "max_tokens" and gen.stats.new_tokens <= 20 + 16
    server.token_s = 0.02  # and the soft deadline stops it too
    gen = backend.generate(request(max_new_tokens=4000, deadline_s=0.5))
    assert gen.stats.stop_reason == "deadline" and time.monotonic() - t0 < 10


def test_cancel_stops_the_stream(server: OpenAIStub) -> None:
    server.mode = "endless"
    backend = http_backend.load(settings(server.url))
    cancel = threading.Event()

    def on_token(n: int) -> None:
        if n == 5:
            cancel.set()

    gen = backend.generate(request(max_new_tokens=4000), on_token, cancel)
    assert gen.stats.stop_reason == "cancelled" and gen.stats.new_tokens == 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("mode", "status", "headers", "needle", "kind"),
    [
        ("status", 500, {}, "HTTP 500 Internal Server Error: internal failure", EndpointUnavailable),
        ("status", 429, {"Retry-After": "30"}, "rate limited (retry after 30 s)", EndpointUnavailable),
        ("status", 400, {}, "HTTP 400", GenerationError),
        ("garbage", 0, {}, "malformed stream event (not JSON)", GenerationError),
        ("huge", 0, {}, "over model.max_response_kb=64", GenerationError),
    ],
)
def test_server_faults_are_one_line(
    server: OpenAIStub, mode: str, status: int, headers: dict[str, str], needle: str, kind: type
) -> None:
    backend = http_backend.load(settings(server.url, max_response_kb=64))
    server.mode, server.status, server.headers = mode, status, headers
    with pytest.raises(GenerationError) as err:
        backend.generate(request(max_new_tokens=4000))
    text = str(err.value)
    assert type(err.value) is kind and needle in text and "\n" not in text and server.url.rstrip("/") in text
    if status == 429:  # Retry-After is honoured: the next job fails fast without a request
        n = len(server.chats())
        with pytest.raises(EndpointUnavailable, match="not sent"):
            backend.generate(request())
        assert len(server.chats()) == n


def test_unknown_model(server: OpenAIStub) -> None:
    # Refused by name at load (the probe asks for it): a config error naming what is served.
    with pytest.raises(ModelError, match=r"config error: model.name 'nope' is not served.*has: phi"):
        http_backend.load(settings(server.url, name="nope"))
    # A model the server stops serving after load: the job's error says the same, and moves the chain on.
    backend = http_backend.load(settings(server.url))
    server.models = ["llava"]
    with pytest.raises(EndpointUnavailable, match=r"HTTP 404 Not Found: config error.*'phi'.*has: llava"):
        backend.generate(request())


def test_server_down_dns_and_tls_failures() -> None:
    down = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(ModelError, match="connection refused"):
        http_backend.load(settings(down))
    with pytest.raises(ModelError, match="DNS lookup failed"):
        http_backend.load(settings("http://edge-test.invalid/v1", allow_remote=True, timeout_s=3))
    # https to a plain-HTTP port: the handshake fails
    with OpenAIStub() as plain, pytest.raises(ModelError, match="TLS handshake failed"):
        http_backend.load(settings(f"https://{plain.base}/v1"))


def test_the_server_going_away_after_load_is_an_endpoint_error() -> None:
    with OpenAIStub() as stub:
        backend = http_backend.load(settings(stub.url))
    with pytest.raises(EndpointUnavailable, match="connection refused"):
        backend.generate(request())


def test_plain_http_to_another_host_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    s = settings("http://gpu.example:8080/v1", allow_remote=True)
    with caplog.at_level("WARNING"):
        assert http_backend.warn_plain(s)
        http_backend.warn_plain(s)
    assert len([r for r in caplog.records if "plain http://" in r.message]) == 1
    assert http_backend.warn_plain(settings("http://127.0.0.1:1/v1")) is None
