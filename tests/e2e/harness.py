"""Run `edge run` as a subprocess the way systemd does: a config file, a real NOTIFY_SOCKET, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import tomli_w

from tests.helpers.notify import NotifyListener

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "models"


@dataclass
class DaemonProcess:
    config: Path
    proc: subprocess.Popen[str]
    log_path: Path
    notify: NotifyListener | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [k.pid for k in kids if "spawn_main" in " ".join(k.cmdline())]

    def wait_worker(self, timeout: float = 30.0, exclude: tuple[int, ...] = ()) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [p for p in self.worker_pids() if p not in exclude]
            if pids:
                return pids[0]
            time.sleep(0.1)
        raise AssertionError(f"no worker process within {timeout}s\n{self.log()[-3000:]}")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.alive():
            self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(
                f"daemon did not exit within {timeout}s of SIGTERM\n{self.log()[-3000:]}"
            ) from None


def write_config(path: Path, settings: dict[str, Any]) -> Path:
    path.write_text(tomli_w.dumps(settings))
    return path


def base_settings(tmp_path: Path, broker: Any, **sections: Any) -> dict[str, Any]:
    """A complete, fast configuration: testsrc camera, tiny vision model, the test broker."""
    cfg: dict[str, Any] = {
        "device_id": "cam-e2e",
        "camera": {
            "source": "testsrc",
            "width": 320,
            "height": 240,
            "fps": 10,
            "stall_s": 3,
            "reconnect_s": 1,
        },
        "gate": {"min_interval_s": 1, "max_interval_s": 600},
        "model": {
            "path": str(MODELS / "ort-phi3v-fp32"),
            "backend": "ort-genai",
            "providers": ["cpu"],
            "num_crops": 1,
            "max_new_tokens": 8,
        },
        "tasks": [{"name": "caption", "kind": "caption", "trigger": "interval", "interval_s": 1}],
        "watchdog": {
            "first_token_s": 5,
            "token_s": 3,
            "generation_s": 8,
            "total_s": 12,
            "backoff_initial_s": 0.2,
            "backoff_max_s": 1,
        },
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "outbox_path": str(tmp_path / "state" / "outbox.sqlite"),
            "message_expiry_s": 3600,
        },
        "health": {"interval_s": 1},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def start_daemon(
    tmp_path: Path,
    settings: dict[str, Any],
    *,
    notify: bool = True,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    name: str = "edge",
) -> DaemonProcess:
    config = write_config(tmp_path / f"{name}.toml", settings)
    log_path = tmp_path / f"{name}.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    environ.update(env or {})
    sock = None
    if notify:
        where = tmp_path / f"{name}-notify"  # not a folder named like a package in the daemon's cwd
        where.mkdir(exist_ok=True)
        sock = NotifyListener(where, watchdog_usec=2_000_000)
        environ.update(sock.env)
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environ,
            cwd=tmp_path,
            text=True,
        )
    return DaemonProcess(config=config, proc=proc, log_path=log_path, notify=sock)
