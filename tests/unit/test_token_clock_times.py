"""The token clock's per-token log for `edge bench`: off unless the bench names a file, one JSON line per
generation with a decode step per token after the first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.inference import token_clock
from edge.inference.token_clock import TokenClock


def run(n: int) -> None:
    clock = TokenClock(None, None, None)
    for _ in range(n):
        assert clock.tick() is None
    clock.finish(prompt_tokens=3, image_tokens=0, new_tokens=n, max_new_tokens=64)


def test_each_generation_appends_its_decode_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "token_times.jsonl"
    monkeypatch.setattr(token_clock, "_TOKEN_TIMES", str(log))
    run(5)
    run(1)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [len(doc["steps_ms"]) for doc in lines] == [4, 0]  # steps between tokens: n - 1
    assert all(step >= 0 for step in lines[0]["steps_ms"])


def test_nothing_is_kept_or_written_outside_the_bench(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_clock, "_TOKEN_TIMES", None)
    monkeypatch.chdir(tmp_path)
    clock = TokenClock(None, None, None)
    clock.tick()
    assert clock._times is None
    run(3)
    assert list(tmp_path.iterdir()) == []
