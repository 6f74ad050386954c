"""The optional Prometheus endpoint for fleet operators: `[metrics] port` (the `metrics` extra).

Off unless a port is set; loopback (127.0.0.1) unless a host is set, and any other host is warned
about once, since the endpoint has no authentication. The only importer of prometheus_client
(tests/unit/test_import_boundaries.py), and only when the endpoint is on: the daemon runs without
the package while metrics are off.

No second bookkeeping: counters and gauges are read at scrape time from the same sources as the
`health` message (`edge.daemon.health.snapshot`), and the latency histograms observe the meters'
rolling windows (`Rolling.subscribe`) where the executors feed them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, get_args

from edge import __version__
from edge.config.settings import MetricsSettings
from edge.core.errors import ConfigError
from edge.core.kinds import DaemonState
from edge.core.messages import HealthPayload
from edge.core.stats import ByTask
from edge.daemon.health import HealthSources, Meters, snapshot

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

MISSING = (
    "metrics.port: is set, but prometheus_client is not installed; "
    "install the extra (pip install 'edge-vlm-agent[metrics]') or unset metrics.port"
)
_WARNED_EXPOSED: set[tuple[str, int]] = set()  # a non-loopback listen address: said once per process

# Seconds. A tiny CPU model answers in tens of ms, Phi-3.5-vision on a Pi takes minutes.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
GENERATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)

# name (without edge_ and _total), help, the health field
COUNTERS: tuple[tuple[str, str, str], ...] = (
    (
        "frames",
        "Frames the current camera grabber received (restarts at 0 when a reload swaps it).",
        "frames",
    ),
    ("frames_dropped", "Frames dropped or invalid at capture.", "frames_dropped"),
    ("gated", "Frames the gate did not pass to a task.", "gated"),
    ("jobs", "Jobs that produced a result.", "jobs"),
    ("failures", "Jobs that failed (timeout, crash, runtime error).", "failures"),
    ("worker_restarts", "Inference worker restarts, all lanes.", "restarts"),
    (
        "dropped",
        "Messages dropped: outbox drop-oldest, expired, and jobs replaced in a full queue.",
        "dropped",
    ),
    ("storage_errors", "Outbox writes that failed since start.", "storage_errors"),
)
# name (without edge_), help, the health field, scale to base units
GAUGES: tuple[tuple[str, str, str, float], ...] = (
    ("outbox_depth", "Messages in the outbox, not yet acknowledged by the broker.", "outbox_depth", 1.0),
    ("uptime_seconds", "Seconds since the daemon started.", "uptime_s", 1.0),
    ("rss_bytes", "Resident memory of the daemon process.", "rss_mb", 2.0**20),
    ("worker_rss_bytes", "Resident memory of the vision worker process.", "worker_rss_mb", 2.0**20),
    ("cpu_temperature_celsius", "CPU/SoC temperature.", "cpu_temp_c", 1.0),
    ("throttled", "1 while the Raspberry Pi firmware reports throttling.", "throttled", 1.0),
    ("under_voltage", "1 while the Raspberry Pi firmware reports under-voltage.", "under_voltage", 1.0),
    ("hot", "1 while the heat policy stretches interval tasks (power.hot_c).", "hot", 1.0),
)


# per camera (label `camera`), from health's `cameras`: name, help, the CameraHealth field
CAMERA_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("camera_frames", "Valid frames this camera's grabber delivered.", "frames"),
    (
        "camera_frames_dropped",
        "Frames of this camera overwritten before use, or refused as invalid.",
        "dropped",
    ),
    ("camera_gated", "Frames of this camera the motion gate held back.", "gated"),
    ("camera_jobs_dropped", "Scheduled jobs of this camera superseded or skipped.", "jobs_dropped"),
)
# per task and camera (labels `task`, `camera`): name, help, what ByTask counts
TASK_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("task_jobs", "Jobs of this task on this camera that were run.", "jobs"),
    ("task_failures", "Jobs of this task on this camera that failed.", "failures"),
)


class HealthCollector:
    """Counters and gauges read from a health snapshot (and the per-task counts) at scrape time."""

    def __init__(self, read: Callable[[], HealthPayload], by_task: ByTask | None = None) -> None:
        self._read = read
        self._by_task = by_task

    def describe(self) -> list[Any]:
        return []  # no registration-time collect: the sources may not be readable yet

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        h = self._read()
        yield InfoMetricFamily("edge", "The daemon.", value={"version": __version__, "device": h.device})
        for name, doc, attr in COUNTERS:
            value = getattr(h, attr)
            if value is not None:
                yield CounterMetricFamily(f"edge_{name}", doc, value=value)
        for name, doc, attr, scale in GAUGES:
            value = getattr(h, attr)
            if value is not None:
                yield GaugeMetricFamily(f"edge_{name}", doc, value=float(value) * scale)
        state = GaugeMetricFamily("edge_state", "1 for the daemon's current state.", labels=["state"])
        for s in get_args(DaemonState):
            state.add_metric([s], 1.0 if h.state == s else 0.0)
        yield state
        up = GaugeMetricFamily("edge_camera_up", "1 while the camera delivers frames.", labels=["camera"])
        fps = GaugeMetricFamily(
            "edge_camera_fps", "Frames per second the camera delivers.", labels=["camera"]
        )
        for camera, ch in sorted(h.cameras.items()):
            up.add_metric([camera], 1.0 if ch.state == "ok" else 0.0)
            fps.add_metric([camera], ch.fps)
        yield up
        yield fps
        for name, doc, attr in CAMERA_COUNTERS:
            family = CounterMetricFamily(f"edge_{name}", doc, labels=["camera"])
            for camera, ch in sorted(h.cameras.items()):
                family.add_metric([camera], getattr(ch, attr))
            yield family
        if self._by_task is not None:
            for name, doc, what in TASK_COUNTERS:
                family = CounterMetricFamily(f"edge_{name}", doc, labels=["task", "camera"])
                for (task, camera), n in sorted(self._by_task.counts(what).items()):
                    family.add_metric([task, camera], n)
                yield family
        if h.link is not None:
            yield GaugeMetricFamily(
                "edge_link_bytes_today", "Bytes published today (local day).", value=h.link.bytes_today
            )
            yield GaugeMetricFamily(
                "edge_link_images_dropped_today", "Images dropped today for the link budget.",
                value=h.link.images_dropped,
            )  # fmt: skip
        if h.storage is not None:
            yield GaugeMetricFamily(
                "edge_storage_ok", "1 while the outbox can write to its disk.", value=h.storage == "ok"
            )


def build_registry(read: Callable[[], HealthPayload], meters: Meters) -> CollectorRegistry:
    """A private registry (several daemons may share a test process): the health collector and the
    latency histograms, subscribed to the meters from now on."""
    from prometheus_client import CollectorRegistry, Histogram

    registry = CollectorRegistry()
    registry.register(HealthCollector(read, meters.by_task))
    per_task = {
        "ttft": Histogram("edge_task_ttft_seconds", "Time to first token, per task and camera.",
                          ["task", "camera"], registry=registry, buckets=TTFT_BUCKETS),
        "generation": Histogram("edge_task_generation_seconds", "Whole generation, per task and camera.",
                                ["task", "camera"], registry=registry, buckets=GENERATION_BUCKETS),
        "latency": Histogram("edge_task_frame_to_outbox_seconds",
                             "Frame capture to its result in the outbox, per task and camera.",
                             ["task", "camera"], registry=registry, buckets=GENERATION_BUCKETS),
    }  # fmt: skip

    def observe(what: str, labels: tuple[str, str], ms: float) -> None:
        hist = per_task.get(what)
        if hist is not None:
            hist.labels(*labels).observe(ms / 1000.0)

    meters.by_task.subscribe(observe)
    for rolling, name, doc, buckets in (
        (meters.ttft, "edge_ttft_seconds", "Time to first token.", TTFT_BUCKETS),
        (
            meters.generation,
            "edge_generation_seconds",
            "Whole generation, prefill to last token.",
            GENERATION_BUCKETS,
        ),
        (
            meters.latency,
            "edge_frame_to_outbox_seconds",
            "Frame capture to its result stored in the outbox (durable, about to be published).",
            GENERATION_BUCKETS,
        ),
    ):
        rolling.subscribe(_in_seconds(Histogram(name, doc, registry=registry, buckets=buckets)))
    return registry


def _in_seconds(hist: Any) -> Callable[[float], None]:
    def observe(ms: float) -> None:
        hist.observe(ms / 1000.0)

    return observe


class MetricsServer:
    """`/metrics` over HTTP in a daemon thread; does nothing when `[metrics] port` is unset."""

    def __init__(self, settings: MetricsSettings, sources: HealthSources) -> None:
        self._settings = settings
        self._server: Any = None
        self._thread: Any = None
        self.registry: CollectorRegistry | None = None
        if settings.port is None:
            return
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise ConfigError([MISSING]) from None
        self.registry = build_registry(lambda: snapshot(sources), sources.meters)

    @property
    def port(self) -> int | None:
        """The port listened on, once started."""
        return None if self._server is None else int(self._server.server_port)

    def start(self) -> None:
        s = self._settings
        if self.registry is None or s.port is None:
            return
        from prometheus_client import start_http_server

        if not s.loopback and (s.host, s.port) not in _WARNED_EXPOSED:
            _WARNED_EXPOSED.add((s.host, s.port))
            log.warning(
                "metrics: listening on %s:%d, beyond this machine; /metrics has no authentication "
                "(it shows the device id and its health): firewall it or keep host = 127.0.0.1",
                s.host,
                s.port,
            )
        try:
            self._server, self._thread = start_http_server(s.port, addr=s.host, registry=self.registry)
        except OSError as err:  # the captions matter more than their metrics: keep running
            log.error("metrics: cannot listen on %s:%d (%s); running without /metrics", s.host, s.port, err)
            return
        log.info("metrics: serving http://%s:%d/metrics", s.host, s.port)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
