"""`edge run` as a measured subprocess: the bench's config, the process, and an MQTT observer.

The daemon runs exactly as systemd runs it (a config file, NOTIFY_SOCKET, SIGTERM to stop), under a
bench device id so a service already running on the board keeps its topics, client id and outbox.
The observer is a bare client from `edge.mqtt.connection` on the same broker: it sees each result when the broker forwards
it, which on one host is when the broker sends the daemon its PUBACK, and it drives the phases
through the daemon's own commands (cmd/capture, cmd/set).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import tomli_w

from edge.capture.redact import redact_source
from edge.cli.bench.measure import BenchError
from edge.config.settings import MqttSettings, Settings
from edge.inference.token_clock import TOKEN_TIMES_ENV
from edge.mqtt.connection import Client, Message, new_client
from edge.mqtt.topics import Topics

TASK = "bench"
IDLE_AFTER_S = 1.0  # the bench's cameras go to their idle rate this soon after the warm-up job
NEVER_S = 1e6  # gate intervals that keep the motion task quiet (after its first-frame run)
_LOADED = re.compile(r"model loaded: .* in (\d+(?:\.\d+)?) ms")


def bench_config(
    settings: Settings, mqtt: MqttSettings, state_dir: Path, prompt: str, health_s: float = 5.0
) -> dict[str, Any]:
    """The effective settings, turned into one bench run's config file.

    One motion task on the configured camera and model, gated shut (the daemon idles with the
    camera running and the gate looking at every frame) until the bench opens it by command; no
    serial ports (a running service holds them), no text model, no discovery, its own outbox.
    """
    doc = settings.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc.pop("profile", None)  # the profile's values are already merged in
    doc.pop("text_model", None)
    doc.pop("serial", None)
    doc["device_id"] = f"{settings.device_id[:58]}-bench"
    doc["tasks"] = [{"name": TASK, "kind": "caption", "prompt": prompt, "trigger": "motion"}]
    doc["gate"] = {
        "motion_threshold": 1.0,
        "min_interval_s": NEVER_S,
        "max_interval_s": NEVER_S,
        "cooldown_s": 0,
        # the user's idle rate, reached soon: the idle phase measures what an idle camera costs
        "idle_fps": settings.gate.idle_fps,
        "idle_after_s": IDLE_AFTER_S,
    }
    doc["health"] = {"interval_s": health_s}
    m = mqtt.model_dump(mode="json", exclude_none=True)
    if mqtt.password is not None:
        m["password"] = mqtt.password.get_secret_value()
    if mqtt.tls is not None and mqtt.tls.key_password is not None:
        m["tls"]["key_password"] = mqtt.tls.key_password.get_secret_value()
    m.update(outbox_path=str(state_dir / "outbox.sqlite"), discovery=False, client_id=None)
    doc["mqtt"] = {k: v for k, v in m.items() if v is not None}
    return doc


# --------------------------------------------------------------------------- the daemon process


class _NotifySocket:
    """An AF_UNIX datagram socket in systemd's role: collects READY=1, STATUS=..."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._read, name="bench-notify", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.decode(errors="replace").splitlines():
                self.lines.append(line)
                if line == "READY=1":
                    self.ready.set()

    def close(self) -> None:
        self.sock.close()
        self._thread.join(2)


class DaemonProcess:
    """One `edge run --config <bench config>` child and its worker, with psutil handles on both."""

    def __init__(self, doc: dict[str, Any], workdir: Path, token_times: Path | None = None) -> None:
        self.workdir = workdir
        self.token_times = token_times
        self.camera_source = redact_source(str(doc.get("camera", {}).get("source", "?")))
        self.config = workdir / "edge-bench.toml"
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold a password
        with os.fdopen(fd, "wb") as fh:
            tomli_w.dump(doc, fh)
        self.log_path = workdir / "daemon.log"
        self.notify = _NotifySocket(workdir / "notify.sock")
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("EDGE_")
        }  # all settings are in the file
        env.pop("WATCHDOG_USEC", None)
        env["NOTIFY_SOCKET"] = str(self.notify.path)
        if token_times is not None:  # the worker's token clock logs each generation's token times there
            env[TOKEN_TIMES_ENV] = str(token_times)
        self.started_wall = time.time()  # the observer stamps results with the wall clock
        self.started = time.monotonic()
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "edge.cli",
                    "--log-format",
                    "json",
                    "run",
                    "--config",
                    str(self.config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=workdir,
            )
        self.ps = psutil.Process(self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds from spawn to READY=1 (model loaded, first frame read)."""
        deadline = time.monotonic() + timeout_s
        while not self.notify.ready.wait(0.2):
            if self.proc.poll() is not None:
                raise BenchError(f"the daemon exited with status {self.proc.returncode}: {self.last_error()}")
            if time.monotonic() > deadline:
                raise BenchError(f"the daemon was not ready within {timeout_s:.0f} s: {self.last_error()}")
        return time.monotonic() - self.started

    def token_steps(self) -> list[list[float]]:
        """Per generation so far, the worker's per-token decode times (ms); [] without the log."""
        if self.token_times is None or not self.token_times.exists():
            return []
        found = []
        for line in self.token_times.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                found.append([float(v) for v in json.loads(line)["steps_ms"]])
        return found

    def last_decode_window(self) -> tuple[float, float] | None:
        """The last generation's (first token, last token) on the monotonic clock; None without it."""
        if self.token_times is None or not self.token_times.exists():
            return None
        lines = self.token_times.read_text(encoding="utf-8").splitlines()
        with contextlib.suppress(ValueError, KeyError, TypeError, IndexError):
            t0, t1 = json.loads(lines[-1])["window_s"]
            return float(t0), float(t1)
        return None

    def worker(self) -> psutil.Process | None:
        with contextlib.suppress(psutil.Error):
            for child in self.ps.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "spawn_main" in " ".join(child.cmdline()):
                        return child
        return None

    def _log_docs(self) -> list[dict[str, Any]]:
        docs = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict):
                    docs.append(doc)
        return docs

    def load_ms(self) -> float | None:
        """The worker's model load time, as the supervisor logged it."""
        for doc in self._log_docs():
            m = _LOADED.search(str(doc.get("msg", "")))
            if m:
                return float(m.group(1))
        return None

    def last_error(self, levels: tuple[str, ...] = ("error", "critical"), contains: str = "") -> str:
        """The daemon's last logged problem (at `levels`, mentioning `contains`), for one-line errors."""
        bad = [d for d in self._log_docs() if d.get("level") in levels and contains in str(d.get("msg", ""))]
        if bad:
            return str(bad[-1].get("msg", ""))[:300]
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else "no log output"

    def stop(self, timeout_s: float) -> int | None:
        """SIGTERM and wait, as systemd stops it; SIGKILL after `timeout_s`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            code = None
        self.notify.close()
        return code


def cpu_s(proc: psutil.Process | None) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    if proc is None:
        return 0.0
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


def run_ns(pid: int) -> int | None:
    """On-CPU nanoseconds of a process's live threads (the scheduler's own account, not clock ticks);
    None where /proc has no schedstat."""
    total, seen = 0, False
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(OSError, ValueError, IndexError),
                open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as fh,
            ):
                total += int(fh.read().split()[0])
                seen = True
    return total if seen else None


class RunTimeSampler:
    """A thread that samples a process's run time (run_ns) on the monotonic clock every `every_s`,
    so the CPU it spent inside another process's window can be read off afterwards."""

    def __init__(self, pid: int, every_s: float = 0.02) -> None:
        self.samples: list[tuple[float, int]] = []
        self._pid, self._every = pid, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-run-ns", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            ns = run_ns(self._pid)
            if ns is not None:
                self.samples.append((time.monotonic(), ns))
            if self._stop.wait(self._every):
                return

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join(2)
        ns = run_ns(self._pid)
        if ns is not None:
            self.samples.append((time.monotonic(), ns))
        return self.samples


def pin(pids: list[int], cpus: list[int]) -> list[int]:
    """Put every thread of these processes on `cpus` (threads started later inherit it); the set
    applied, or [] where the platform cannot pin. A thread that ended meanwhile is skipped."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            for thread in psutil.Process(pid).threads():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(thread.id, cpus)
    return sorted(cpus)


def rss_mb(proc: psutil.Process | None) -> float | None:
    if proc is None:
        return None
    try:
        return float(proc.memory_info().rss) / 2**20
    except psutil.Error:
        return None


# --------------------------------------------------------------------------- the observer


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class ResultSample:
    """One result as the observer saw it. Latency is capture -> arrival here (~ the daemon's PUBACK);
    captured_at carries milliseconds, truncated, so latency reads up to 1 ms high."""

    received: float
    payload: dict[str, Any]

    @property
    def stats(self) -> dict[str, Any]:
        return dict(self.payload["stats"])

    @property
    def latency_ms(self) -> float | None:
        cap = self.payload.get("captured_at")
        return (self.received - _epoch(cap)) * 1000.0 if cap else None

    @property
    def pipeline_ms(self) -> float | None:
        """What the runtime adds to the generation: latency minus the generation's total_ms."""
        lat = self.latency_ms
        return None if lat is None else lat - float(self.stats["total_ms"])


class Observer:
    """Subscribes to the bench device's topics; sends commands and waits for their replies."""

    def __init__(self, mqtt: MqttSettings, topics: Topics) -> None:
        self.topics = topics
        self.client = new_client(mqtt, f"edge-bench-observer-{os.getpid()}")
        self._host, self._port = mqtt.host, mqtt.port
        self._lock = threading.Condition()
        self.results: list[ResultSample] = []
        self.health: list[tuple[float, dict[str, Any]]] = []
        self.events: list[dict[str, Any]] = []
        self._replies: dict[str, queue.SimpleQueue[dict[str, Any]]] = {}
        self._retained: set[str] = set()  # every retained topic of the bench device seen
        self._subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = self._on_message

    def start(self, timeout_s: float = 10.0) -> None:
        try:
            self.client.connect(self._host, self._port, keepalive=30)
        except OSError as err:
            raise BenchError(f"observer cannot connect to {self._host}:{self._port}: {err}") from None
        self.client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.stop()
            raise BenchError(
                f"observer: no subscription on {self._host}:{self._port} within {timeout_s:.0f} s"
            )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure:
            client.subscribe(f"{self.topics.root}/#", qos=1)

    def _on_message(self, _c: Client, _u: Any, msg: Message) -> None:
        now = time.time()
        topic = msg.topic
        if msg.retain or topic.endswith("/last"):
            with self._lock:
                self._retained.add(topic)
        try:
            doc = json.loads(msg.payload) if msg.payload else None
        except ValueError:
            return
        with self._lock:
            if topic.endswith("/result") and isinstance(doc, dict):
                self.results.append(ResultSample(now, doc))
            elif topic == self.topics.health and isinstance(doc, dict):
                self.health.append((now, doc))
            elif topic == self.topics.event and isinstance(doc, dict):
                self.events.append(doc)
            elif topic.startswith(f"{self.topics.root}/reply/") and isinstance(doc, dict):
                verb = topic.rsplit("/", 1)[-1]
                self._replies.setdefault(verb, queue.SimpleQueue()).put(doc)
            self._lock.notify_all()

    def wait_for(
        self,
        done: Callable[[list[ResultSample]], bool],
        timeout_s: float,
        alive: Callable[[], bool] | None = None,
    ) -> list[ResultSample]:
        """Block until `done(results so far)` (or timeout, or `alive()` turns false); the results."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not done(self.results) and time.monotonic() < deadline:
                if alive is not None and not alive():
                    break
                self._lock.wait(0.2)
            return list(self.results)

    def result(self, rid: str, timeout_s: float) -> ResultSample:
        """The result with this id (a capture reply names it; the result itself comes on its topic)."""
        found = self.wait_for(lambda rs: any(r.payload.get("id") == rid for r in rs), timeout_s)
        for sample in found:
            if sample.payload.get("id") == rid:
                return sample
        raise BenchError(f"result {rid} announced by a reply did not arrive within {timeout_s:.0f} s")

    def command(self, verb: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send cmd/{verb} and return the daemon's reply (CommandReply as a dict)."""
        replies = self._replies.setdefault(verb, queue.SimpleQueue())
        while not replies.empty():
            replies.get_nowait()
        self.client.publish(self.topics.command(verb), json.dumps(body), qos=1)
        try:
            reply = replies.get(timeout=timeout_s)
        except queue.Empty:
            raise BenchError(f"no reply to cmd/{verb} within {timeout_s:.0f} s") from None
        if not reply.get("ok"):
            raise BenchError(f"cmd/{verb} refused: {reply.get('error')}")
        return reply

    def clear_retained(self) -> None:
        """Remove the bench device's retained topics (status, state, each `last`, whatever else it
        retained) so it leaves nothing on a shared broker."""
        with self._lock:
            seen = set(self._retained)
        for topic in sorted(seen | {self.topics.status, self.topics.state}):
            self.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(2)
