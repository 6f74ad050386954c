"""The worker's log lines leave through the parent's handlers, so one format holds for the whole daemon.

A real spawned worker (the fake backend told to fail its load, which the worker logs as a warning)
and the parent's root logger set up as `edge run --log-format json` sets it up: the worker's line must
arrive as a JSON line through that handler, naming the worker's pid.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import time
from collections.abc import Iterator

import pytest

from edge.cli.logsetup import JsonFormatter
from edge.inference.heartbeat import Heartbeat
from edge.inference.protocol import LoadFailed
from edge.inference.worker import WorkerProcess
from tests.helpers.supervision import FAKE_LOADER, fake_model


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The parent's logging as `--log-format json` configures it, writing into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_worker_lines_go_through_the_parents_json_handler(json_lines: io.StringIO) -> None:
    ctx = multiprocessing.get_context("spawn")
    worker = WorkerProcess(ctx, fake_model(fail_load="disk on fire"), Heartbeat(ctx), FAKE_LOADER)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        reply = None
        while reply is None and time.monotonic() < deadline:
            reply = worker.receive(1.0)
        assert isinstance(reply, LoadFailed), reply
        pid = worker.pid
        while time.monotonic() < deadline and not any(
            "disk on fire" in str(d["msg"]) for d in _lines(json_lines)
        ):
            time.sleep(0.05)
    finally:
        worker.kill()
    ours = [d for d in _lines(json_lines) if "disk on fire" in str(d["msg"])]
    assert len(ours) == 1, json_lines.getvalue()
    line = ours[0]
    assert line["level"] == "warning"
    assert line["logger"] == "edge.inference.worker"
    assert str(line["msg"]).startswith(f"worker[{pid}] load failed: ")
