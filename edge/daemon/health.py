"""The `health` message and systemd's STATUS= line, computed from small sources: the meters the
executors write, the queues, the outbox, and the current pipeline's grabber and supervisors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from edge.core.kinds import CameraState, DaemonState
from edge.core.messages import CameraHealth, HealthPayload, LinkPayload, utc_iso
from edge.core.stats import ByTask, Counters, Rolling
from edge.daemon.board import cpu_temp_c, pi_throttled, rss_mb
from edge.daemon.reloadable import Reloadable
from edge.mqtt.outbox_records import OutboxStats
from edge.pipeline.jobs import JobQueue, RecentResults
from edge.power.monitor import PowerStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Meters:
    """What the executors count and time; created once per daemon, read by health."""

    # Frames are counted where they arrive: `health.frames` is the current grabber's count.
    counters: Counters = field(default_factory=lambda: Counters(["jobs", "failures"]))
    ttft: Rolling = field(default_factory=Rolling)
    decode: Rolling = field(default_factory=Rolling)
    latency: Rolling = field(default_factory=Rolling)  # frame capture -> result in the outbox, ms
    generation: Rolling = field(default_factory=Rolling)  # the whole generation (prefill + decode), ms
    recent: RecentResults = field(default_factory=RecentResults)
    by_task: ByTask = field(default_factory=ByTask)  # the same, labelled by task and camera
    started: float = field(default_factory=time.monotonic)


class OutboxSource(Protocol):
    def stats(self) -> OutboxStats: ...


class GatedSource(Protocol):
    def gated_by_camera(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class HealthSources:
    pipeline: Callable[[], Reloadable]
    meters: Meters
    queues: Sequence[JobQueue]
    outbox: OutboxSource
    gate: GatedSource
    state: Callable[[], DaemonState]
    power: Callable[[], PowerStatus | None] = lambda: None  # the board as the power monitor read it
    link: Callable[[], LinkPayload | None] = lambda: None  # the day's bytes and images


class HealthReporter:
    """Publishes `health` every `health.interval_s` (read live: a reload may change it)."""

    def __init__(
        self,
        sources: HealthSources,
        publish: Callable[[HealthPayload], object],
        status: Callable[[str], object],
    ) -> None:
        self._src = sources
        self._publish = publish
        self._status = status
        self._next = time.monotonic()  # the first health goes out right after start

    def tick(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._src.pipeline().settings.health.interval_s
        payload = self.payload()
        self._publish(payload)
        self._status(self.status_line(payload))

    def payload(self) -> HealthPayload:
        src, p = self._src, self._src.pipeline()
        cams = {name: g.stats() for name, g in p.grabbers.items()}
        gated = src.gate.gated_by_camera()
        jobs_dropped: dict[str, int] = {}
        for q in src.queues:
            for name, n in q.stats.by_camera.items():
                jobs_dropped[name] = jobs_dropped.get(name, 0) + n
        per_camera = {
            name: CameraHealth(
                state=_camera_state(c.state),
                frames=c.frames,
                dropped=c.dropped + c.invalid,
                gated=gated.get(name, 0),
                jobs_dropped=jobs_dropped.get(name, 0),
                fps=c.fps,
            )
            for name, c in cams.items()
        }
        states = {c.state for c in per_camera.values()}
        camera: CameraState = "lost" if "lost" in states else ("starting" if "starting" in states else "ok")
        sup = p.vision.supervisor.stats()
        restarts = sum(s.stats().restarts for s in p.supervisors)
        ob = src.outbox.stats()
        queue_drops = sum(q.stats.replaced + q.stats.rejected for q in src.queues)
        m = src.meters
        power = src.power()
        temp = power.temperature_c if power is not None else cpu_temp_c()
        return HealthPayload(
            device=p.settings.device_id,
            at=utc_iso(time.time()),
            state=src.state(),
            uptime_s=round(time.monotonic() - m.started, 1),
            frames=sum(c.frames for c in per_camera.values()),
            frames_dropped=sum(c.dropped for c in per_camera.values()),
            gated=sum(c.gated for c in per_camera.values()),
            jobs=m.counters.get("jobs"),
            failures=m.counters.get("failures"),
            restarts=restarts,
            ttft_ms=m.ttft.percentiles(),
            decode_tok_s=m.decode.percentiles(),
            outbox_depth=ob.depth,
            dropped=ob.dropped_total + ob.expired_total + queue_drops,
            rss_mb=rss_mb(),
            worker_rss_mb=sup.worker_rss_mb,
            cpu_temp_c=temp,
            throttled=power.throttled if power is not None else pi_throttled(),
            camera=camera,
            cameras=per_camera,
            storage=ob.storage,
            storage_errors=ob.storage_errors,
            temperature_c=temp,
            under_voltage=power.under_voltage if power is not None else None,
            hot=power.hot if power is not None else None,
            active=power.active if power is not None else None,
            link=src.link(),
        )

    def status_line(self, h: HealthPayload | None = None) -> str:
        h = h or self.payload()
        ttft = f"{h.ttft_ms.p50:.0f}ms" if h.ttft_ms.p50 is not None else "-"
        tok = f"{h.decode_tok_s.p50:.1f}" if h.decode_tok_s.p50 is not None else "-"
        temp = f" {h.cpu_temp_c:.0f}C" if h.cpu_temp_c is not None else ""
        lost = [name for name, c in h.cameras.items() if c.state == "lost"]
        camera = f"camera {h.camera}" if len(h.cameras) <= 1 else f"{len(h.cameras)} cameras"
        if len(h.cameras) > 1 and lost:
            camera += f" ({', '.join(lost)} lost)"
        return (
            f"{h.state}; {camera}; jobs {h.jobs} ({h.failures} failed, {h.restarts} restarts); "
            f"ttft p50 {ttft}, {tok} tok/s; outbox {h.outbox_depth}; rss {h.rss_mb:.0f}MB{temp}"
        )


def snapshot(sources: HealthSources) -> HealthPayload:
    """The health numbers now, read from the sources: what a metrics scrape exposes (the same
    numbers, computed the same way, as the `health` message)."""
    return HealthReporter(sources, publish=_ignore, status=_ignore).payload()


def _ignore(_: object) -> None:
    return None


def _camera_state(state: str) -> CameraState:
    return "starting" if state == "starting" else ("ok" if state == "ok" else "lost")
