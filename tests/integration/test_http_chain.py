"""The http backend inside the real worker process, and chains of endpoints in the supervisor.

The worker is a real spawned child; the remote is the scripted server on 127.0.0.1; a local endpoint
in a chain is the fake backend (tests/helpers), loaded through the same registry seam.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from edge.config.settings import HttpModelSettings, OrtGenAIModelSettings
from tests.helpers.openai_server import OpenAIStub
from tests.helpers.supervision import EventLog, job, running, wait_until, watchdog

LOADER = "tests.helpers.openai_server:chain_load"


def _http(url: str, **kw: Any) -> dict[str, Any]:
    return {"backend": "http", "url": url, "name": "phi", "timeout_s": 5.0, **kw}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_remote_answers_in_the_worker_and_a_stall_is_a_deadline_not_a_hang() -> None:
    events = EventLog()
    with OpenAIStub() as server, running(HttpModelSettings(**_http(server.url)), watchdog(token_s=1.0), events,
                                         loader=LOADER) as sup:  # fmt: skip
        out = sup.submit(job("ok-1"))
        assert out.ok and out.generation is not None and out.generation.text == "A red circle."
        assert out.model is not None and (out.model.backend, out.model.name) == ("http", "phi")
        server.mode = "stall"
        t0 = time.monotonic()
        out = sup.submit(job("stall-1", max_new_tokens=100))
        assert out.failure is not None and out.failure.reason == "token_timeout"
        assert time.monotonic() - t0 < 8
        assert events.wait_for("job_failed")[0]["job_id"] == "stall-1"
        server.mode = "garbage"
        wait_until(lambda: sup.stats().mode == "idle", timeout=20)
        out = sup.submit(job("garbage-1"))
        assert out.failure is not None and out.failure.reason == "generation_error"
        assert "malformed stream event" in out.failure.message


def test_server_down_at_start_switches_to_the_next_endpoint() -> None:
    down = f"http://127.0.0.1:{_free_port()}/v1"
    model = HttpModelSettings(**_http(down), fallback=[OrtGenAIModelSettings()])
    events = EventLog()
    with running(model, watchdog(), events, loader=LOADER) as sup:
        switch = events.wait_for("backend_switch")[0]
        assert "connection refused" in switch["reason"]
        assert (switch["from"]["backend"], switch["to"]["backend"]) == ("http", "ort-genai")
        out = sup.submit(job("local-1"))
        assert out.ok and out.model is not None and out.model.name == "fake"
        st = sup.stats()
        assert (
            st.endpoint == 1 and st.state == "degraded" and "connection refused" in (st.switch_reason or "")
        )


def test_a_failing_remote_hands_over_and_the_first_endpoint_is_retried() -> None:
    events = EventLog()
    with OpenAIStub() as server:
        model = HttpModelSettings(
            **_http(server.url), fallback=[OrtGenAIModelSettings()], retry_primary_s=2.0
        )
        with running(model, watchdog(), events, loader=LOADER) as sup:
            server.mode, server.status, server.headers = "status", 503, {"Retry-After": "1"}
            out = sup.submit(job("remote-1"))
            assert out.failure is not None and "HTTP 503" in out.failure.message  # a failed job is an event
            assert events.wait_for("job_failed")[0]["job_id"] == "remote-1"
            events.wait_for("backend_switch")
            out = sup.submit(job("local-1"))
            assert out.ok and out.model is not None and out.model.name == "fake"
            server.mode = "ok"
            switches = events.wait_for("backend_switch", 2, timeout=20)
            assert switches[1]["to"]["index"] == 0 and "retrying" in switches[1]["reason"]
            assert sup.wait_ready(20)
            out = sup.submit(job("remote-2"))
            assert out.ok and out.model is not None and out.model.backend == "http"
            assert sup.stats().endpoint == 0 and sup.stats().state == "ok"


def test_a_fallback_endpoint_generates_with_its_own_settings() -> None:
    from edge.config.settings import TaskSettings
    from edge.core.messages import Job
    from edge.pipeline.jobs import JobSpec, build_request

    down = f"http://127.0.0.1:{_free_port()}/v1"
    events = EventLog()
    with OpenAIStub() as server:
        own = HttpModelSettings(
            **_http(server.url), max_new_tokens=3, temperature=0.5, system_prompt="Be brief."
        )
        model = HttpModelSettings(**_http(down), max_new_tokens=40, system_prompt="First.", fallback=[own])
        spec = JobSpec(task=TaskSettings(name="caption", trigger="command"), trigger="command")
        request = build_request(spec, model, 8.0, None)  # built for the first entry, as the executor does
        with running(model, watchdog(), events, loader=LOADER, ready=False) as sup:
            events.wait_for("backend_switch")
            assert sup.wait_ready(30.0)
            out = sup.submit(
                Job(id="fb-1", task="caption", kind="caption", trigger="command", request=request)
            )
        assert out.ok, out.failure
        body = server.chats()[-1]
        assert (body["max_tokens"], body["temperature"]) == (3, 0.5)
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
