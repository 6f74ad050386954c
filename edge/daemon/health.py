"""The `health` message and systemd's STATUS= line, computed from the daemon's counters."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from edge.core.messages import HealthPayload, utc_iso
from edge.daemon.board import cpu_temp_c, pi_throttled, rss_mb

if TYPE_CHECKING:
    from edge.daemon.app import Daemon

log = logging.getLogger(__name__)


class HealthReporter:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self._next = time.monotonic()  # the first health goes out right after start

    def tick(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.d.settings.health.interval_s
        payload = self.payload()
        self.d.publisher.publish_health(payload)
        self.d.notifier.status(self.status_line(payload))

    def payload(self) -> HealthPayload:
        d = self.d
        cam = d.grabber.stats() if d.grabber is not None else None
        sup = d.vision_sup.stats()
        restarts = sup.restarts + (d.text_sup.stats().restarts if d.text_sup is not None else 0)
        ob = d.outbox.stats()
        queue_drops = d.queue.stats.replaced + d.queue.stats.rejected
        camera = (
            "starting" if cam is None or cam.state == "starting" else ("ok" if cam.state == "ok" else "lost")
        )
        return HealthPayload(
            device=d.settings.device_id,
            at=utc_iso(time.time()),
            state=d.state,
            uptime_s=round(time.monotonic() - d.started, 1),
            frames=cam.frames if cam else 0,
            frames_dropped=(cam.dropped + cam.invalid) if cam else 0,
            gated=d.scheduler.gated,
            jobs=d.counters.get("jobs"),
            failures=d.counters.get("failures"),
            restarts=restarts,
            ttft_ms=d.ttft.percentiles(),
            decode_tok_s=d.decode.percentiles(),
            outbox_depth=ob.depth,
            dropped=ob.dropped_total + ob.expired_total + queue_drops,
            rss_mb=rss_mb(),
            worker_rss_mb=sup.worker_rss_mb,
            cpu_temp_c=cpu_temp_c(),
            throttled=pi_throttled(),
            camera=camera,  # type: ignore[arg-type]
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
