"""Job queue policies and the summarize window: pure logic, no camera or model."""

from __future__ import annotations

import threading

from edge.config.settings import TaskSettings
from edge.pipeline.jobs import JobQueue, JobSpec, Recent, RecentResults, summarize_prompt

CAPTION = TaskSettings(name="caption", trigger="interval", interval_s=1)
OTHER = TaskSettings(name="other", trigger="motion")
ASK = TaskSettings(name="ask", kind="ask", trigger="command")


def frame_job(task: TaskSettings, tag: str) -> JobSpec:
    return JobSpec(task=task, trigger="interval", context={"tag": tag})


def command_job(tag: str) -> JobSpec:
    return JobSpec(task=ASK, trigger="command", prompt=tag, reply=lambda reply: None)


def test_newest_frame_job_replaces_pending_one_of_same_task() -> None:
    q = JobQueue(maxsize=4)
    assert q.put(frame_job(CAPTION, "old")) == "queued"
    assert q.put(frame_job(OTHER, "x")) == "queued"
    assert q.put(frame_job(CAPTION, "new")) == "replaced"
    got = [q.get(0.1) for _ in range(2)]
    assert [(j.task.name, j.context["tag"]) for j in got] == [("caption", "new"), ("other", "x")]
    assert q.stats.replaced == 1 and q.get(0.01) is None


def test_commands_are_never_replaced_and_refused_only_when_full_of_commands() -> None:
    q = JobQueue(maxsize=2)
    assert q.put(command_job("a")) == "queued"
    assert q.put(frame_job(CAPTION, "f")) == "queued"
    # full: the frame job makes room for the command
    assert q.put(command_job("b")) == "queued"
    assert [j.prompt for j in (q.get(0.1), q.get(0.1))] == ["a", "b"]
    q.put(command_job("c"))
    q.put(command_job("d"))
    assert q.put(command_job("e")) == "rejected"
    assert q.put(frame_job(CAPTION, "g")) == "replaced"  # waits out: commands keep their places
    assert q.stats.rejected == 1 and len(q) == 2


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
