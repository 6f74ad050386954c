"""The job executor: takes due jobs off the queue, runs them on a supervised worker, and puts every
outcome somewhere durable — a result in the outbox, or a `job_failed` event. Nothing is dropped
silently, and command jobs always get a reply.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from edge.config.settings import ModelSettings, TaskSettings, WatchdogSettings, ZoneSettings
from edge.core.errors import FrameError
from edge.core.messages import Frame, Job, PositionPayload, ResultPayload, utc_iso
from edge.core.stats import ByTask, Counters, Rolling
from edge.imaging.crops import crop
from edge.imaging.frames import prepare_image
from edge.imaging.imageio import encode_jpeg
from edge.inference.protocol import JobOutcome
from edge.mqtt.publisher import Publisher
from edge.pipeline.jobs import (
    JobQueue,
    JobSpec,
    Recent,
    RecentResults,
    build_request,
    job_id,
    summarize_prompt,
)
from edge.pipeline.results import ResultInput, build_result, console_line

log = logging.getLogger(__name__)

FRAME_WAIT_S = 2.0


def _result_context(context: dict[str, Any]) -> dict[str, Any] | None:
    """The job's context as the result carries it: no gate reason; an event's times as UTC strings."""
    out = {k: v for k, v in context.items() if k != "gate"}
    event = out.get("event")
    if isinstance(event, dict):
        out["event"] = {k: utc_iso(v) if k in ("started_at", "ended_at") else v for k, v in event.items()}
    return out or None


class Submitter(Protocol):
    def submit(self, job: Job) -> JobOutcome: ...


class FrameSource(Protocol):
    def latest(self, after_seq: int = -1) -> Frame | None: ...

    def wait_frame(self, after_seq: int = -1, timeout: float = 1.0) -> Frame | None: ...


@dataclass
class ExecutorDeps:
    """Everything an executor talks to; the runtime builds it once and swaps fields on reload."""

    device: str
    publisher: Publisher
    frames: Callable[[str], FrameSource | None]  # camera name -> its grabber (None: no such camera)
    recent: RecentResults
    counters: Counters
    ttft: Rolling
    decode: Rolling
    latency: Rolling  # frame capture -> result committed to the outbox, ms
    image_max_bytes: int
    generation: Rolling = field(default_factory=Rolling)  # total generation time, ms
    by_task: ByTask = field(default_factory=ByTask)  # jobs, failures and timings per task and camera
    position: Callable[[], PositionPayload | None] = lambda: None
    sink: Callable[[int, str, str], None] | None = None
    echo: bool = False
    # The camera's stall_s: an older frame is from a camera that is gone.
    max_frame_age_s: Callable[[str], float] = lambda camera: 10.0
    # The image topic's size and JPEG quality (the model always sees the full frame).
    image_max_edge: int | None = None
    image_quality: int = 85
    # camera, zone name -> the zone (read through the current settings: a reload may change it)
    zone: Callable[[str, str], ZoneSettings | None] = lambda camera, zone: None
    # Listeners of each result once the outbox took it (the retained `last` topic, alerts), in order;
    # one that fails is logged and never fails the job.
    on_result: tuple[Callable[[ResultPayload], None], ...] = ()


class Executor:
    """One thread per worker: runs the jobs of one queue on one supervisor, one at a time."""

    def __init__(
        self,
        name: str,
        queue: JobQueue,
        supervisor: Submitter,
        model: ModelSettings,
        watchdog: WatchdogSettings,
        deps: ExecutorDeps,
    ) -> None:
        self.name = name
        self.queue = queue
        self.supervisor = supervisor
        self.model = model
        self.watchdog = watchdog
        self.deps = deps
        self.busy = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"edge-exec-{name}", daemon=True)
        self.beat = time.monotonic()  # each round of the loop: idle, every half second

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        """For the systemd watchdog (edge.daemon.liveness)."""
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop taking jobs. Jobs still queued are failed with an event (and commands answered)."""
        self._stop.set()
        for spec in self.queue.drain():
            self._fail(spec, None, "stopped", "daemon is stopping; the job was still queued")

    def join(self, timeout: float) -> bool:
        """Wait for the running job's outcome to be recorded (at once if never started: a failed start)."""
        if self._thread.ident is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.beat = time.monotonic()
            spec = self.queue.get(timeout=0.5)
            if spec is None:
                continue
            self.busy = True
            try:
                self.run(spec)
            except Exception:  # a bug here must not kill the loop that keeps the daemon alive
                log.exception("executor %s: job for task %s failed unexpectedly", self.name, spec.task.name)
                try:
                    self._fail(spec, None, "internal_error", "unexpected error; see the daemon log")
                except Exception:  # not even the failure could be recorded: the loop goes on
                    log.exception("executor %s: the failure could not be recorded", self.name)
            finally:
                self.busy = False

    # ------------------------------------------------------------------ one job

    def run(self, spec: JobSpec) -> None:
        d = self.deps
        jid = job_id(d.device, str(d.publisher.boot))
        frames: tuple[Frame, ...] = spec.frames  # an event's clip, or the frame a motion box is on
        if not frames and spec.needs_frame:
            newest = self._frame(spec.camera)
            if newest is None:
                self._fail(spec, jid, "no_frame", f"no frame from camera {spec.camera}")
                return
            frames = (newest,)
        frame = frames[0] if frames else None
        if spec.task.zone is not None and spec.roi is None and frame is not None:
            box = d.zone(spec.camera, spec.task.zone)
            if box is None:
                self._fail(spec, jid, "no_zone", f"camera {spec.camera} has no zone {spec.task.zone}")
                return
            spec = replace(spec, roi=box.pixels(frame.width, frame.height))  # the model sees the zone
        image: Any = None
        if spec.roi is not None and frame is not None:
            image = crop(frame.image, spec.roi)  # roi "motion": that region instead of the whole frame
        elif len(frames) > 1:
            image = tuple(f.image for f in frames)  # event: one multi-image prompt
        elif frame is not None:
            image = frame.image
        prompt = spec.prompt
        context = dict(spec.context)
        if spec.task.kind == "summarize":
            items = d.recent.window(
                spec.task.source_task or "",
                time.time() - spec.task.window_s,
                spec.task.max_items,
                camera=spec.camera,
            )
            if not items:
                log.info("task %s: nothing to summarize from %s yet", spec.task.name, spec.task.source_task)
                if spec.is_command:
                    spec.reply.error(f"no results of {spec.task.source_task} to summarize")
                return
            prompt = summarize_prompt(spec.task, items)
            context["summarized"] = [i.id for i in items]
        request = build_request(
            JobSpec(task=spec.task, trigger=spec.trigger, prompt=prompt),
            self.model,
            self.watchdog.generation_s,
            image,
        )
        job = Job(
            id=jid,
            task=spec.task.name,
            kind=spec.task.kind,
            trigger=spec.trigger,
            request=request,
            frame=frame,
            gate_score=spec.gate_score,
            created=spec.created,
            context=context,
        )
        outcome = self.supervisor.submit(job)
        d.counters.inc("jobs")
        d.by_task.inc("jobs", spec.task.name, spec.camera)
        if outcome.failure is not None or outcome.generation is None or outcome.model is None:
            failure = outcome.failure
            self._fail(spec, jid, failure.reason if failure else "failed", failure.message if failure else "")
            return
        self._publish(spec, job, outcome, context, frames)

    def _frame(self, camera: str) -> Frame | None:
        """The camera's newest frame, if it is fresh: a result must never describe a camera that went away."""
        frames = self.deps.frames(camera)
        if frames is None:
            return None
        frame = frames.latest()
        if frame is None or time.monotonic() - frame.monotonic > self.deps.max_frame_age_s(camera):
            frame = frames.wait_frame(frame.seq if frame is not None else -1, FRAME_WAIT_S)
        return frame

    def _publish(
        self, spec: JobSpec, job: Job, outcome: JobOutcome, context: dict[str, Any], frames: tuple[Frame, ...]
    ) -> None:
        d = self.deps
        gen, model = outcome.generation, outcome.model
        assert gen is not None and model is not None
        item = ResultInput(
            device=d.device,
            task=spec.task.name,
            camera=spec.camera,
            trigger=spec.trigger,
            generation=gen,
            model=model,
            captured_at=job.frame.captured_at if job.frame is not None else None,
            gate_score=spec.gate_score,
            position=d.position(),
            context=_result_context(context),
            frames=tuple(f.captured_at for f in frames) if spec.task.kind == "event" else None,
            roi=spec.roi,
            zone=spec.task.zone,
        )
        payload = d.publisher.publish_result(lambda seq, rid: build_result(item, seq, rid))
        if payload is None:  # the disk cannot take it now: held in memory, stored when it can
            log.warning(
                "result of task %s held in memory: the outbox cannot write (storage %s)",
                spec.task.name,
                d.publisher.storage,
            )
            if spec.is_command:
                spec.reply.error(
                    f"storage_{d.publisher.storage}: the result is held in memory and will be "
                    "published when the outbox can store it"
                )
            return
        if frames:
            latency_ms = (time.monotonic() - frames[-1].monotonic) * 1000.0
            d.latency.add(latency_ms)
            d.by_task.observe("latency", spec.task.name, spec.camera, latency_ms)
        if spec.task.publish_image and frames:
            # an event's key frames: its first and its last (the full frame for a ROI: the box is in the result)
            keys = (frames[0], frames[-1]) if len(frames) > 1 else frames[:1]
            for i, key in enumerate(keys):
                self._enqueue_image(spec.task, payload.camera, payload.id, key, i if len(keys) > 1 else None)
        # structured outcomes are counted (from servers that ignore response_format too)
        if spec.task.json_schema is not None:
            d.counters.inc("schema_errors" if gen.schema_error else "schema_ok")
        d.ttft.add(gen.stats.ttft_ms)
        d.generation.add(gen.stats.total_ms)
        d.by_task.observe("ttft", spec.task.name, spec.camera, gen.stats.ttft_ms)
        d.by_task.observe("generation", spec.task.name, spec.camera, gen.stats.total_ms)
        if gen.stats.new_tokens > 1:
            d.decode.add(gen.stats.decode_tok_s)
        captured = job.frame.captured_at if job.frame else time.time()
        d.recent.add(
            Recent(
                id=payload.id, task=spec.task.name, text=gen.text, captured_at=captured, camera=spec.camera
            )
        )
        if d.echo:
            print(console_line(payload), file=sys.stdout, flush=True)
        if d.sink is not None:
            d.sink(payload.seq, spec.task.name, gen.text)
        for listener in d.on_result:
            try:
                listener(payload)
            except Exception:
                log.exception("result %s: a result listener failed", payload.id)
        log.info(
            "result %s camera=%s task=%s trigger=%s tokens=%d stop=%s total_ms=%.0f",
            payload.id,
            payload.camera,
            spec.task.name,
            spec.trigger,
            gen.stats.new_tokens,
            gen.stats.stop_reason,
            gen.stats.total_ms,
        )
        if spec.is_command and spec.reply_ref:
            # cmd/capture: the result goes to its topic anyway; the reply says where (HA never reads it).
            topic = d.publisher.topics.result(payload.camera, payload.task)
            spec.reply.ok({"id": payload.id, "topic": topic})
        elif spec.is_command:
            spec.reply.ok(json.loads(payload.model_dump_json()))

    def _enqueue_image(
        self, task: TaskSettings, camera: str, result_id: str, frame: Frame, part: int | None = None
    ) -> None:
        d = self.deps
        try:
            image = prepare_image(frame.image, d.image_max_edge)
            jpeg = encode_jpeg(image, d.image_max_bytes, quality=d.image_quality)
        except FrameError as err:
            log.warning("task %s: image not published: %s", task.name, err)
            return
        d.publisher.publish_image(camera, task.name, result_id, jpeg, part=part)

    def _fail(self, spec: JobSpec, jid: str | None, reason: str, message: str) -> None:
        d = self.deps
        d.counters.inc("failures")
        d.by_task.inc("failures", spec.task.name, spec.camera)
        log.warning(
            "job %s camera=%s task=%s failed: %s: %s",
            jid or "-",
            spec.camera,
            spec.task.name,
            reason,
            message,
        )
        event = d.publisher.event(
            "job_failed",
            reason,
            job_id=jid,
            task=spec.task.name,
            camera=spec.camera,
            detail={"message": message, "trigger": spec.trigger},
        )
        d.publisher.publish_event(event)
        if spec.is_command:
            spec.reply.error(f"{reason}: {message}" if message else reason)
