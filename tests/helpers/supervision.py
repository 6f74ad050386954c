"""Helpers for the supervision tests: short watchdog settings, jobs, an event recorder, waiting."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge.config.settings import ModelSettings, OrtGenAIModelSettings, WatchdogSettings, model_settings
from edge.core.messages import Frame, GenerationRequest, Job
from edge.inference.supervisor import Supervisor

FAKE_LOADER = "tests.helpers.fake_backend:load"


def watchdog(**overrides: Any) -> WatchdogSettings:
    """Deadlines short enough for tests, long enough for a loaded 2-core box (spawn ~1 s)."""
    values: dict[str, Any] = {
        "first_token_s": 3.0,
        "token_s": 1.0,
        "generation_s": 8.0,
        "total_s": 10.0,
        "max_restarts": 5,
        "restart_window_s": 60.0,
        "backoff_initial_s": 0.1,
        "backoff_max_s": 1.0,
        "recycle_after_jobs": 0,
        "max_rss_mb": 0,
        "load_timeout_s": 30.0,
    }
    values.update(overrides)
    return WatchdogSettings(**values)


def fake_model(providers: list[str] | None = None, **fake: str) -> ModelSettings:
    return OrtGenAIModelSettings(
        providers=providers or ["cpu"], provider_options={"fake": fake} if fake else {}
    )


def real_model(path: Path, backend: str = "ort-genai", **overrides: Any) -> ModelSettings:
    providers = ["cpu"] if backend == "ort-genai" else ["CPU"]
    return model_settings(path=path, backend=backend, providers=providers, **overrides)


def frame(width: int = 64, height: int = 48, seq: int = 0) -> Frame:
    rng = np.random.default_rng(seq)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return Frame(image=image, captured_at=time.time(), monotonic=time.monotonic(), seq=seq)


def job(job_id: str, prompt: str = "describe", max_new_tokens: int = 16, image: Frame | None = None) -> Job:
    images = (image.image,) if image is not None else ()
    request = GenerationRequest(prompt=prompt, images=images, max_new_tokens=max_new_tokens)
    return Job(id=job_id, task="caption", kind="caption", trigger="command", request=request, frame=image,
               created=time.monotonic())  # fmt: skip


class EventLog:
    """Records supervisor events (thread-safe) with their arrival time."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.events: list[tuple[str, dict[str, Any], float]] = []

    def __call__(self, kind: str, detail: dict[str, Any]) -> None:
        with self._lock:
            self.events.append((kind, dict(detail), time.monotonic()))
            self._lock.notify_all()

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [d for k, d, _ in self.events if k == kind]

    def kinds(self) -> list[str]:
        with self._lock:
            return [k for k, _, _ in self.events]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len([1 for k, _, _ in self.events if k == kind]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} {kind!r} events within {timeout}s, got {self.kinds()}"
                    )
                self._lock.wait(left)
        return self.of(kind)

    def time_of(self, kind: str, index: int = 0) -> float:
        with self._lock:
            return [t for k, _, t in self.events if k == kind][index]


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@contextlib.contextmanager
def running(
    model: ModelSettings, wd: WatchdogSettings, events: EventLog | None = None, loader: str = FAKE_LOADER,
    ready: bool = True,
) -> Iterator[Supervisor]:  # fmt: skip
    sup = Supervisor(model, wd, events, loader=loader)
    sup.start()
    try:
        if ready:
            assert sup.wait_ready(wd.load_timeout_s), f"worker did not load: {sup.stats()}"
        yield sup
    finally:
        sup.stop(timeout=5.0)


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run `fn` in a thread; its return value lands in the list."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    thread.start()
    return thread, box
