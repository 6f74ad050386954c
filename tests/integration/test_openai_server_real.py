"""The http backend against a real OpenAI-compatible server: Hugging Face `transformers serve`.

Two servers on 127.0.0.1 for the module, from the cached rig (tests/rigs/openai_server): a text-only
tiny Phi-3 and a tiny LLaVA that turns each image into 16 prompt tokens. Their model ids are the model
folders' paths (a pinned server). Each test is one thing a real server does that the scripted one was
written not to: a 400 for a wrong model name, response_format accepted and ignored, images dropped by
a text-only model, a stream that stops mid-answer. The scripted server (tests/helpers/openai_server.py)
stays for the faults a real one cannot be made to produce.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.cli.doctor.endpoint import check_endpoint
from edge.config.settings import HttpModelSettings, TaskSettings
from edge.core.errors import GenerationError, ModelError
from edge.core.messages import GenerationRequest, Job, ResultPayload
from edge.imaging.imageio import encode_jpeg
from edge.inference import http_backend
from edge.pipeline.jobs import JobSpec, build_request
from tests.helpers.supervision import EventLog, running, wait_until, watchdog
from tests.rigs.openai_server import Rig, Server, ensure_rig, free_port, start_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # a cold rig builds in minutes

LOADER = "tests.helpers.openai_server:chain_load"
SCHEMA = {"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]}


@pytest.fixture(scope="module")
def rig() -> Rig:
    return ensure_rig()


@pytest.fixture(scope="module")
def text_server(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(rig, rig.text_model, tmp_path_factory.mktemp("serve") / "text.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def vision_server(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(rig, rig.vision_model, tmp_path_factory.mktemp("serve") / "vision.log")
    yield server
    server.stop()


def _model(server: Server, **kw: Any) -> HttpModelSettings:
    return HttpModelSettings(
        **{"backend": "http", "url": server.url, "name": server.model, "timeout_s": 30.0, **kw}
    )


def _frame() -> np.ndarray:
    img = np.full((120, 160, 3), 60, np.uint8)
    img[30:90, 50:110] = (0, 0, 220)
    return img


def _requests_logged(server: Server) -> list[str]:
    return re.findall(r"\[transformers\] Request [^\n]*", server.log_text())


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True,
                          env=environ, timeout=180)  # fmt: skip


def _toml(server: Server, tmp_path: Path, name: str, tasks: str = "") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'device_id = "real"\n[model]\nbackend = "http"\nurl = "{server.url}"\nname = "{server.model}"\n'
        f"max_new_tokens = 6\ntimeout_s = 60\n{tasks}"
    )
    return path


# --------------------------------------------------------------------------- the one-shots and config check


def test_one_shots_and_config_check_take_an_http_config(
    text_server: Server, vision_server: Server, tmp_path: Path
) -> None:
    image = tmp_path / "scene.jpg"
    image.write_bytes(encode_jpeg(_frame(), 65536))
    vision = _toml(vision_server, tmp_path, "vision")
    text = _toml(text_server, tmp_path, "text")

    caption = edge("caption", str(image), "--config", str(vision), "--json")
    assert caption.returncode == 0, caption.stderr
    payload = ResultPayload.model_validate(json.loads(caption.stdout.strip().splitlines()[-1]))
    assert payload.model.backend == "http" and payload.model.name == vision_server.model
    assert payload.stats.prompt_tokens > 16  # the picture became tokens

    ask = edge("ask", "What color is the square?", "--config", str(text))
    assert ask.returncode == 0, ask.stderr
    assert ask.stdout.strip()

    for config in (vision, text):
        checked = edge("config", "check", "--config", str(config))
        assert checked.returncode == 0, checked.stdout + checked.stderr


# --------------------------------------------------------------------------- each chain entry's own settings


def test_a_fallback_entry_generates_with_its_own_settings(vision_server: Server) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"
    own = _model(vision_server, max_new_tokens=3, system_prompt="Answer in three words.")
    model = HttpModelSettings(backend="http", url=down, name="first", max_new_tokens=40, timeout_s=10.0,
                          system_prompt="You are the first endpoint.", fallback=[own])  # fmt: skip
    spec = JobSpec(task=TaskSettings(name="caption", trigger="command"), trigger="command")
    request = build_request(spec, model, 30.0, _frame())  # built for the first entry, as the executor does
    events = EventLog()
    before = len(_requests_logged(vision_server))
    with running(model, watchdog(first_token_s=30.0, token_s=10.0, generation_s=60.0, total_s=90.0,
                                 load_timeout_s=60.0), events, loader=LOADER, ready=False) as sup:  # fmt: skip
        events.wait_for("backend_switch", timeout=60)
        assert sup.wait_ready(60.0)
        job = Job(id="fb-1", task="caption", kind="caption", trigger="command", request=request)
        out = sup.submit(job)
    assert out.ok and out.generation is not None, out.failure
    assert out.generation.stats.new_tokens <= 3
    streamed = [line for line in _requests_logged(vision_server)[before:] if "stream True" in line]
    assert streamed and "'max_new_tokens': 3" in streamed[-1], streamed


# --------------------------------------------------------------------------- response_format accepted, ignored


def test_a_server_that_ignores_response_format_is_named_once_and_validated_after(
    text_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    results = {r.name: r for r in check_endpoint("model", _model(text_server), 30.0)}
    fmt = results["model response_format"]
    assert fmt.status == "warn" and "ignores it" in fmt.detail

    backend = http_backend.load(_model(text_server))
    request = GenerationRequest(prompt="Count the shapes.", max_new_tokens=6, json_schema=SCHEMA)
    caplog.set_level(logging.WARNING, "edge.inference.http_backend")
    assert "response_format" in backend.body(request)
    try:
        first = backend.generate(request)
        second = backend.generate(request)
    finally:
        backend.close()
    said = [r for r in caplog.records if "ignores response_format" in r.getMessage()]
    assert len(said) == 1 and text_server.model in said[0].getMessage()
    assert first.schema_error is not None and second.schema_error is not None  # counted, never dropped
    assert "schema was in the prompt only" in second.schema_error
    # after the first answer the schema goes in the prompt only (the server logs it ignored it)
    assert (
        "response_format" not in backend.body(request)
        and "Ignoring unsupported fields" in text_server.log_text()
    )


# --------------------------------------------------------------------------- images to a text-only model


def test_a_text_only_endpoint_is_told_from_a_vision_one_and_refuses_images(
    text_server: Server, vision_server: Server
) -> None:
    text = {r.name: r for r in check_endpoint("model", _model(text_server), 30.0)}
    seeing = {r.name: r for r in check_endpoint("model", _model(vision_server), 30.0)}
    assert text["model vision"].status == "fail" and "text-only" in text["model vision"].detail
    assert seeing["model vision"].status == "ok" and "16 prompt tokens" in seeing["model vision"].detail

    backend = http_backend.load(_model(text_server))
    try:
        assert backend.info.vision is False
        with pytest.raises(
            GenerationError, match=rf"{re.escape(text_server.url)} model .* is a text-only endpoint"
        ):
            backend.generate(GenerationRequest(prompt="Describe.", images=(_frame(),), max_new_tokens=4))
        assert backend.generate(GenerationRequest(prompt="Hello?", max_new_tokens=4)).text  # text still works
    finally:
        backend.close()
    backend = http_backend.load(_model(vision_server))
    try:
        gen = backend.generate(GenerationRequest(prompt="Describe.", images=(_frame(),), max_new_tokens=4))
        assert backend.info.vision is True and gen.stats.prompt_tokens > 16
    finally:
        backend.close()


# --------------------------------------------------------------------------- a wrong model name (HTTP 400)


def test_an_unknown_model_name_is_a_config_error_and_moves_down_the_chain(
    text_server: Server, vision_server: Server
) -> None:
    with pytest.raises(ModelError) as err:
        http_backend.load(
            HttpModelSettings(backend="http", url=text_server.url, name="phi-nope", timeout_s=30.0)
        )
    assert "HTTP 400" in str(err.value) and "config error: model.name 'phi-nope' is not served" in str(
        err.value
    )
    assert text_server.model in str(err.value)  # the served one, named

    wrong = HttpModelSettings(backend="http", url=text_server.url, name="phi-nope", timeout_s=30.0,
                          fallback=[_model(vision_server)])  # fmt: skip
    events = EventLog()
    with running(wrong, watchdog(load_timeout_s=60.0, first_token_s=30.0, token_s=10.0, generation_s=60.0,
                                 total_s=90.0), events, loader=LOADER, ready=False) as sup:  # fmt: skip
        switch = events.wait_for("backend_switch", timeout=60)[0]
        assert "not served" in switch["reason"] and switch["to"]["url"] == vision_server.url
        assert sup.wait_ready(60.0)


# --------------------------------------------------------------------------- a stream that stops mid-answer


def test_a_stall_in_the_middle_of_a_stream_is_the_token_deadline(rig: Rig, tmp_path: Path) -> None:
    server = start_server(rig, rig.text_model, tmp_path / "stall.log")  # its own: it gets SIGSTOPped
    try:
        request = GenerationRequest(prompt="Tell a long story.", max_new_tokens=3000)
        job = Job(id="stall-1", task="caption", kind="caption", trigger="command", request=request)
        wd = watchdog(first_token_s=30.0, token_s=3.0, generation_s=120.0, total_s=150.0, load_timeout_s=60.0)
        with running(_model(server, timeout_s=60.0), wd, EventLog(), loader=LOADER) as sup:
            outcome: list[Any] = []
            worker = threading.Thread(target=lambda: outcome.append(sup.submit(job)))
            worker.start()
            wait_until(lambda: sup.stats().phase == "decoding" or bool(outcome), timeout=60)
            assert not outcome, "the answer ended before it could be stopped"
            os.kill(server.pid, signal.SIGSTOP)
            try:
                worker.join(60)
            finally:
                os.kill(server.pid, signal.SIGCONT)
        assert outcome and outcome[0].failure is not None
        assert outcome[0].failure.reason == "token_timeout", outcome[0].failure
    finally:
        server.stop()


# --------------------------------------------------------------------------- edge bench against an endpoint


@pytest.mark.timeout(600)
def test_bench_measures_ttft_decode_and_latency_at_an_endpoint(
    vision_server: Server, mosquitto: Any, tmp_path: Path
) -> None:
    """`edge bench` on an http model: the daemon's jobs against the endpoint give ttft, decode speed
    and capture -> broker latency; the runtime overhead is not judged (no local runtime to compare)."""
    import tomli_w

    config = tmp_path / "bench.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "device_id": "real-bench",
                "camera": {"source": "testsrc", "width": 320, "height": 240, "fps": 10},
                "model": {
                    "backend": "http",
                    "url": vision_server.url,
                    "name": vision_server.model,
                    "max_new_tokens": 8,
                    "timeout_s": 60,
                },  # fmt: skip
                "mqtt": {
                    "host": mosquitto.host,
                    "port": mosquitto.port,
                    "outbox_path": str(tmp_path / "outbox.sqlite"),
                },  # fmt: skip
            }
        )
    )
    res = edge("bench", "--config", str(config), "--json", "--jobs", "3", "--max-pairs", "3")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert (report["backend"], report["model"]) == ("http", vision_server.model)
    assert report["ttft_ms"] > 0 and report["latency_ms_p50"] > 0
    assert report["decode_tok_s"] is None or report["decode_tok_s"] > 0
    assert report["prompt_tokens"] > 16  # the frame reached the model (16 image tokens on this server)
    assert report.get("overhead_pct") is None
    assert any("runs on the endpoint" in n for n in report["notes"]), report["notes"]
    assert report["failures"] == 0 and report["daemon_exit"] == 0
