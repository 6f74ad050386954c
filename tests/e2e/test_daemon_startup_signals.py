"""SIGTERM and Ctrl-C during start-up stop the daemon within seconds.

Start-up waits for the first camera frame (up to 30 s) and for the model load (up to
watchdog.load_timeout_s); a signal arriving then was only acted on when the wait ended (26.7 s
measured). Both waits are made real here: a camera that accepts the connection and never sends a
byte (a local TCP server), and a worker whose model load stalls (a sitecustomize on the daemon's
PYTHONPATH, which the spawned worker imports too).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import DaemonProcess, base_settings, start_daemon
from tests.plugins.mosquitto import Collector

ROOT = "edge/cam-e2e"
STOP_WITHIN_S = 3.0

STALLED_LOAD = """
import os
import time

if os.environ.get("LIVE_TEST_STALL_LOAD"):
    import edge.inference.registry as _registry

    _real = _registry.load_backend

    def load_backend(settings):
        open(os.environ["LIVE_TEST_STALL_LOAD"], "w").close()  # the test waits for this
        time.sleep(600)
        return _real(settings)

    _registry.load_backend = load_backend
"""


@pytest.fixture
def silent_camera() -> Iterator[str]:
    """An HTTP camera address whose server accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, name="silent-camera", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/stream.mjpg"
    done.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


def _wait_log(d: DaemonProcess, needle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while needle not in d.log():
        assert d.alive(), d.log()[-3000:]
        assert time.monotonic() < deadline, f"no {needle!r} in {timeout}s\n{d.log()[-3000:]}"
        time.sleep(0.05)


def _stop_latency(d: DaemonProcess, sig: int) -> tuple[float, int]:
    t0 = time.monotonic()
    d.signal(sig)
    try:
        rc = d.proc.wait(60)
    except Exception:
        d.proc.kill()
        raise
    took = time.monotonic() - t0
    print(f"stopped {took:.2f}s after {signal.Signals(sig).name}")
    return took, rc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_waiting_for_the_first_frame(
    tmp_path: Path, mosquitto, silent_camera: str, sig: int
) -> None:
    sub = Collector(mosquitto, f"{ROOT}/status", persistent=True).start()
    settings = base_settings(tmp_path, mosquitto, camera={"source": silent_camera, "stall_s": 20})
    d = start_daemon(tmp_path, settings)
    try:
        sub.wait_topic(f"{ROOT}/status", timeout=30)  # connected: `offline` is owed on the way out
        _wait_log(d, "model loaded:", 60)  # now only the first frame is awaited (30 s)
        time.sleep(0.5)
        assert d.notify is not None and not d.notify.times_of("READY")
        took, rc = _stop_latency(d, sig)
    finally:
        if d.alive():
            d.proc.kill()
        sub.stop()
    assert took < STOP_WITHIN_S, f"stopped {took:.1f}s after {signal.Signals(sig).name}\n{d.log()[-3000:]}"
    assert rc == 0, d.log()[-3000:]
    assert [m.text for m in sub.on(f"{ROOT}/status")][-1] == "offline"
    assert d.notify.times_of("STOPPING", "1")
    assert "received " + signal.Signals(sig).name in d.log()


def test_sigterm_while_the_model_loads(tmp_path: Path, mosquitto) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(STALLED_LOAD)
    marker = tmp_path / "loading"
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "LIVE_TEST_STALL_LOAD": str(marker)}
    settings = base_settings(tmp_path, mosquitto, watchdog={"load_timeout_s": 120})
    d = start_daemon(tmp_path, settings, env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert d.alive() and time.monotonic() < deadline, d.log()[-3000:]
            time.sleep(0.05)
        worker = d.wait_worker(10)
        time.sleep(0.5)
        took, rc = _stop_latency(d, signal.SIGTERM)
    finally:
        if d.alive():
            d.proc.kill()
    assert took < STOP_WITHIN_S, f"stopped {took:.1f}s after SIGTERM\n{d.log()[-3000:]}"
    assert rc == 0, d.log()[-3000:]
    deadline = time.monotonic() + 5
    while worker in d.worker_pids() or _exists(worker):
        assert time.monotonic() < deadline, "the loading worker outlived the daemon"
        time.sleep(0.05)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
