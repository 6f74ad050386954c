"""`edge doctor` on an http endpoint: reachable, authorised, model listed (scripted server, 127.0.0.1)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edge.cli.doctor.endpoint import check_endpoint
from edge.config.settings import HttpModelSettings
from tests.helpers.openai_server import OpenAIStub


def _model(url: str, name: str = "phi") -> HttpModelSettings:
    return HttpModelSettings(backend="http", url=url, name=name, timeout_s=5.0)


def _verdicts(results: list) -> dict[str, str]:
    return {r.name: r.status for r in results}


def test_a_healthy_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with OpenAIStub() as server:
        server.key = "sk-doctor"
        (tmp_path / "model_api_key").write_text("sk-doctor")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
        results = check_endpoint("model", _model(server.url), 5.0)
    assert _verdicts(results) == {"model endpoint": "ok", "model key": "ok", "model listed": "ok",
                                  "model vision": "ok", "model response_format": "ok"}  # fmt: skip
    assert all("sk-doctor" not in r.line() for r in results)


def test_a_refused_key_and_an_unlisted_model() -> None:
    with OpenAIStub() as server:
        server.key = "sk-other"
        refused = check_endpoint("model", _model(server.url), 5.0)
        server.key = None
        unlisted = check_endpoint("model", _model(server.url, "llava"), 5.0)
    assert _verdicts(refused) == {"model endpoint": "ok", "model key": "fail"}
    assert "HTTP 401" in refused[1].detail and refused[1].fix
    assert _verdicts(unlisted)["model listed"] == "fail" and "has: phi" in unlisted[-1].detail


def test_server_down() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (result,) = check_endpoint("model", _model(f"http://127.0.0.1:{port}/v1"), 5.0)
    assert (
        result.status == "fail"
        and "connection refused" in result.detail
        and "start the server" in (result.fix or "")
    )
