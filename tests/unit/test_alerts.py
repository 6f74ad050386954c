"""Alerts as pure logic: JMESPath conditions over structured answers, hysteresis, errors counted."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import ValidationError

from edge.capture import demo_world as S
from edge.config.settings import AlertSettings, Settings, TaskSettings
from edge.core.messages import ModelPayload, ResultPayload, StatsPayload, utc_iso
from edge.pipeline.alerts import Alerts

RED_CIRCLE = "length(shapes[?shape=='circle' && color=='red']) > `0`"
SHAPES = TaskSettings(
    name="shapes", kind="structured", json_schema=S.SCHEMA, trigger="interval", interval_s=1
)


def answer(seq: int, data: Any, task: str = "shapes") -> ResultPayload:
    now = time.time()
    return ResultPayload(
        id=f"d-1-{seq}",
        device="d",
        camera="main",
        task=task,
        seq=seq,
        captured_at=utc_iso(now),
        published_at=utc_iso(now),
        trigger="interval",
        text="",
        data=data,
        model=ModelPayload(name="m", backend="ort-genai", provider="cpu"),
        stats=StatsPayload(
            prompt_tokens=1,
            image_tokens=0,
            new_tokens=1,
            ttft_ms=1,
            decode_tok_s=1,
            total_ms=1,
            stop_reason="eos",
        ),
    )


def red(yes: bool) -> dict[str, Any]:
    color = "red" if yes else "blue"
    return {"shapes": [{"shape": "circle", "color": color, "position": "left"}]}


def test_follows_each_answer_without_hysteresis() -> None:
    a = Alerts([AlertSettings(name="red", task="shapes", when=RED_CIRCLE)])
    seen = []
    for i, yes in enumerate([False, True, True, False, True]):
        seen += [(c.on, c.result_id) for c in a.on_result(answer(i, red(yes)), float(i))]
    assert seen == [(True, "d-1-1"), (False, "d-1-3"), (True, "d-1-4")]


def test_for_s_and_clear_after_s_hold_through_a_flicker() -> None:
    a = Alerts([AlertSettings(name="red", task="shapes", when=RED_CIRCLE, for_s=2, clear_after_s=3)])
    answers = [True, False, True, True, True, False, True, True, False, False, False, False]
    changes = []
    for t, yes in enumerate(answers):
        changes += [(c.on, t) for c in a.on_result(answer(t, red(yes)), float(t))]
    # on after yes at 2, 3, 4 (held 2 s); the no at 5 and at 8 do not turn it off; off at 11 (no since 8)
    assert changes == [(True, 4), (False, 11)]


def test_failures_are_counted_not_raised() -> None:
    a = Alerts([AlertSettings(name="n", task="shapes", when="length(missing) > `0`")])
    assert a.on_result(answer(1, {"shapes": []}), 1.0) == []  # length(null): an error, counted
    assert a.on_result(answer(2, None), 2.0) == []  # a schema error: no data
    assert a.errors == {"n": 2} and not a.state("n")
    assert a.on_result(answer(3, red(True), task="other"), 3.0) == []  # another task: not looked at
    assert a.errors == {"n": 2}


def test_truth_is_jmespaths() -> None:
    a = Alerts([AlertSettings(name="any", task="shapes", when="shapes[?color=='red']")])
    assert a.on_result(answer(1, {"shapes": []}), 1.0) == []  # an empty list is false
    assert [c.on for c in a.on_result(answer(2, red(True)), 2.0)] == [True]


def test_alert_settings_errors_name_the_alert() -> None:
    with pytest.raises(ValidationError, match=r"alerts\.0\.when|not a JMESPath expression"):
        Settings(tasks=[SHAPES], alerts=[{"name": "bad", "task": "shapes", "when": "shapes[?"}])
    with pytest.raises(ValidationError, match="not a structured task"):
        Settings(tasks=[SHAPES, TaskSettings(name="cap")], alerts=[{"name": "a", "task": "cap", "when": "x"}])
    with pytest.raises(ValidationError, match="duplicate alert names"):
        Settings(tasks=[SHAPES], alerts=[{"name": "a", "task": "shapes", "when": "x"}] * 2)
    Settings(tasks=[SHAPES], alerts=[{"name": "a", "task": "shapes", "when": RED_CIRCLE}])
