"""The composition root: builds the components, starts them in order, stops them in reverse.

Build: every component is constructed first (nothing runs yet), so each collaborator is handed only
what it needs and every part exists before the first thread starts; a camera source that can never
work fails here, before the daemon says `online`.
Start: outbox and MQTT -> workers and model load -> cameras -> serial -> executors -> triggers -> READY=1.
Stop (SIGTERM/SIGINT): triggers -> the running job finishes or hits its deadline -> workers -> cameras
-> outbox flushed -> `offline` -> exit 0. SIGHUP reloads settings (edge.daemon.reload).
Every stop below is safe on a part that never started, so a start that fails half way still stops
cleanly. Nothing imports this module.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge import __version__
from edge.capture import Grabber
from edge.config.settings import CameraSettings, ModelSettings, Settings, WatchdogSettings
from edge.config.sources import LoadedSettings
from edge.daemon.commands import DaemonCommands
from edge.daemon.events import EventRelay
from edge.daemon.health import HealthReporter, HealthSources, Meters
from edge.daemon.liveness import Liveness
from edge.daemon.metrics import MetricsServer
from edge.daemon.pipeline import Lane, LaneName, Pipeline, PipelineRef, queue_size
from edge.daemon.reload import Reloader
from edge.daemon.state import StateTracker, model_name, provider
from edge.daemon.systemd import Notifier, WatchdogPinger, extending_timeout
from edge.daemon.triggers import JobRouter, TriggerLoop
from edge.inference.supervisor import Supervisor
from edge.mqtt.client import MqttClient
from edge.mqtt.commands import CommandRouter
from edge.mqtt.discovery import Discovery, discovery_payload
from edge.mqtt.outbox import Outbox, default_outbox_path
from edge.mqtt.publisher import Publisher
from edge.mqtt.topics import Topics
from edge.pipeline.executor import Executor, ExecutorDeps
from edge.pipeline.jobs import JobQueue, Scheduler
from edge.serial.gnss import GnssReader
from edge.serial.sink import SerialSink
from edge.serial.trigger import TriggerReader

log = logging.getLogger(__name__)

DEMO_PROFILES = ("demo", "demo-openvino")  # echo results to stdout, say what the model is
DEMO_NOTICE = (
    "demo profile: the model is a tiny stand-in trained on synthetic shapes (the test pattern's world), "
    "not Phi-3.5-vision; point model.path at a real Phi-3.5-vision folder for real scenes (see devices/demo.toml)"
)
FIRST_FRAME_WAIT_S = 30.0
STOP_POLL_S = 0.2  # how often a start-up wait looks for SIGTERM/SIGINT
# How long a loop may go without a round before the watchdog calls it stuck. An executor's round can
# hold a whole job (bounded by watchdog.total_s, which the supervisor enforces) plus the frame wait
# and the outbox write.
TRIGGERS_STALE_S = 10.0
PUBLISHER_STALE_S = 30.0
EXECUTOR_SLACK_S = 30.0


@dataclass(frozen=True)
class Link:
    """The MQTT side: durable outbox, connection, and the publisher between them."""

    topics: Topics
    outbox: Outbox
    client: MqttClient
    publisher: Publisher


@dataclass(frozen=True)
class Serial:
    gnss: GnssReader | None
    trigger: TriggerReader | None
    sink: SerialSink | None

    @property
    def parts(self) -> tuple[GnssReader | TriggerReader | SerialSink, ...]:
        return tuple(p for p in (self.gnss, self.trigger, self.sink) if p is not None)


@dataclass(frozen=True)
class Parts:
    """Everything `Daemon.build` wires together; constructed, not yet started."""

    link: Link
    pipeline: PipelineRef
    scheduler: Scheduler
    triggers: TriggerLoop
    serial: Serial
    state: StateTracker
    router: CommandRouter
    discovery: Discovery | None
    health: HealthReporter
    reloader: Reloader
    pinger: WatchdogPinger
    liveness: Liveness
    metrics: MetricsServer


class Daemon:
    def __init__(
        self, loaded: LoadedSettings, reload_loader: Callable[[], LoadedSettings] | None = None
    ) -> None:
        self._loaded = loaded
        self._reload_loader = reload_loader or (lambda: loaded)
        self.notifier = Notifier()
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self._meters = Meters()
        self._parts: Parts | None = None  # set by start(); stop() handles a start that failed

    # ------------------------------------------------------------------ build

    def _build(self) -> Parts:
        s = self._loaded.settings
        topics = Topics.from_settings(s.mqtt, s.device_id, s.tasks)
        outbox = Outbox(s.mqtt.outbox_path or default_outbox_path(), int(s.mqtt.outbox_max_mb * 2**20))
        try:
            return self._build_on(s, topics, outbox)
        except BaseException:
            outbox.close()
            raise

    def _build_on(self, s: Settings, topics: Topics, outbox: Outbox) -> Parts:
        client = MqttClient(s.mqtt, topics)
        publisher = Publisher(
            client, outbox, topics, qos=s.mqtt.qos, message_expiry_s=s.mqtt.message_expiry_s
        )
        link = Link(topics, outbox, client, publisher)
        events = EventRelay(publisher)

        def new_supervisor(model: ModelSettings, watchdog: WatchdogSettings) -> Supervisor:
            return Supervisor(model, watchdog, events.worker)

        def successor(model: ModelSettings, watchdog: WatchdogSettings, previous: Supervisor) -> Supervisor:
            return _started(Supervisor(model, watchdog, events.worker, frames=previous.frame_slot))

        def new_grabber(camera: CameraSettings) -> Grabber:
            return Grabber(camera, events.camera)

        grabbers = {camera.name: new_grabber(camera) for camera in s.cameras}
        gnss = GnssReader(s.serial) if s.serial.gnss_port else None
        sink = SerialSink(s.serial) if s.serial.sink_port else None

        def frames(camera: str) -> Grabber | None:  # through the pipeline: a reload swaps grabbers
            return ref.current.grabber(camera)

        def max_frame_age_s(camera: str) -> float:
            cam = ref.current.settings.camera_settings(camera)
            return cam.stall_s if cam is not None else 10.0

        deps = ExecutorDeps(
            device=s.device_id,
            publisher=publisher,
            frames=frames,
            recent=self._meters.recent,
            counters=self._meters.counters,
            ttft=self._meters.ttft,
            decode=self._meters.decode,
            latency=self._meters.latency,
            generation=self._meters.generation,
            image_max_bytes=s.mqtt.image_max_kb * 1024,
            position=gnss.position if gnss else (lambda: None),
            sink=sink.write_result if sink else None,
            echo=sys.stdout.isatty() or s.profile in DEMO_PROFILES,
            max_frame_age_s=max_frame_age_s,
        )
        size = queue_size(s)
        lanes = [self._lane("vision", s.model, s.watchdog, deps, new_supervisor, size)]
        if s.text_model is not None:
            lanes.append(self._lane("text", s.text_model, s.watchdog, deps, new_supervisor, size))
        ref = PipelineRef(Pipeline(settings=s, grabbers=grabbers, lanes=tuple(lanes)))

        def current() -> Pipeline:
            return ref.current

        scheduler = Scheduler(s.tasks, s.gate, s.camera_names)
        text = ref.current.text
        jobs = JobRouter(ref.current.vision.queue, text.queue if text else None)
        triggers = TriggerLoop(current, scheduler, jobs.enqueue, self.stop_requested)
        trigger = TriggerReader(s.serial, triggers.on_serial_line) if s.serial.trigger_port else None
        state = StateTracker(current, client.set_state)
        commands = DaemonCommands(ref, scheduler, jobs.enqueue, state, self.reload_requested.set)
        router = CommandRouter(
            client,
            topics,
            commands,
            max_bytes=s.mqtt.max_command_bytes,
            task_names=lambda: [t.name for t in ref.current.settings.tasks],
        )

        def discovery_doc() -> dict[str, Any]:
            p = ref.current
            return discovery_payload(
                topics,
                p.settings.tasks,
                cameras=p.settings.camera_names,
                qos=p.settings.mqtt.qos,
            )

        sources = HealthSources(
            pipeline=current,
            meters=self._meters,
            queues=tuple(lane.queue for lane in lanes),
            outbox=outbox,
            gate=scheduler,
            state=lambda: state.state,
        )
        liveness = self._liveness(ref, link, triggers, Serial(gnss, trigger, sink))
        pinger = WatchdogPinger(
            self.notifier,
            lambda: not self.stop_requested.is_set() and ref.current.progressing(),
            problem=lambda: None if self.stop_requested.is_set() else liveness.problem(),
        )

        def status(line: str) -> None:  # a dead thread stays in STATUS= until systemd acts on it
            self.notifier.status(f"{pinger.problem}; {line}" if pinger.problem else line)

        return Parts(
            link=link,
            pipeline=ref,
            scheduler=scheduler,
            triggers=triggers,
            serial=Serial(gnss, trigger, sink),
            state=state,
            router=router,
            discovery=Discovery(client, topics, discovery_doc) if s.mqtt.discovery else None,
            health=HealthReporter(sources, publisher.publish_health, status),
            reloader=Reloader(
                pipeline=ref,
                load=self._reload_loader,
                scheduler=scheduler,
                new_grabber=new_grabber,
                new_supervisor=successor,
                events=publisher,
                notifier=self.notifier,
                on_reloaded=state.publish,
            ),
            pinger=pinger,
            liveness=liveness,
            metrics=MetricsServer(s.metrics, sources),
        )

    @staticmethod
    def _liveness(ref: PipelineRef, link: Link, triggers: TriggerLoop, serial: Serial) -> Liveness:
        """Every thread the pipeline needs, for the watchdog (the supervisors answer for themselves
        in `Pipeline.progressing`). Grabbers are looked up through the pipeline: a reload swaps them."""
        live = Liveness()

        def executor(lane: Lane) -> None:
            ex = lane.executor
            stale = lambda: ref.current.settings.watchdog.total_s + EXECUTOR_SLACK_S  # noqa: E731
            live.add(f"edge-exec-{lane.name}", lambda: ex.alive, lambda: ex.beat, stale)

        def port(part: GnssReader | TriggerReader | SerialSink) -> None:
            live.add(f"serial {type(part).__name__}", lambda: part.alive)

        for lane in ref.current.lanes:
            executor(lane)
        live.add("edge-triggers", lambda: triggers.alive, lambda: triggers.beat, TRIGGERS_STALE_S)
        live.add(
            "mqtt-publisher", lambda: link.publisher.alive, lambda: link.publisher.beat, PUBLISHER_STALE_S
        )
        live.add("paho network loop", lambda: link.client.network_alive)
        # Every camera's capture thread, looked up at each check: a reload adds and removes cameras.
        live.add_each("capture-", lambda: {name: _alive(g) for name, g in ref.current.grabbers.items()})
        for part in serial.parts:
            port(part)
        return live

    @staticmethod
    def _lane(
        name: LaneName,
        model: ModelSettings,
        watchdog: WatchdogSettings,
        deps: ExecutorDeps,
        new_supervisor: Callable[[ModelSettings, WatchdogSettings], Supervisor],
        size: int,
    ) -> Lane:
        queue = JobQueue(maxsize=size)
        sup = new_supervisor(model, watchdog)
        return Lane(name, queue, sup, Executor(name, queue, sup, model, watchdog, deps))

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        self.notifier.status("starting")
        parts = self._parts = self._build()
        link, p = parts.link, parts.pipeline.current
        s = p.settings
        if parts.discovery is not None:
            parts.discovery.attach()
        link.client.set_state(parts.state.payload())
        link.client.start()
        link.publisher.start()
        parts.metrics.start()
        log.info(
            "boot %d of %s; outbox %s holds %d message(s)",
            link.publisher.boot,
            s.device_id,
            link.outbox.path,
            link.outbox.depth(),
        )
        for sup in p.supervisors:
            sup.start()
        for grabber in p.grabbers.values():
            grabber.start()
        # Both waits give way to SIGTERM/SIGINT within STOP_POLL_S (issue 14, item 5): the handler
        # only sets stop_requested, and serve() then returns at once into stop().
        with extending_timeout(self.notifier):
            loaded = p.vision.supervisor.wait_ready(s.watchdog.load_timeout_s, cancel=self.stop_requested)
            waited_from = time.monotonic()
            missing = self._first_frames(p.grabbers)
            waited = time.monotonic() - waited_from
        if self.stop_requested.is_set():
            log.info("stop requested during start-up; the pipeline is not started")
            return
        if not loaded:
            log.error(
                "model not loaded (%s); running degraded, retrying with backoff",
                p.vision.supervisor.stats().degraded_reason or "load failed",
            )
        if missing:
            ended = [n for n in missing if p.grabbers[n].stats().ended]
            # Say what happened: a source that ended (an unreadable file) is not a 30 s timeout.
            log.warning(
                "no frame from camera %s after %.0f s (%s); continuing, its grabber keeps reconnecting",
                ", ".join(missing),
                waited,
                f"source ended: {', '.join(ended)}" if ended else f"waited up to {FIRST_FRAME_WAIT_S:.0f} s",
            )
        for part in parts.serial.parts:
            part.start()
        for lane in p.lanes:
            lane.executor.start()
        parts.triggers.start()
        parts.pinger.start()
        parts.state.update()
        self.notifier.ready(parts.health.status_line())
        if s.profile in DEMO_PROFILES:
            log.warning(DEMO_NOTICE)
        log.info(
            "running: %d task(s) on %d camera(s) (%s), model %s on %s",
            len(s.tasks),
            len(p.grabbers),
            ", ".join(p.grabbers),
            model_name(p),
            provider(p),
        )

    def _first_frames(self, grabbers: Mapping[str, Grabber]) -> list[str]:
        """Wait up to FIRST_FRAME_WAIT_S in all for each camera's first frame; the cameras that sent
        none (timeout, a source that ended; all that are left on stop)."""
        deadline = time.monotonic() + FIRST_FRAME_WAIT_S
        waiting = dict(grabbers)
        while waiting and not self.stop_requested.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            name, grabber = next(iter(waiting.items()))
            frame = grabber.wait_frame(-1, min(STOP_POLL_S, left))
            if frame is not None:
                del waiting[name]
            elif grabber.stats().ended:
                return [*waiting]
        return [*waiting]

    # ------------------------------------------------------------------ main loop and stop

    def serve(self) -> None:
        parts = self._parts
        assert parts is not None, "start() first"
        while not self.stop_requested.wait(0.5):
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                parts.reloader.reload()
            parts.state.update()
            parts.health.tick()

    def stop(self) -> None:
        self.stop_requested.set()
        self.notifier.stopping("stopping")
        log.info("stopping: letting the current job finish or reach its deadline")
        parts = self._parts
        if parts is None:  # the build failed: it closed what it had opened
            log.info("stopped")
            return
        parts.state.stopping()
        p = parts.pipeline.current
        # One deadline for everything that may still be generating (TimeoutStopSec is above it).
        deadline = time.monotonic() + p.settings.watchdog.generation_s + 10.0
        for lane in p.lanes:
            lane.executor.close()
        for sup in p.supervisors:
            sup.stop(timeout=max(1.0, deadline - time.monotonic()))
        for lane in p.lanes:
            lane.executor.join(10.0)
        for grabber in p.grabbers.values():
            grabber.stop(5.0)
        for part in parts.serial.parts:
            part.stop(2.0)
        parts.pinger.stop()
        parts.metrics.stop()
        parts.link.publisher.stop(flush_timeout=5.0)
        parts.link.client.stop()
        parts.link.outbox.close()
        log.info("stopped")


def _alive(grabber: Grabber) -> Callable[[], bool]:
    return lambda: grabber.alive


def _started(sup: Supervisor) -> Supervisor:
    sup.start()
    return sup


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
