"""The composition root: builds the components, starts them in order, stops them in reverse.

Start: settings -> outbox and MQTT -> worker and model load -> camera -> triggers -> READY=1.
Stop (SIGTERM/SIGINT): triggers -> the running job finishes or hits its deadline -> worker -> camera
-> outbox flushed -> `offline` -> exit 0. SIGHUP reloads settings (edge.daemon.reload).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from edge import __version__
from edge.capture import Grabber
from edge.config.settings import Settings
from edge.config.sources import LoadedSettings
from edge.core.messages import DaemonState, StatePayload, utc_iso
from edge.core.stats import Counters, Rolling
from edge.daemon.commands import CommandHandlerMixin
from edge.daemon.health import HealthReporter
from edge.daemon.systemd import Notifier, WatchdogPinger, extending_timeout
from edge.imaging.gate import Gate
from edge.inference.supervisor import Supervisor
from edge.mqtt.client import MqttClient
from edge.mqtt.commands import CommandRouter
from edge.mqtt.discovery import Discovery, default_expire_after, discovery_payload
from edge.mqtt.outbox import Outbox, default_outbox_path
from edge.mqtt.publisher import Publisher
from edge.mqtt.topics import Topics
from edge.pipeline.executor import Executor, ExecutorDeps
from edge.pipeline.jobs import FRAME_KINDS, JobQueue, JobSpec, RecentResults, Scheduler
from edge.serial.gnss import GnssReader
from edge.serial.sink import SerialSink
from edge.serial.trigger import TriggerReader

log = logging.getLogger(__name__)

DEMO_NOTICE = (
    "demo profile: the model is a RANDOM TINY TEST MODEL, its text is noise by design; "
    "point model.path at a real Phi-3.5-vision folder for real captions (see devices/demo.toml)"
)
FIRST_FRAME_WAIT_S = 30.0


class Daemon(CommandHandlerMixin):
    def __init__(
        self, loaded: LoadedSettings, reload_loader: Callable[[], LoadedSettings] | None = None
    ) -> None:
        self.loaded = loaded
        self.reload_loader = reload_loader or (lambda: loaded)
        self.settings: Settings = loaded.settings
        self.notifier = Notifier()
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.counters = Counters(["frames", "jobs", "failures"])
        self.ttft, self.decode, self.latency = Rolling(), Rolling(), Rolling()
        self.recent = RecentResults()
        self.started = time.monotonic()
        self.state: DaemonState = "starting"
        self.paused = False
        self._threads: list[threading.Thread] = []
        self.text_sup: Supervisor | None = None
        self.text_exec: Executor | None = None
        self.gnss: GnssReader | None = None
        self.trigger: TriggerReader | None = None
        self.sink: SerialSink | None = None
        self.discovery: Discovery | None = None
        self.grabber: Grabber | None = None

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        s = self.settings
        self.notifier.status("starting")
        self.topics = Topics.from_settings(s.mqtt, s.device_id, s.tasks)
        self.outbox = Outbox(s.mqtt.outbox_path or default_outbox_path(), int(s.mqtt.outbox_max_mb * 2**20))
        self.client = MqttClient(s.mqtt, self.topics)
        self.publisher = Publisher(
            self.client, self.outbox, self.topics, qos=s.mqtt.qos, message_expiry_s=s.mqtt.message_expiry_s
        )
        self.router = CommandRouter(
            self.client,
            self.topics,
            self,
            max_bytes=s.mqtt.max_command_bytes,
            task_names=lambda: [t.name for t in self.settings.tasks],
        )
        if s.mqtt.discovery:
            self.discovery = Discovery(self.client, self.topics, self._discovery_doc)
            self.discovery.attach()
        self.client.set_state(self._state_payload())
        self.client.start()
        self.publisher.start()
        log.info(
            "boot %d of %s; outbox %s holds %d message(s)",
            self.publisher.boot,
            s.device_id,
            self.outbox.path,
            self.outbox.depth(),
        )

        self.vision_sup = Supervisor(s.model, s.watchdog, self._on_worker_event)
        self.vision_sup.start()
        if s.text_model is not None:
            self.text_sup = Supervisor(s.text_model, s.watchdog, self._on_worker_event)
            self.text_sup.start()
        self.grabber = Grabber(s.camera, self._on_camera_event)
        self.grabber.start()
        with extending_timeout(self.notifier):
            loaded = self.vision_sup.wait_ready(s.watchdog.load_timeout_s)
            first = self.grabber.wait_frame(-1, FIRST_FRAME_WAIT_S)
        if not loaded:
            log.error(
                "model not loaded (%s); running degraded, retrying with backoff",
                self.vision_sup.stats().degraded_reason or "load failed",
            )
        if first is None:
            log.warning(
                "no camera frame within %.0fs; continuing, the grabber keeps reconnecting", FIRST_FRAME_WAIT_S
            )

        self._start_serial()
        self.scheduler = Scheduler(s.tasks, Gate(s.gate))
        self.queue = JobQueue(maxsize=8)
        self.vision_exec = Executor("vision", self.queue, self.vision_sup, s.model, s.watchdog, self._deps())
        self.vision_exec.start()
        if self.text_sup is not None and s.text_model is not None:
            self.text_queue = JobQueue(maxsize=8)
            self.text_exec = Executor(
                "text", self.text_queue, self.text_sup, s.text_model, s.watchdog, self._deps()
            )
            self.text_exec.start()
        self._spawn(self._trigger_loop, "edge-triggers")
        self.health = HealthReporter(self)
        self.pinger = WatchdogPinger(self.notifier, self.progressing)
        self.pinger.start()
        self._update_state()
        self.notifier.ready(self.health.status_line())
        if s.profile == "demo":
            log.warning(DEMO_NOTICE)
        log.info("running: %d task(s), model %s on %s", len(s.tasks), self._model_name(), self._provider())

    def _deps(self) -> ExecutorDeps:
        s = self.settings
        return ExecutorDeps(
            device=s.device_id,
            publisher=self.publisher,
            frames=self.grabber,
            recent=self.recent,
            counters=self.counters,
            ttft=self.ttft,
            decode=self.decode,
            latency=self.latency,
            camera_name=s.camera.name,
            image_max_bytes=s.mqtt.image_max_kb * 1024,
            position=self.gnss.position if self.gnss else (lambda: None),
            sink=self.sink.write_result if self.sink else None,
            echo=sys.stdout.isatty() or s.profile == "demo",
            max_frame_age_s=s.camera.stall_s,
        )

    def _start_serial(self) -> None:
        ser = self.settings.serial
        if ser.gnss_port:
            self.gnss = GnssReader(ser)
            self.gnss.start()
        if ser.trigger_port:
            self.trigger = TriggerReader(ser, self._on_serial_line)
            self.trigger.start()
        if ser.sink_port:
            self.sink = SerialSink(ser)
            self.sink.start()

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # ------------------------------------------------------------------ triggers

    def enqueue(self, spec: JobSpec) -> str:
        """Route a due job to the worker that serves it; text-only jobs go to the text model if any."""
        text_only = spec.task.kind not in FRAME_KINDS and not (spec.task.kind == "ask" and spec.with_image)
        queue = self.text_queue if (text_only and self.text_exec is not None) else self.queue
        outcome = queue.put(spec)
        if outcome in ("rejected", "closed") and spec.is_command:
            spec.reply.error("busy: the job queue is full" if outcome == "rejected" else "daemon is stopping")
        return outcome

    def _trigger_loop(self) -> None:
        last_seq, grabber = -1, self.grabber
        while not self.stop_requested.is_set():
            if self.grabber is not grabber:  # replaced by a reload: its frames count from zero
                last_seq, grabber = -1, self.grabber
            assert grabber is not None
            frame = grabber.wait_frame(last_seq, 0.5)
            now = time.monotonic()
            for spec in self.scheduler.on_tick(now):
                self.enqueue(spec)
            if frame is None:
                continue
            last_seq = frame.seq
            for spec in self.scheduler.on_frame(frame, now):
                self.enqueue(spec)

    def _on_serial_line(self, line: str) -> None:
        for spec in self.scheduler.for_serial(line, self.settings.serial.trigger_task):
            self.enqueue(spec)

    # ------------------------------------------------------------------ events and state

    def _on_worker_event(self, kind: str, detail: dict[str, Any]) -> None:
        if kind == "job_failed":  # the executor publishes it, with the trigger and the reply
            return
        reason = str(detail.pop("reason", "") or "")
        job = detail.pop("job_id", None)
        try:
            event = self.publisher.event(kind, reason, job_id=job, detail=detail)
        except ValueError:  # a kind outside the contract: report it as a restart with its name
            event = self.publisher.event("worker_restart", f"{kind}: {reason}", job_id=job, detail=detail)
        self.publisher.publish_event(event)

    def _on_camera_event(self, kind: str, detail: dict[str, Any]) -> None:
        self.publisher.publish_event(self.publisher.event(kind, str(detail.get("reason", "")), detail=detail))

    def _model_name(self) -> str | None:
        info = self.vision_sup.info if hasattr(self, "vision_sup") else None
        return info.name if info else (self.settings.model.path.name if self.settings.model.path else None)

    def _provider(self) -> str | None:
        info = self.vision_sup.info if hasattr(self, "vision_sup") else None
        return info.provider if info else None

    def _state_payload(self) -> StatePayload:
        return StatePayload(
            state=self.state,
            version=__version__,
            device=self.settings.device_id,
            model=self._model_name(),
            backend=self.settings.model.backend,
            provider=self._provider(),
            tasks=[t.name for t in self.settings.tasks],
            since=utc_iso(time.time()),
        )

    def _update_state(self) -> None:
        if self.state == "stopping":
            return
        sup = self.vision_sup.stats().state
        new: DaemonState = "paused" if self.paused else ("degraded" if sup == "degraded" else "running")
        if sup == "loading":
            new = "starting"
        if new != self.state or self._provider() != getattr(self, "_last_provider", None):
            if new != self.state:
                log.info("state %s -> %s", self.state, new)
            self.state = new
            self._last_provider = self._provider()
            self.client.set_state(self._state_payload())

    def _discovery_doc(self) -> dict[str, Any]:
        s = self.settings
        return discovery_payload(
            self.topics,
            s.tasks,
            model=self._model_name(),
            expire_after_s=default_expire_after(s.gate.max_interval_s, s.tasks),
        )

    def progressing(self) -> bool:
        """For the systemd watchdog: frames arrive and the generator is idle or heartbeating.

        A camera that is reported lost still counts as progress: the grabber is reconnecting with
        backoff and says so in events and health, while a service restart cannot bring a camera
        back and would only exhaust the unit's start limit during a long outage.
        """
        if self.grabber is None or self.stop_requested.is_set():
            return False
        cam = self.grabber.stats()
        frames_ok = cam.state in ("ok", "lost") or cam.ended
        return (
            frames_ok
            and self.vision_sup.progressing()
            and (self.text_sup is None or self.text_sup.progressing())
        )

    # ------------------------------------------------------------------ main loop and stop

    def serve(self) -> None:
        while not self.stop_requested.wait(0.5):
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                from edge.daemon.reload import reload_settings

                reload_settings(self)
            self._update_state()
            self.health.tick()

    def stop(self) -> None:
        self.stop_requested.set()
        self.state = "stopping"
        self.notifier.stopping("stopping")
        log.info("stopping: letting the current job finish or reach its deadline")
        if hasattr(self, "client"):
            self.client.set_state(self._state_payload())
        # One deadline for everything that may still be generating (TimeoutStopSec is above it).
        deadline = time.monotonic() + self.settings.watchdog.generation_s + 10.0
        for ex in (getattr(self, "vision_exec", None), self.text_exec):
            if ex is not None:
                ex.close()
        for sup in (getattr(self, "vision_sup", None), self.text_sup):
            if sup is not None:
                sup.stop(timeout=max(1.0, deadline - time.monotonic()))
        for ex in (getattr(self, "vision_exec", None), self.text_exec):
            if ex is not None:
                ex.join(10.0)
        if self.grabber is not None:
            self.grabber.stop(5.0)
        for comp in (self.gnss, self.trigger, self.sink):
            if comp is not None:
                comp.stop(2.0)
        if hasattr(self, "pinger"):
            self.pinger.stop()
        if hasattr(self, "publisher"):
            self.publisher.stop(flush_timeout=5.0)
            self.client.stop()
            self.outbox.close()
        log.info("stopped")


def run(loaded: LoadedSettings, reload_loader: Callable[[], LoadedSettings] | None = None) -> int:
    """`edge run`: the daemon in the foreground until SIGTERM/SIGINT; SIGHUP re-reads the settings."""
    daemon = Daemon(loaded, reload_loader)

    def on_term(signum: int, _frame: Any) -> None:
        log.info("received %s", signal.Signals(signum).name)
        daemon.stop_requested.set()

    def on_hup(_signum: int, _frame: Any) -> None:
        daemon.reload_requested.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    log.info("edge %s starting (pid %d)", __version__, os.getpid())
    try:
        daemon.start()
        daemon.serve()
    finally:
        daemon.stop()
    return 0
