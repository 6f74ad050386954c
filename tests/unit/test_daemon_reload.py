"""The reloader at its seams: fake supervisors and grabbers (built by factories it is handed), real
settings loading, scheduler and executors (never started)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from edge.config.settings import ModelSettings, Settings, WatchdogSettings
from edge.config.sources import LoadedSettings, load_settings
from edge.core.errors import ConfigError
from edge.daemon.reload import Reloader
from edge.daemon.reloadable import Lane, Reloadable, ReloadableRef
from edge.pipeline.executor import Executor
from edge.pipeline.jobs import JobQueue, Scheduler

BASE = ['camera.source="testsrc"', 'text_model.providers=["cpu"]', "watchdog.token_s=2.0"]


def settings(*overrides: str) -> Settings:
    return load_settings(overrides=[*BASE, *overrides], environ={}).settings


class FakeSupervisor:
    def __init__(self, model: ModelSettings, watchdog: WatchdogSettings, previous: Any = None) -> None:
        self.model, self.watchdog, self.stopped = model, watchdog, False
        self.previous = previous
        self.stopped_before_successor = previous is None or previous.stopped

    def stop(self, timeout: float = 10.0) -> None:
        self.stopped = True


class FakeGrabber:
    def __init__(self, camera: Any) -> None:
        self.camera, self.started, self.stopped = camera, False, False

    def start(self) -> None:
        self.started = True

    def stop(self, timeout: float = 5.0) -> bool:
        self.stopped = True
        return True


class Events:
    def __init__(self) -> None:
        self.published: list[Any] = []

    def event(self, kind: str, reason: str = "", **fields: Any) -> Any:
        return SimpleNamespace(kind=kind, reason=reason, **fields)

    def publish_event(self, event: Any) -> None:
        self.published.append(event)


class Notifier:
    def reloading(self, status: str | None = None) -> bool:
        return True

    def ready(self, status: str | None = None) -> bool:
        return True


def lane(name: Any, model: ModelSettings, watchdog: WatchdogSettings) -> Lane:
    queue, sup = JobQueue(), FakeSupervisor(model, watchdog)
    deps: Any = SimpleNamespace(frames=None)
    return Lane(name, queue, sup, Executor(name, queue, sup, model, watchdog, deps))  # type: ignore[arg-type]


def reloader(running: Settings, new: Settings) -> tuple[Reloader, ReloadableRef, Events]:
    assert running.text_model is not None
    lanes = (
        lane("vision", running.model, running.watchdog),
        lane("text", running.text_model, running.watchdog),
    )
    grabbers = {c.name: FakeGrabber(c) for c in running.cameras}
    ref = ReloadableRef(Reloadable(settings=running, grabbers=grabbers, lanes=lanes))  # type: ignore[arg-type]
    events = Events()
    r = Reloader(
        pipeline=ref,
        load=lambda: LoadedSettings(settings=new, origins={}, config_file=None),
        scheduler=Scheduler(running.tasks, running.gate, running.camera_names),
        new_grabber=FakeGrabber,  # type: ignore[arg-type]
        new_supervisor=FakeSupervisor,  # type: ignore[arg-type]
        events=events,
        notifier=Notifier(),  # type: ignore[arg-type]
        on_reloaded=lambda: None,
    )
    return r, ref, events


def test_watchdog_reload_restarts_every_worker_with_the_new_limits() -> None:
    """Regression: only the vision worker got the new watchdog; the text model's kept the old one."""
    running, new = settings(), settings("watchdog.token_s=7.0")
    r, ref, events = reloader(running, new)
    old = ref.current.supervisors
    assert r.reload()
    p = ref.current
    assert [lane.name for lane in p.lanes] == ["vision", "text"]
    for lane_, before in zip(p.lanes, old, strict=True):
        assert cast(FakeSupervisor, before).stopped, lane_.name  # built by the fake factory
        assert lane_.supervisor is not before, lane_.name
        # the successor is built from its stopped predecessor (it inherits the frame slot)
        assert lane_.supervisor.previous is before, lane_.name  # type: ignore[attr-defined]
        assert lane_.supervisor.stopped_before_successor, lane_.name  # type: ignore[attr-defined]
        assert lane_.supervisor.watchdog.token_s == 7.0, lane_.name  # type: ignore[attr-defined]
        assert lane_.executor.supervisor is lane_.supervisor
        assert lane_.executor.watchdog.token_s == 7.0
        assert lane_.executor.model == lane_.model(p.settings)
    assert p.settings.watchdog.token_s == 7.0
    assert events.published[-1].detail["applied"] == ["watchdog"]


def test_model_reload_restarts_only_the_vision_worker() -> None:
    running, new = settings(), settings("model.max_new_tokens=9")
    r, ref, _ = reloader(running, new)
    vision, text = ref.current.supervisors
    assert r.reload()
    p = ref.current
    assert p.vision.supervisor is not vision and p.vision.executor.model.max_new_tokens == 9
    assert p.text is not None and p.text.supervisor is text and not text.stopped  # type: ignore[attr-defined]


def test_text_model_change_waits_for_a_service_restart() -> None:
    running, new = settings(), settings("text_model.max_new_tokens=5")
    r, ref, events = reloader(running, new)
    before = ref.current.supervisors
    assert r.reload()
    assert ref.current.supervisors == before
    assert events.published[-1].detail == {"applied": [], "needs_restart": ["text_model"]}


def test_live_and_camera_changes_swap_the_pipeline_value() -> None:
    running, new = settings(), settings("gate.cooldown_s=3.0", "camera.fps=5")
    r, ref, _ = reloader(running, new)
    old_grabber = ref.current.grabbers["main"]
    assert r.reload()
    p = ref.current
    assert p.settings.gate.cooldown_s == 3.0 and p.settings.camera.fps == 5
    new_grabber = p.grabbers["main"]
    assert old_grabber.stopped and new_grabber is not old_grabber and new_grabber.started  # type: ignore[attr-defined]
    assert running.gate.cooldown_s != 3.0  # the running value was replaced, not mutated


CAMS = [
    'cameras=[{name="gate", source="testsrc"}, {name="yard", source="testsrc"}, {name="shed", source="testsrc"}]'
]


def test_camera_reload_restarts_only_the_cameras_that_changed() -> None:
    running = load_settings(overrides=[*BASE[1:], *CAMS], environ={}).settings
    new = load_settings(
        overrides=[
            *BASE[1:],
            'cameras=[{name="gate", source="testsrc"}, {name="yard", source="testsrc", fps=5}, '
            '{name="barn", source="testsrc"}]',
        ],
        environ={},
    ).settings
    r, ref, events = reloader(running, new)
    before = dict(ref.current.grabbers)
    yard = r._scheduler.gate("yard")
    assert yard is not None
    yard.mark_triggered(0.0)
    assert r.reload()
    p = ref.current
    assert list(p.grabbers) == ["gate", "yard", "barn"] == p.settings.camera_names
    assert p.grabbers["gate"] is before["gate"] and not before["gate"].stopped  # type: ignore[attr-defined]
    assert p.grabbers["yard"] is not before["yard"] and before["yard"].stopped  # type: ignore[attr-defined]
    assert p.grabbers["yard"].started and p.grabbers["barn"].started  # type: ignore[attr-defined]
    assert before["shed"].stopped  # type: ignore[attr-defined]
    assert r._scheduler.cameras == ("gate", "yard", "barn")
    assert events.published[-1].detail["cameras"] == {
        "added": ["barn"],
        "removed": ["shed"],
        "restarted": ["yard"],
    }


def test_device_name_changes_live() -> None:
    """The friendly name is a label in Home Assistant: it changes on reload (discovery is re-sent),
    while a device_id change waits for a restart (it names every topic)."""
    running, new = settings(), settings('device_name="Porch camera"')
    r, ref, events = reloader(running, new)
    assert running.display_name == running.device_id
    assert r.reload()
    assert ref.current.settings.display_name == "Porch camera"
    assert "device_name" in events.published[-1].detail["applied"]


def test_device_name_must_be_a_label() -> None:
    for bad in ('device_name=" "', 'device_name="a\\u0001b"', f'device_name="{"x" * 101}"'):
        with pytest.raises(ConfigError) as exc:
            settings(bad)
        assert any("device_name" in p for p in exc.value.problems), exc.value.problems
