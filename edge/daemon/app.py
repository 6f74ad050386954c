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
from pathlib import Path
from typing import Any

from edge import __version__
from edge.assets import package_file
from edge.capture import Grabber
from edge.capture.factory import describe_source, require_libraries, source_kind
from edge.config.model_settings import HttpModelSettings, path_of
from edge.config.settings import CameraSettings, ModelSettings, Settings, WatchdogSettings, ZoneSettings
from edge.config.sources import LoadedSettings
from edge.core.messages import LinkPayload
from edge.daemon.alerts import AlertRelay
from edge.daemon.commands import DaemonCommands
from edge.daemon.event_relay import EventRelay
from edge.daemon.health import HealthReporter, HealthSources, Meters
from edge.daemon.liveness import Liveness
from edge.daemon.malloc import return_large_buffers
from edge.daemon.metrics import MetricsServer
from edge.daemon.reload import Reloader
from edge.daemon.reloadable import Lane, LaneName, Reloadable, ReloadableRef, queue_size
from edge.daemon.state import StateTracker, model_name, provider
from edge.daemon.systemd import Notifier, WatchdogPinger, extending_timeout
from edge.daemon.triggers import JobRouter, TriggerLoop
from edge.daemon.webhook import WebhookSender, webhook_path
from edge.inference.supervisor import Supervisor
from edge.mqtt.budget import LinkBudget, budget_path
from edge.mqtt.client import MqttClient
from edge.mqtt.commands import CommandRouter
from edge.mqtt.discovery import Discovery, discovery_payload
from edge.mqtt.last_result import LastResults
from edge.mqtt.outbox import Outbox, default_outbox_path
from edge.mqtt.outbox_records import OutboxError
from edge.mqtt.publisher import Publisher
from edge.mqtt.topics import Topics
from edge.pipeline.executor import Executor, ExecutorDeps
from edge.pipeline.jobs import JobQueue, Scheduler
from edge.power.monitor import PowerMonitor
from edge.power.policy import PowerChange
from edge.serial.gnss import GnssReader
from edge.serial.sink import SerialSink
from edge.serial.trigger import TriggerReader

log = logging.getLogger(__name__)

DEMO_PROFILES = ("demo", "demo-openvino")  # echo results to stdout, say what the model is
DEMO_NOTICE = (
    "demo profile: the model is a tiny stand-in trained on synthetic shapes (the test pattern's world), "
    "not Phi-3.5-vision; point model.path at a real Phi-3.5-vision folder for real scenes (see devices/demo.toml)"
)


def runs_demo_model(s: Settings) -> bool:
    """The notice is about the packaged stand-in model, not the profile: a demo profile with
    model.path pointed at a real model gets no notice."""
    path = path_of(s.model)
    if s.profile not in DEMO_PROFILES or path is None:
        return False
    models = package_file("assets/models").resolve()
    return Path(path).resolve().is_relative_to(models)


def absent_devices(grabbers: Mapping[str, Grabber]) -> dict[str, str]:
    """Cameras whose V4L2 device node is not there: no first frame can come, so start-up does not
    wait for one (a USB camera plugged in later is still picked up by its grabber)."""
    out = {}
    for name, grabber in grabbers.items():
        source = grabber.settings.source
        if source_kind(source) == "v4l2" and sys.platform.startswith("linux"):
            device = describe_source(source)
            if not os.path.exists(device):
                out[name] = device
    return out


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
    budget: LinkBudget


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
    pipeline: ReloadableRef
    scheduler: Scheduler
    triggers: TriggerLoop
    serial: Serial
    state: StateTracker
    router: CommandRouter
    discovery: Discovery | None
    last: LastResults
    health: HealthReporter
    reloader: Reloader
    pinger: WatchdogPinger
    liveness: Liveness
    metrics: MetricsServer
    power: PowerMonitor
    alerts: AlertRelay | None


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
        try:
            outbox = Outbox(s.mqtt.outbox_path or default_outbox_path(), int(s.mqtt.outbox_max_mb * 2**20))
        except OutboxError as err:  # name the setting: a second run as the same user shares the default
            where = self._loaded.origin(("mqtt", "outbox_path"))
            raise OutboxError(f"mqtt.outbox_path ({where}): {err}") from None
        try:
            return self._build_on(s, topics, outbox)
        except BaseException:
            outbox.close()
            raise

    def _build_on(self, s: Settings, topics: Topics, outbox: Outbox) -> Parts:
        client = MqttClient(s.mqtt, topics)
        budget = LinkBudget(s.link, budget_path(outbox.path))
        client.set_byte_counter(budget.count)
        publisher = Publisher(
            client,
            outbox,
            topics,
            qos=s.mqtt.qos,
            message_expiry_s=s.mqtt.message_expiry_s,
            image_gate=budget,
        )
        link = Link(topics, outbox, client, publisher, budget)
        events = EventRelay(publisher)
        last = LastResults(client, topics, qos=s.mqtt.qos)

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

        def zone(camera: str, name: str) -> ZoneSettings | None:
            cam = ref.current.settings.camera_settings(camera)
            return cam.zone(name) if cam is not None else None

        def max_frame_age_s(camera: str) -> float:
            cam = ref.current.settings.camera_settings(camera)
            return cam.stall_s if cam is not None else 10.0

        alerts = (
            AlertRelay(
                s.alerts,
                lambda name: ref.current.settings.task(name),
                publisher,
                sink.write_result if sink else None,
                WebhookSender(webhook_path(outbox.path), max(a.webhook_timeout_s for a in s.alerts))
                if any(a.webhook for a in s.alerts)
                else None,
            )
            if s.alerts
            else None
        )
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
            by_task=self._meters.by_task,
            image_max_bytes=s.mqtt.image_max_kb * 1024,
            position=gnss.position if gnss else (lambda: None),
            sink=sink.write_result if sink else None,
            echo=sys.stdout.isatty() or s.profile in DEMO_PROFILES,
            max_frame_age_s=max_frame_age_s,
            image_max_edge=s.link.image_max_edge,
            image_quality=s.link.image_quality,
            zone=zone,
            on_result=(last.publish, alerts.on_result) if alerts else (last.publish,),
        )
        size = queue_size(s)
        lanes = [self._lane("vision", s.model, s.watchdog, deps, new_supervisor, size)]
        if s.text_model is not None:
            lanes.append(self._lane("text", s.text_model, s.watchdog, deps, new_supervisor, size))
        ref = ReloadableRef(Reloadable(settings=s, grabbers=grabbers, lanes=tuple(lanes)))

        def current() -> Reloadable:
            return ref.current

        scheduler = Scheduler(s.tasks, s.gate, s.camera_names, zone=zone)
        text = ref.current.text
        jobs = JobRouter(ref.current.vision.queue, text.queue if text else None)
        triggers = TriggerLoop(current, scheduler, jobs.enqueue, self.stop_requested)
        trigger = TriggerReader(s.serial, triggers.on_serial_line) if s.serial.trigger_port else None
        state = StateTracker(current, client.set_state, budget.snapshot)

        def budget_spent(figures: LinkPayload) -> None:
            words = "deferred to tomorrow" if s.link.over_budget == "defer" else "dropped"
            publisher.publish_event(
                publisher.event(
                    "link_budget_spent",
                    f"link budget: {figures.bytes_today} of {figures.budget_bytes} bytes used today;"
                    f" images are {words} (results, events and health still go out)",
                    detail=figures.model_dump(),
                )
            )
            state.publish()

        budget.on_spent = budget_spent

        def power_apply(factor: float, held: bool) -> None:
            scheduler.interval_factor = factor
            scheduler.held = held

        def power_event(change: PowerChange) -> None:
            publisher.publish_event(publisher.event(change.event, change.reason, detail=change.detail))

        power = PowerMonitor(s.power, power_apply, power_event)
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
                device_name=p.settings.display_name,
                qos=p.settings.mqtt.qos,
                alerts=[a.name for a in p.settings.alerts],
            )

        discovery = Discovery(client, topics, discovery_doc) if s.mqtt.discovery else None
        pairs = [_result_pairs(s)]  # the (camera, task) pairs whose `last` topic may be retained

        def reloaded() -> None:
            """After a reload: the new state, the entities that changed, no stale `last` left behind."""
            state.publish()
            if discovery is not None:
                discovery.refresh()
            now = _result_pairs(ref.current.settings)
            last.clear(sorted(pairs[0] - now))
            pairs[0] = now

        sources = HealthSources(
            pipeline=current,
            meters=self._meters,
            queues=tuple(lane.queue for lane in lanes),
            outbox=outbox,
            gate=scheduler,
            state=lambda: state.state,
            power=power.status,
            link=budget.snapshot,
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
            discovery=discovery,
            last=last,
            health=HealthReporter(sources, publisher.publish_health, status),
            reloader=Reloader(
                pipeline=ref,
                load=self._reload_loader,
                scheduler=scheduler,
                new_grabber=new_grabber,
                new_supervisor=successor,
                events=publisher,
                notifier=self.notifier,
                on_reloaded=reloaded,
            ),
            pinger=pinger,
            liveness=liveness,
            metrics=MetricsServer(s.metrics, sources),
            power=power,
            alerts=alerts,
        )

    @staticmethod
    def _liveness(ref: ReloadableRef, link: Link, triggers: TriggerLoop, serial: Serial) -> Liveness:
        """Every thread the pipeline needs, for the watchdog (the supervisors answer for themselves
        in `Reloadable.progressing`). Grabbers are looked up through the pipeline: a reload swaps them."""
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
        parts.last.attach()
        link.client.set_state(parts.state.payload())
        link.client.start()
        link.publisher.start()
        if parts.alerts is not None and parts.alerts.webhook is not None:
            parts.alerts.webhook.start()
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
        absent = absent_devices(p.grabbers)
        for name, device in absent.items():  # said now, not after FIRST_FRAME_WAIT_S of silence
            log.warning(
                "camera %s: %s does not exist; not waiting for it, its grabber keeps looking", name, device
            )
        # Both waits give way to SIGTERM/SIGINT within STOP_POLL_S (a stop during start-up must not wait
        # out a model load): the handler
        # only sets stop_requested, and serve() then returns at once into stop().
        with extending_timeout(self.notifier):
            loaded = p.vision.supervisor.wait_ready(s.watchdog.load_timeout_s, cancel=self.stop_requested)
            waited_from = time.monotonic()
            missing = self._first_frames({n: g for n, g in p.grabbers.items() if n not in absent})
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
        parts.power.tick()  # the first reading: a hot board or a closed window applies from the start
        for lane in p.lanes:
            lane.executor.start()
        parts.triggers.start()
        parts.pinger.start()
        parts.state.update()
        self.notifier.ready(parts.health.status_line())
        if runs_demo_model(s):
            log.warning(DEMO_NOTICE)
        where = provider(p)
        log.info(
            "running: %d task(s) on %d camera(s) (%s), model %s %s",
            len(s.tasks),
            len(p.grabbers),
            ", ".join(p.grabbers),
            model_name(p) or (s.model.name if isinstance(s.model, HttpModelSettings) else s.model.backend),
            f"on {where}" if where else "(not loaded yet)",
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
            parts.power.tick()
            parts.health.tick()
            parts.link.budget.save()

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
        if parts.alerts is not None and parts.alerts.webhook is not None:
            parts.alerts.webhook.stop()
        parts.link.publisher.stop(flush_timeout=5.0)
        parts.link.client.stop()
        parts.link.budget.save(force=True)
        parts.link.outbox.close()
        log.info("stopped")


def _result_pairs(s: Settings) -> set[tuple[str, str]]:
    return {(camera, t.name) for t in s.tasks for camera in s.task_cameras(t)}


def _alive(grabber: Grabber) -> Callable[[], bool]:
    return lambda: grabber.alive


def _started(sup: Supervisor) -> Supervisor:
    sup.start()
    return sup


def run(loaded: LoadedSettings, reload_loader: Callable[[], LoadedSettings] | None = None) -> int:
    """`edge run`: the daemon in the foreground until SIGTERM/SIGINT; SIGHUP re-reads the settings."""
    require_libraries(loaded.settings.cameras)
    return_large_buffers()
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
