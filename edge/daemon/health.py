"""The `health` message and systemd's STATUS= line, computed from small sources: the meters the
executors write, the queues, the outbox, and the current pipeline's grabber and supervisors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from edge.core.messages import DaemonState, HealthPayload, utc_iso
from edge.core.stats import Counters, Rolling
from edge.daemon.board import cpu_temp_c, pi_throttled, rss_mb
from edge.daemon.pipeline import Pipeline
from edge.mqtt.outbox import OutboxStats
from edge.pipeline.jobs import JobQueue, RecentResults

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
    started: float = field(default_factory=time.monotonic)


class OutboxSource(Protocol):
    def stats(self) -> OutboxStats: ...


class GatedSource(Protocol):
    gated: int


@dataclass(frozen=True)
class HealthSources:
    pipeline: Callable[[], Pipeline]
    meters: Meters
    queues: Sequence[JobQueue]
    outbox: OutboxSource
    gate: GatedSource
    state: Callable[[], DaemonState]


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
        cam = p.grabber.stats()
        sup = p.vision.supervisor.stats()
        restarts = sum(s.stats().restarts for s in p.supervisors)
        ob = src.outbox.stats()
        queue_drops = sum(q.stats.replaced + q.stats.rejected for q in src.queues)
        camera = "starting" if cam.state == "starting" else ("ok" if cam.state == "ok" else "lost")
        m = src.meters
        return HealthPayload(
            device=p.settings.device_id,
            at=utc_iso(time.time()),
            state=src.state(),
            uptime_s=round(time.monotonic() - m.started, 1),
            frames=cam.frames,
            frames_dropped=cam.dropped + cam.invalid,
            gated=src.gate.gated,
            jobs=m.counters.get("jobs"),
            failures=m.counters.get("failures"),
            restarts=restarts,
            ttft_ms=m.ttft.percentiles(),
            decode_tok_s=m.decode.percentiles(),
            outbox_depth=ob.depth,
            dropped=ob.dropped_total + ob.expired_total + queue_drops,
            rss_mb=rss_mb(),
            worker_rss_mb=sup.worker_rss_mb,
            cpu_temp_c=cpu_temp_c(),
            throttled=pi_throttled(),
            camera=camera,
            storage=ob.storage,
            storage_errors=ob.storage_errors,
        )

    def status_line(self, h: HealthPayload | None = None) -> str:
        h = h or self.payload()
        ttft = f"{h.ttft_ms.p50:.0f}ms" if h.ttft_ms.p50 is not None else "-"
        tok = f"{h.decode_tok_s.p50:.1f}" if h.decode_tok_s.p50 is not None else "-"
        temp = f" {h.cpu_temp_c:.0f}C" if h.cpu_temp_c is not None else ""
        return (
            f"{h.state}; camera {h.camera}; jobs {h.jobs} ({h.failures} failed, {h.restarts} restarts); "
            f"ttft p50 {ttft}, {tok} tok/s; outbox {h.outbox_depth}; rss {h.rss_mb:.0f}MB{temp}"
        )


def snapshot(sources: HealthSources) -> HealthPayload:
    """The health numbers now, read from the sources: what a metrics scrape exposes (the same
    numbers, computed the same way, as the `health` message)."""
    return HealthReporter(sources, publish=_ignore, status=_ignore).payload()


def _ignore(_: object) -> None:
    return None
