"""Fair scheduling across cameras at its seam: the scheduler (one gate per camera, tasks bound to
cameras) and the job queue (newest per (camera, task), round robin, drops per camera). Pure logic."""

from __future__ import annotations

from collections import Counter

import numpy as np

from edge.config.settings import GateSettings, TaskSettings
from edge.core.messages import Frame
from edge.pipeline.jobs import JobQueue, JobSpec, Recent, RecentResults, Scheduler

CAPTION = TaskSettings(name="caption", trigger="interval", interval_s=1)
MOTION = TaskSettings(name="moving", trigger="motion")
GATE_ONLY = TaskSettings(name="plates", trigger="interval", interval_s=1, cameras=["gate"])
DIGEST = TaskSettings(
    name="digest", kind="summarize", source_task="caption", trigger="interval", interval_s=60
)
ASK = TaskSettings(name="ask", kind="ask", trigger="command")


def frame(camera: str, seq: int = 1, value: int = 0) -> Frame:
    return Frame(np.full((48, 64, 3), value, np.uint8), 0.0, 0.0, seq, camera)


def job(camera: str, task: TaskSettings = CAPTION, tag: str = "") -> JobSpec:
    return JobSpec(task=task, trigger="interval", camera=camera, context={"tag": tag})


def test_tasks_run_per_bound_camera_with_a_clock_per_camera() -> None:
    s = Scheduler([CAPTION, GATE_ONLY], GateSettings(), cameras=["gate", "yard"])
    assert [(j.camera, j.task.name) for j in s.on_frame(frame("gate"), 0.0)] == [
        ("gate", "caption"),
        ("gate", "plates"),
    ]
    assert [(j.camera, j.task.name) for j in s.on_frame(frame("yard"), 0.1)] == [("yard", "caption")]
    assert s.on_frame(frame("gate", 2), 0.5) == []  # gate's caption ran 0.5 s ago
    assert [j.camera for j in s.on_frame(frame("yard", 2), 1.1)] == ["yard"]
    assert s.on_frame(frame("shed"), 2.0) == []  # not a configured camera (removed by a reload)


def test_each_camera_has_its_own_gate_and_gated_count() -> None:
    s = Scheduler([MOTION], GateSettings(min_interval_s=0, max_interval_s=600), cameras=["a", "b"])
    assert [j.camera for j in s.on_frame(frame("a", 1), 0.0)] == ["a"]  # first frame of a
    assert [j.camera for j in s.on_frame(frame("b", 1), 0.0)] == ["b"]  # b's gate is not a's
    assert s.on_frame(frame("a", 2), 1.0) == []  # a still: held back by a's gate
    assert s.on_frame(frame("a", 3), 2.0) == []
    assert s.gated_by_camera() == {"a": 2, "b": 0} and s.gated == 2
    assert [j.gate_score for j in s.on_frame(frame("b", 2, 255), 3.0)] == [1.0]  # b changed, a did not
    s.gate_settings = GateSettings(motion_threshold=0.5)
    assert s.gate("a").settings.motion_threshold == s.gate("b").settings.motion_threshold == 0.5  # type: ignore[union-attr]
    s.set_cameras(["b", "c"])
    assert s.cameras == ("b", "c") and s.gated_by_camera() == {"b": 0, "c": 0}


def test_a_summary_per_camera_other_text_tasks_once_and_serial_per_camera() -> None:
    hourly = TaskSettings(name="hourly", kind="ask", trigger="interval", interval_s=60, cameras=["yard"])
    serial = TaskSettings(name="door", trigger="serial")
    s = Scheduler([DIGEST, hourly, serial], GateSettings(), cameras=["gate", "yard"])
    assert sorted((j.camera, j.task.name) for j in s.on_tick(0.0)) == [
        ("gate", "digest"),
        ("yard", "digest"),
        ("yard", "hourly"),
    ]
    assert [j.camera for j in s.for_serial("MOTION", None)] == ["gate", "yard"]
    recent = RecentResults()
    recent.add(Recent("1", "caption", "a car", 10.0, camera="gate"))
    recent.add(Recent("2", "caption", "a cow", 11.0, camera="yard"))
    assert [r.text for r in recent.window("caption", 0.0, 10, camera="yard")] == ["a cow"]
    assert len(recent.window("caption", 0.0, 10)) == 2


def test_newest_job_per_camera_and_task_wins_and_drops_count_per_camera() -> None:
    q = JobQueue(maxsize=8)
    assert q.put(job("gate", tag="old")) == "queued"
    assert q.put(job("yard")) == "queued"
    assert q.put(job("gate", tag="new")) == "replaced"  # same camera and task: newest wins
    assert q.put(job("gate", MOTION)) == "queued"  # another task of the same camera is kept
    assert q.stats.by_camera == {"gate": 1}
    got = [q.get(0) for _ in range(3)]
    assert [(j.camera, j.task.name, j.context.get("tag")) for j in got if j] == [
        ("gate", "caption", "new"),
        ("yard", "caption", ""),
        ("gate", "moving", ""),
    ]


def test_a_busy_camera_cannot_starve_a_quiet_one() -> None:
    """Camera `busy` has four tasks due on every frame, `quiet` one task; the worker takes one job
    per round. Round robin serves them alternately; first come, first served would not."""
    tasks = [TaskSettings(name=f"t{i}", trigger="interval", interval_s=1) for i in range(4)]
    q = JobQueue(maxsize=8)
    served: Counter[str] = Counter()
    for _ in range(200):
        for t in tasks:
            q.put(job("busy", t))
        q.put(job("quiet"))
        j = q.get(0)
        assert j is not None
        served[j.camera] += 1
    assert served["busy"] == served["quiet"] == 100
    assert q.stats.by_camera["busy"] > q.stats.by_camera["quiet"]  # busy's jobs were superseded more


def test_three_cameras_share_a_saturated_worker_evenly() -> None:
    q = JobQueue(maxsize=8)
    served: Counter[str] = Counter()
    for step in range(300):
        q.put(job("a"))  # a fast camera: a new frame job every round
        if step % 2 == 0:
            q.put(job("b"))
        if step % 3 == 0:
            q.put(job("c"))
        j = q.get(0)
        assert j is not None
        served[j.camera] += 1
    assert max(served.values()) / min(served.values()) <= 1.5, served


def test_a_full_queue_drops_from_the_camera_with_most_waiting() -> None:
    q = JobQueue(maxsize=4)
    q.put(job("quiet"))
    for t in (CAPTION, MOTION, GATE_ONLY):
        q.put(job("busy", t))
    assert q.put(job("third")) == "queued"
    assert q.stats.skipped == 1 and q.stats.by_camera == {"busy": 1}
    assert [j.camera for j in q.pending()] == ["quiet", "busy", "busy", "third"]


def test_commands_keep_their_turn_among_cameras() -> None:
    q = JobQueue(maxsize=8)
    q.put(job("a"))
    q.put(JobSpec(task=ASK, trigger="command", prompt="?", reply=object(), camera="b"))
    q.put(job("b"))
    first, second, third = (q.get(0) for _ in range(3))
    assert first is not None and first.camera == "a" and not first.is_command
    assert second is not None and second.is_command  # older than b's scheduled job
    assert third is not None and third.camera == "b"
