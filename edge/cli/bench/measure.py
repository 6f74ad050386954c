"""The measuring parts of `edge bench` that need no daemon: gating cost, the bare-loop process, a
local broker, and the statistics the report is made of.

The bare loop (edge/inference/bare_loop.py) runs as its own process, started by file path so it imports no
edge code, and is fed exactly the tensors the runtime's backend builds (our phi3v preprocessing,
our chat prompt): the overhead figure then compares the same model work on both sides.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge import inference
from edge.capture.testsrc import render_frame
from edge.config.settings import GateSettings, LocalModelSettings
from edge.core.errors import EdgeError
from edge.core.messages import Frame
from edge.imaging.gate import Gate
from edge.inference import phi3v_preprocess
from edge.inference.ort_genai import PROVIDERS as ORT_PROVIDERS  # a dict; the SDK loads lazily
from edge.inference.prompts import ImageSlot, chat_prompt, split_image_tags

# The baseline lives outside the package (it imports the SDKs directly): present in a source checkout,
# absent from a wheel, where `edge bench` skips the overhead part with a note saying so.
# shipped in edge.inference (the package that owns the runtime SDKs); run by its path, never imported
BARE_SCRIPT = Path(inference.__file__).with_name("bare_loop.py")


class BenchError(EdgeError):
    """A part of the benchmark could not run; the message says which and why."""


# --------------------------------------------------------------------------- statistics


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------- gating


def gate_cost_ms(gate: GateSettings, width: int, height: int, frames: int = 90, fps: float = 15.0) -> float:
    """Mean milliseconds of one gate decision on a moving width x height testsrc scene.

    The frames are rendered first; only `Gate.decide` (scale, grey, blur, diff, background update)
    is timed, i.e. what the trigger loop spends per frame when a motion task exists.
    """
    rendered = [render_frame(n, width, height, fps) for n in range(30)]
    g = Gate(gate)
    for n in range(10):  # warm-up: first calls allocate OpenCV buffers
        g.decide(Frame(rendered[n % 30], float(n), float(n), n), n / fps)
    total = 0.0
    for n in range(frames):
        frame = Frame(rendered[n % 30], float(n), float(n), n)
        t0 = time.perf_counter()
        g.decide(frame, 10 + n / fps)
        total += time.perf_counter() - t0
    return total / frames * 1000.0


# --------------------------------------------------------------------------- the bare loop


@dataclass(frozen=True)
class BareInputs:
    path: Path  # .npz for bare_loop.py
    image_tokens: int
    num_crops: int
    preprocess_ms: float | None  # our phi3v preprocessing of the frame: in the runtime's ttft, not the bare's


def bare_inputs(
    model: LocalModelSettings, backend_vision: bool, prompt: str, width: int, height: int, out: Path
) -> BareInputs:
    """The inputs the runtime's backend would build for a width x height frame, for the bare loop."""
    frame = render_frame(0, width, height, 15.0)
    text = chat_prompt(prompt, system=model.system_prompt, num_images=1 if backend_vision else 0)
    arrays: dict[str, Any] = {}
    image_tokens = 0
    preprocess_ms = None
    if model.backend == "ort-genai":
        pieces = [p.index if isinstance(p, ImageSlot) else p for p in split_image_tags(text)]
        meta: dict[str, Any] = {"pieces": pieces}
        if backend_vision:
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                hd = phi3v_preprocess.hd_transform(frame, model.num_crops)
                times.append((time.perf_counter() - t0) * 1000.0)
            preprocess_ms = round(statistics.median(times), 2)
            arrays["pixel_values"] = hd.pixel_values[None]
            arrays["image_sizes"] = np.array([hd.size], np.int64)
            arrays["num_image_tokens"] = np.array([[hd.num_tokens]], np.int64)
            image_tokens = hd.num_tokens
    else:
        meta = {"prompt": text}
        if backend_vision:
            arrays["frame_rgb"] = np.ascontiguousarray(frame[:, :, ::-1])
            _, _, pad_h, pad_w = phi3v_preprocess.hd_size(height, width, model.num_crops)
            image_tokens = phi3v_preprocess.image_token_count(pad_w, pad_h)  # as VLMPipeline counts
    np.savez(out, meta=np.array(json.dumps(meta)), **arrays)
    return BareInputs(out, image_tokens, model.num_crops, preprocess_ms)


def bare_provider(model: LocalModelSettings, used: str) -> tuple[str, dict[str, str]]:
    """The runtime's spelling of the provider the daemon ended up on, and its configured options."""
    opts: dict[str, str] = {}
    for key, value in model.provider_options.items():
        if key.strip().lower() == used.strip().lower():
            opts = dict(value)
    if model.backend == "ort-genai":
        return ORT_PROVIDERS.get(used.strip().lower(), used), opts
    return used.strip().upper(), opts


class BareProcess:
    """bare_loop.py as a child process: load once, then one generation per request."""

    def __init__(
        self, model: LocalModelSettings, provider: str, options: dict[str, str], timeout_s: float
    ) -> None:
        assert model.path is not None
        cmd = [
            sys.executable,
            str(BARE_SCRIPT),
            "--backend",
            model.backend,
            "--path",
            str(model.path),
            "--provider",
            provider,
            "--num-crops",
            str(model.num_crops),
            "--provider-options",
            json.dumps(options),
        ]
        if model.threads:
            cmd += ["--threads", str(model.threads)]
        self._timeout = timeout_s
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        hello = _read_line(self._proc, timeout_s, "bare loop")
        if not hello.get("ok"):
            self.close()
            raise BenchError(f"bare runtime loop could not load the model: {hello.get('error')}")
        self.load_ms = float(hello["load_ms"])
        self.pid = int(hello["pid"])

    def generate(self, inputs: BareInputs, max_new: int) -> dict[str, Any]:
        reply = _ask(self._proc, {"inputs": str(inputs.path), "max_new": max_new}, self._timeout, "bare loop")
        if not reply.get("ok"):
            raise BenchError(f"bare runtime loop failed: {reply.get('error')}")
        return reply

    def close(self) -> None:
        _close(self._proc)


class ProbeProcess:
    """edge/inference/overhead_probe.py as a child process: the model loaded once through the
    daemon's own loader, then one round (the daemon's job path, the bare loop, the bare loop again)
    per request. Started with `-m`: unlike the bare loop it is edge code on purpose."""

    def __init__(self, model_json: Path, frame: Path, prompt: str, timeout_s: float) -> None:
        cmd = [sys.executable, "-m", "edge.inference.overhead_probe", "--model", str(model_json)]
        cmd += ["--frame", str(frame), "--prompt", prompt]
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
        self._timeout = timeout_s
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        hello = _read_line(self._proc, timeout_s, "in-process probe")
        if not hello.get("ok"):
            self.close()
            raise BenchError(f"the in-process probe could not load the model: {hello.get('error')}")
        self.load_ms = float(hello["load_ms"])
        self.pid = int(hello["pid"])

    def round(self, i: int, max_new: int) -> dict[str, Any]:
        """{"a": the daemon's path, "b": the bare loop, "b2": the bare loop again}, each a run's stats."""
        reply = _ask(self._proc, {"round": i, "max_new": max_new}, self._timeout, "in-process probe")
        if not reply.get("ok"):
            raise BenchError(f"the in-process probe failed: {reply.get('error')}")
        return reply

    def close(self) -> None:
        _close(self._proc)


def _ask(proc: subprocess.Popen[str], request: dict[str, Any], timeout_s: float, what: str) -> dict[str, Any]:
    """One JSON-lines request to a bench child and its one-line answer ({"ok": false, ...} if none)."""
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(request) + "\n")
    proc.stdin.flush()
    return _read_line(proc, timeout_s, what)


def _close(proc: subprocess.Popen[str]) -> None:
    """End a bench child: its stdin closed is its signal to exit; killed if it does not."""
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _read_line(proc: subprocess.Popen[str], timeout_s: float, what: str) -> dict[str, Any]:
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout_s)
    if not out or not out[0]:
        code = proc.poll()
        why = f"exited with status {code}" if code is not None else f"no answer within {timeout_s:.0f} s"
        return {"ok": False, "error": f"{what} process {why}"}
    result: dict[str, Any] = json.loads(out[0])
    return result


# --------------------------------------------------------------------------- a local broker


def _free_port() -> int:
    """A free loopback port below the ephemeral range (a client retrying a stopped broker on a port
    inside it could connect to itself)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(max(1024, low - 12000), low - 1)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchError("no free local port for mosquitto")


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


class LocalBroker:
    """A throw-away anonymous mosquitto on 127.0.0.1 (no persistence), for when no broker answers."""

    def __init__(self, directory: Path) -> None:
        exe = mosquitto_binary()
        if exe is None:
            raise BenchError("mosquitto is not installed (apt install mosquitto)")
        self.host, self.port = "127.0.0.1", _free_port()
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "mosquitto.conf"
        lines = [
            "allow_anonymous true",
            "persistence false",
            f"log_dest file {directory / 'mosquitto.log'}",
            "max_queued_messages 20000",
            # Without it a result forwarded right after another message (a health) waits for the
            # subscriber's delayed ACK (Nagle): up to 40 ms of latency that is the broker's, not ours.
            "set_tcp_nodelay true",
            f"listener {self.port} {self.host}",
        ]
        if os.geteuid() == 0:
            lines.insert(0, f"user {getpass.getuser()}")  # else it drops to 'mosquitto' and cannot read tmp
        conf.write_text("\n".join(lines) + "\n")
        self._proc = subprocess.Popen(
            [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BenchError(f"mosquitto exited with status {self._proc.returncode}")
            with socket.socket() as s:
                if s.connect_ex((self.host, self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise BenchError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
