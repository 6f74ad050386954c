"""Job queue policies and the summarize window: pure logic, no camera or model."""

from __future__ import annotations

import logging
import threading

import pytest

from edge.config.settings import TaskSettings
from edge.pipeline.jobs import MAX_COMMAND_STREAK, JobQueue, JobSpec, Recent, RecentResults, summarize_prompt

CAPTION = TaskSettings(name="caption", trigger="interval", interval_s=1)
OTHER = TaskSettings(name="other", trigger="motion")
ASK = TaskSettings(name="ask", kind="ask", trigger="command")
ASK_INTERVAL = TaskSettings(name="hourly", kind="ask", trigger="interval", interval_s=3600)


def frame_job(task: TaskSettings, tag: str) -> JobSpec:
    return JobSpec(task=task, trigger="interval", context={"tag": tag})


def take(q: JobQueue, timeout: float = 0.1) -> JobSpec:
    job = q.get(timeout)
    assert job is not None, f"no job within {timeout}s"
    return job


def command_job(tag: str) -> JobSpec:
    return JobSpec(task=ASK, trigger="command", prompt=tag, reply=lambda reply: None)


def test_newest_frame_job_replaces_pending_one_of_same_task() -> None:
    q = JobQueue(maxsize=4)
    assert q.put(frame_job(CAPTION, "old")) == "queued"
    assert q.put(frame_job(OTHER, "x")) == "queued"
    assert q.put(frame_job(CAPTION, "new")) == "replaced"
    got = [take(q, 0.1) for _ in range(2)]
    assert [(j.task.name, j.context["tag"]) for j in got] == [("caption", "new"), ("other", "x")]
    assert q.stats.replaced == 1 and q.get(0.01) is None


def test_commands_are_never_replaced_and_keep_one_slot_for_scheduled_work() -> None:
    q = JobQueue(maxsize=3)
    assert q.put(command_job("a")) == "queued"
    assert q.put(frame_job(CAPTION, "f")) == "queued"
    assert q.put(frame_job(OTHER, "o")) == "queued"
    # full: the oldest scheduled job makes room for the command, counted and logged as skipped
    assert q.put(command_job("b")) == "queued"
    assert q.stats.skipped == 1
    assert q.put(command_job("c")) == "rejected"  # two commands of three slots: the last is kept
    assert q.put(frame_job(CAPTION, "g")) == "queued"  # newest scheduled work in the kept slot
    assert [j.prompt or j.context["tag"] for j in (take(q, 0.1), take(q, 0.1), take(q, 0.1))] == [
        "a",
        "b",
        "g",
    ]
    assert q.stats.rejected == 1 and q.stats.skipped == 2 and len(q) == 0


def test_get_wakes_on_put_and_drain_closes() -> None:
    q = JobQueue()
    got: list[JobSpec | None] = []
    t = threading.Thread(target=lambda: got.append(q.get(5.0)))
    t.start()
    q.put(command_job("x"))
    t.join(5)
    assert got and got[0] is not None and got[0].prompt == "x"
    q.put(frame_job(CAPTION, "left"))
    left = q.drain()
    assert [j.context["tag"] for j in left] == ["left"]
    assert q.put(frame_job(CAPTION, "late")) == "closed"


def test_recent_results_window_and_limit() -> None:
    r = RecentResults(per_task=5)
    for i in range(8):
        r.add(Recent(id=f"id{i}", task="caption", text=f"t{i}", captured_at=100.0 + i))
    r.add(Recent(id="o", task="other", text="x", captured_at=200.0))
    items = r.window("caption", since=104.0, limit=3)
    assert [i.id for i in items] == ["id5", "id6", "id7"]
    assert r.window("caption", since=0, limit=100)[0].id == "id3"  # only 5 kept per task


def test_summarize_prompt_lists_each_observation() -> None:
    task = TaskSettings(
        name="digest", kind="summarize", source_task="caption", trigger="interval", interval_s=60
    )
    items = [Recent(id="a", task="caption", text=" cat ", captured_at=0.0)]
    text = summarize_prompt(task, items)
    assert text.startswith(task.prompt) and text.endswith("00:00:00 cat")


def test_a_steady_stream_of_commands_does_not_starve_scheduled_tasks() -> None:
    """One worker, asks arriving faster than it serves them, a frame job per served job: the
    interval and motion tasks still run at least every MAX_COMMAND_STREAK + 1 jobs."""
    q = JobQueue(maxsize=8)
    served: list[str] = []
    for i in range(60):
        q.put(command_job(f"ask{i}"))
        q.put(command_job(f"ask{i}b"))
        q.put(frame_job(CAPTION if i % 2 else OTHER, f"f{i}"))
        job = q.get(0.1)
        assert job is not None
        served.append("cmd" if job.is_command else job.task.name)
    gaps = "".join("c" if s == "cmd" else "s" for s in served).split("s")
    assert max(len(g) for g in gaps[1:-1]) <= MAX_COMMAND_STREAK, served
    assert served.count("caption") >= 10 and served.count("other") >= 10
    assert q.stats.rejected > 0  # the excess commands were answered "busy", not queued forever


def test_commands_alone_are_served_in_order_and_a_lone_scheduled_job_waits_at_most_a_streak() -> None:
    q = JobQueue(maxsize=8)
    for i in range(5):
        q.put(command_job(f"c{i}"))
    q.put(frame_job(CAPTION, "f"))
    order = [q.get(0.1) for _ in range(6)]
    assert [j.prompt or j.context["tag"] for j in order if j] == ["c0", "c1", "f", "c2", "c3", "c4"]


def test_a_skipped_scheduled_job_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    q = JobQueue(maxsize=2)
    q.put(frame_job(CAPTION, "a"))
    q.put(frame_job(OTHER, "b"))
    with caplog.at_level(logging.WARNING, logger="edge.pipeline.jobs"):
        assert q.put(frame_job(ASK_INTERVAL, "c")) == "queued"
    assert q.stats.skipped == 1
    assert "scheduled job main/caption (interval) skipped" in caplog.text
