"""Executor policy at its seams: a fake supervisor and frame source, a real outbox and publisher
(never started, so what it would publish stays in the outbox for the test to read)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edge.config.settings import MqttSettings, OrtGenAIModelSettings, TaskSettings, WatchdogSettings
from edge.core.messages import Frame, Generation, Job, ModelPayload, StatsPayload
from edge.core.stats import Counters, Rolling
from edge.inference.protocol import JobFailure, JobOutcome
from edge.mqtt.client import MqttClient
from edge.mqtt.outbox import Outbox
from edge.mqtt.publisher import Publisher
from edge.mqtt.topics import Topics
from edge.pipeline.executor import Executor, ExecutorDeps
from edge.pipeline.jobs import JobQueue, JobSpec, RecentResults

CAPTION = TaskSettings(name="caption", trigger="interval", interval_s=1)


class Frames:
    def __init__(self, frame: Frame | None, fresh: Frame | None = None) -> None:
        self.frame, self.fresh, self.waited = frame, fresh, 0

    def latest(self, after_seq: int = -1) -> Frame | None:
        return self.frame

    def wait_frame(self, after_seq: int = -1, timeout: float = 1.0) -> Frame | None:
        self.waited += 1
        return self.fresh


class Supervisor:
    def __init__(self, failure: JobFailure | None = None) -> None:
        self.jobs: list[Job] = []
        self.failure = failure

    def submit(self, job: Job) -> JobOutcome:
        self.jobs.append(job)
        gen = None
        if self.failure is None:
            stats = StatsPayload(
                prompt_tokens=10,
                image_tokens=5,
                new_tokens=3,
                ttft_ms=1.0,
                decode_tok_s=100.0,
                total_ms=2.0,
                stop_reason="eos",
            )
            gen = Generation(text="a cat", stats=stats)
        return JobOutcome(
            job.id, gen, self.failure, ModelPayload(name="m", backend="ort-genai", provider="cpu"), 1, 0.01
        )


class Reply:
    def __init__(self) -> None:
        self.answers: list[tuple[bool, object]] = []

    def ok(self, result: object = None) -> None:
        self.answers.append((True, result))

    def error(self, message: str) -> None:
        self.answers.append((False, message))


def frame(age_s: float, seq: int = 1) -> Frame:
    return Frame(np.zeros((32, 32, 3), np.uint8), time.time() - age_s, time.monotonic() - age_s, seq)


@pytest.fixture
def publisher(tmp_path: Path) -> Publisher:
    mqtt = MqttSettings()
    topics = Topics.from_settings(mqtt, "cam")
    return Publisher(MqttClient(mqtt, topics), Outbox(tmp_path / "o.sqlite", 2**20), topics)


def executor(publisher: Publisher, sup: Supervisor, frames: Frames) -> Executor:
    deps = ExecutorDeps(
        device="cam",
        publisher=publisher,
        frames=lambda camera: frames if camera == "main" else None,
        recent=RecentResults(),
        counters=Counters([]),
        ttft=Rolling(),
        decode=Rolling(),
        latency=Rolling(),
        image_max_bytes=65536,
        max_frame_age_s=lambda camera: 5.0,
    )
    return Executor("t", JobQueue(), sup, OrtGenAIModelSettings(), WatchdogSettings(), deps)


def queued(publisher: Publisher) -> list[dict]:
    return [json.loads(m.message.payload) for m in publisher.outbox.next_batch(0, 100)]


def test_fresh_frame_gives_one_numbered_result_and_the_reply(publisher: Publisher) -> None:
    sup, reply = Supervisor(), Reply()
    executor(publisher, sup, Frames(frame(0.1))).run(JobSpec(task=CAPTION, trigger="command", reply=reply))
    (result,) = queued(publisher)
    assert result["seq"] == 1 and result["task"] == "caption" and result["stats"]["stop_reason"] == "eos"
    assert reply.answers == [(True, result)]
    assert sup.jobs[0].request.images[0].shape == (32, 32, 3)


def test_stale_frame_is_never_described(publisher: Publisher) -> None:
    sup, reply, frames = Supervisor(), Reply(), Frames(frame(60.0), fresh=None)
    executor(publisher, sup, frames).run(JobSpec(task=CAPTION, trigger="command", reply=reply))
    assert sup.jobs == [] and frames.waited == 1
    (event,) = queued(publisher)
    assert event["event"] == "job_failed" and event["reason"] == "no_frame"
    assert reply.answers and reply.answers[0][0] is False


def test_a_stale_slot_waits_for_the_next_frame(publisher: Publisher) -> None:
    sup = Supervisor()
    executor(publisher, sup, Frames(frame(60.0), fresh=frame(0.0, seq=2))).run(
        JobSpec(task=CAPTION, trigger="interval")
    )
    assert [j.frame.seq for j in sup.jobs if j.frame] == [2]


def test_failed_job_is_an_event_not_a_result_and_seq_stays_gapless(publisher: Publisher) -> None:
    ex = executor(publisher, Supervisor(JobFailure("token_timeout", "no token for 3s")), Frames(frame(0.1)))
    ex.run(JobSpec(task=CAPTION, trigger="interval"))
    ex.supervisor = Supervisor()
    ex.run(JobSpec(task=CAPTION, trigger="interval"))
    msgs = queued(publisher)
    assert [m.get("event") for m in msgs] == ["job_failed", None]
    assert msgs[0]["reason"] == "token_timeout" and msgs[1]["seq"] == 1


def test_summarize_without_source_results_answers_and_runs_nothing(publisher: Publisher) -> None:
    digest = TaskSettings(name="d", kind="summarize", source_task="caption", trigger="command")
    sup, reply = Supervisor(), Reply()
    executor(publisher, sup, Frames(None)).run(
        JobSpec(task=digest, trigger="command", reply=reply, with_image=False)
    )
    assert sup.jobs == [] and queued(publisher) == []
    assert reply.answers == [(False, "no results of caption to summarize")]


def test_a_job_describes_its_own_camera_and_a_capture_reply_is_small(publisher: Publisher) -> None:
    sup, reply = Supervisor(), Reply()
    ex = executor(publisher, sup, Frames(frame(0.1)))
    ex.run(JobSpec(task=CAPTION, trigger="command", reply=reply, reply_ref=True))
    (result,) = queued(publisher)
    assert result["camera"] == "main"
    assert reply.answers == [(True, {"id": result["id"], "topic": "edge/cam/main/caption/result"})]
    other = Reply()
    ex.run(JobSpec(task=CAPTION, trigger="command", reply=other, camera="yard"))  # no such grabber
    (_, event) = queued(publisher)
    assert event["reason"] == "no_frame" and event["camera"] == "yard" and other.answers[0][0] is False
