"""Idle cost per camera: CPU-seconds per idle minute, and the motion-to-first-job delay.

    python benchmarks/idle_cost.py [--seconds 60] [--windows 6] [--trials 12]
                                   [--sources mjpeg,file] [--idle-fps 2] [--idle-after-s 10]

One camera at 1280x720, 15 fps, looking at a static scene with sensor noise (nothing moves): the
daemon's own path runs, a grabber and the trigger loop with a scheduler holding a motion caption
task and an event task (pre-roll 1, frame_interval_s 1; `--no-event`: without it), and no job ever runs (due jobs are only counted). The MJPEG
camera is a local HTTP server in a child process, so the process measured is the daemon side only;
the file source is a 720p15 MJPG AVI played in real time. CPU is the process's user + system time
(os.times) over `--windows` sub-windows of `--seconds` in all, given as % of one core with a 95 %
t-interval over the sub-windows, and by thread (capture reader + supervisor, trigger loop).

Delay (MJPEG only): after the camera has been quiet long enough to go to the idle rate, the server
switches to a moving scene at a random moment; the delay is from the first moving part the server
sent to the first motion job the scheduler made (the gate opening). p50 / p95 and a 95 % interval
of the median (order statistics) over `--trials`. The load average is printed: on a shared
machine the figures are an upper bound.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import random
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import psutil

from edge.capture import Grabber
from edge.config.settings import CameraSettings, GateSettings, TaskSettings
from edge.daemon.triggers import TriggerLoop
from edge.imaging.opencv import cv2  # configured as the daemon's (one thread, quiet logs)
from edge.pipeline.jobs import JobSpec, Scheduler

WIDTH, HEIGHT, FPS = 1280, 720, 15.0
T_95 = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26, 12: 2.20}


# --------------------------------------------------------------------------- scenes


def static_scene() -> np.ndarray:
    rng = np.random.default_rng(7)
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    img[:] = (70, 95, 110)
    for _ in range(40):
        x, y = int(rng.integers(0, WIDTH - 120)), int(rng.integers(0, HEIGHT - 120))
        w, h = int(rng.integers(30, 200)), int(rng.integers(30, 200))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(img, (x, y), (x + w, y + h), color, -1)
    return cv2.GaussianBlur(img, (3, 3), 0)


def noisy(img: np.ndarray, seed: int) -> np.ndarray:
    """Sensor noise (+-4 grey levels): a static scene still changes every pixel a little."""
    noise = np.random.default_rng(seed).integers(-4, 5, img.shape, dtype=np.int16)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def moving(img: np.ndarray, n: int) -> np.ndarray:
    """The scene with a bright box walking across it (~3.5 % of the pixels)."""
    out = img.copy()
    box = HEIGHT // 4
    x = (40 + 25 * n) % (WIDTH - box)
    cv2.rectangle(out, (x, HEIGHT // 2 - box // 2), (x + box, HEIGHT // 2 + box // 2), (240, 240, 240), -1)
    return noisy(out, 1000 + n)


def jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return bytes(buf.tobytes())


# --------------------------------------------------------------------------- MJPEG camera (child process)


def serve_mjpeg(port: Any, mode: Any, first_moving: Any) -> None:
    """A 720p15 MJPEG camera; `mode` 1 shows the moving scene, and the monotonic time of the first
    moving part sent after a switch goes to `first_moving` (CLOCK_MONOTONIC is system-wide)."""
    base = static_scene()
    still = [jpeg(noisy(base, i)) for i in range(8)]
    motion = [jpeg(moving(base, i)) for i in range(30)]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            period, due, n, was = 1.0 / FPS, time.monotonic(), 0, 0
            try:
                while True:
                    now_mode = int(mode.value)
                    data = motion[n % len(motion)] if now_mode else still[n % len(still)]
                    self.wfile.write(
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data)
                    )
                    self.wfile.write(data + b"\r\n")
                    self.wfile.flush()
                    if now_mode and not was:
                        first_moving.value = time.monotonic()
                    was, n = now_mode, n + 1
                    due += period
                    time.sleep(max(0.0, due - time.monotonic()))
            except OSError:
                return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port.value = server.server_address[1]
    server.serve_forever()


# --------------------------------------------------------------------------- the daemon's path


@dataclass
class Rig:
    grabber: Grabber
    scheduler: Scheduler
    loop: TriggerLoop
    stop: threading.Event
    motion_jobs: list[float]


def start_rig(source: str, gate: GateSettings, with_event: bool) -> Rig:
    camera = CameraSettings(source=source, width=WIDTH, height=HEIGHT, fps=FPS, pace="realtime", loop=True)
    tasks = [TaskSettings(name="caption", kind="caption", trigger="motion")]
    if with_event:
        tasks.append(TaskSettings(name="visit", kind="event", trigger="motion", preroll=1, frames=3))
    scheduler = Scheduler(tasks, gate, cameras=["main"])
    grabber = Grabber(camera)
    motion_jobs: list[float] = []

    def enqueue(spec: JobSpec) -> str:
        if spec.trigger == "motion" and spec.task.kind == "caption":
            motion_jobs.append(time.monotonic())
        return "queued"

    pipeline = SimpleNamespace(grabbers={"main": grabber})
    stop = threading.Event()
    loop = TriggerLoop(lambda: pipeline, scheduler, enqueue, stop)  # type: ignore[arg-type, return-value]
    grabber.start()
    if grabber.wait_frame(-1, timeout=15) is None:
        raise SystemExit(f"no frame from {source}")
    loop.start()
    return Rig(grabber, scheduler, loop, stop, motion_jobs)


def stop_rig(rig: Rig) -> None:
    rig.stop.set()
    rig.grabber.stop(3)


def t_interval(values: list[float]) -> tuple[float, float, float]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = T_95.get(len(values), 2.0) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def thread_cpu(prefixes: tuple[str, ...]) -> dict[str, float]:
    ids = {
        t.native_id: next(p for p in prefixes if t.name.startswith(p))
        for t in threading.enumerate()
        if t.name.startswith(prefixes)
    }
    out = dict.fromkeys(prefixes, 0.0)
    for t in psutil.Process().threads():
        if t.id in ids:
            out[ids[t.id]] += t.user_time + t.system_time
    return out


def measure_idle(rig: Rig, seconds: float, windows: int) -> dict[str, Any]:
    """% of one core over each sub-window: the whole process, and by thread."""
    per: list[float] = []
    threads = {"capture-": 0.0, "edge-triggers": 0.0}
    f0 = rig.grabber.stats().frames
    start = time.monotonic()
    for _ in range(windows):
        c0, th0, t0 = os.times(), thread_cpu(tuple(threads)), time.monotonic()
        time.sleep(seconds / windows)
        c1, th1, t1 = os.times(), thread_cpu(tuple(threads)), time.monotonic()
        per.append(100 * ((c1.user + c1.system) - (c0.user + c0.system)) / (t1 - t0))
        for k in threads:
            threads[k] += th1[k] - th0[k]
    elapsed = time.monotonic() - start
    mean, lo, hi = t_interval(per)
    return {
        "cpu": mean,
        "lo": lo,
        "hi": hi,
        "capture": 100 * threads["capture-"] / elapsed,
        "triggers": 100 * threads["edge-triggers"] / elapsed,
        "published_fps": (rig.grabber.stats().frames - f0) / elapsed,
        "jobs": len(rig.motion_jobs),
    }


def quantile_ci(values: list[float]) -> tuple[float, float, float, float]:
    """(p50, p95, and a ~95 % interval of the median by order statistics)."""
    s = sorted(values)
    n = len(s)
    half = 1.96 * math.sqrt(n) / 2
    lo, hi = max(0, math.floor(n / 2 - half)), min(n - 1, math.ceil(n / 2 + half) - 1)
    p95 = s[min(n - 1, math.ceil(0.95 * n) - 1)]
    return statistics.median(s), p95, s[lo], s[hi]


def measure_delay(rig: Rig, mode: Any, first_moving: Any, trials: int, quiet_s: float) -> list[float]:
    delays: list[float] = []
    for _ in range(trials):
        mode.value = 0
        time.sleep(quiet_s + random.uniform(0.0, 1.0))  # quiet long enough for the idle rate, random phase
        first_moving.value = 0.0
        before = len(rig.motion_jobs)
        mode.value = 1
        deadline = time.monotonic() + 10
        while len(rig.motion_jobs) == before and time.monotonic() < deadline:
            time.sleep(0.005)
        if len(rig.motion_jobs) > before and first_moving.value > 0:
            delays.append(rig.motion_jobs[before] - first_moving.value)
        time.sleep(0.5)
    mode.value = 0
    return delays


def make_file(folder: Path) -> Path:
    path = folder / "static_720p15.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    base = static_scene()
    for i in range(int(10 * FPS)):
        writer.write(noisy(base, i))
    writer.release()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle measurement per source")
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--trials", type=int, default=12, help="motion-to-first-job trials (MJPEG)")
    parser.add_argument("--sources", default="mjpeg,file")
    parser.add_argument("--idle-fps", type=float, default=None, help="gate.idle_fps (default: the setting's)")
    parser.add_argument("--idle-after-s", type=float, default=None, help="gate.idle_after_s")
    parser.add_argument(
        "--cv-threads", type=int, default=None, help="cv2.setNumThreads (default: the daemon's, 1)"
    )
    parser.add_argument(
        "--no-event", action="store_true", help="only the motion caption task (no event task with a pre-roll)"
    )
    args = parser.parse_args()
    gate_kwargs: dict[str, float] = {}
    if args.idle_fps is not None:
        gate_kwargs["idle_fps"] = args.idle_fps
    if args.idle_after_s is not None:
        gate_kwargs["idle_after_s"] = args.idle_after_s
    gate = GateSettings(**gate_kwargs)
    if args.cv_threads is not None:
        cv2.setNumThreads(args.cv_threads)
    settle = float(getattr(gate, "idle_after_s", 0.0)) + 2.0
    print(
        f"# idle cost: {WIDTH}x{HEIGHT} {FPS:g} fps, static scene; OpenCV {cv2.__version__} "
        f"({cv2.getNumThreads()} threads), "
        f"{psutil.cpu_count()} CPUs; gate {gate.model_dump()}; event task: {not args.no_event}"
    )
    print(f"load average before: {os.getloadavg()}")
    print(
        "\n| source | CPU % of a core [95 % CI] | CPU-s per idle min | capture thr % | trigger thr % | frames/s to gate |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    ctx = mp.get_context("fork")
    port, mode, first_moving = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("d", 0.0)
    server = ctx.Process(target=serve_mjpeg, args=(port, mode, first_moving), daemon=True)
    server.start()
    while port.value == 0:
        time.sleep(0.05)
    delays: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"mjpeg": f"http://127.0.0.1:{port.value}/stream", "file": str(make_file(Path(tmp)))}
        for name in args.sources.split(","):
            rig = start_rig(sources[name], gate, not args.no_event)
            time.sleep(settle)  # connection, first frames, then quiet long enough for the idle rate
            r = measure_idle(rig, args.seconds, args.windows)
            print(
                f"| {name} | {r['cpu']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}] | {r['cpu'] * 0.6:.2f} | "
                f"{r['capture']:.2f} | {r['triggers']:.2f} | {r['published_fps']:.1f} |"
            )
            if name == "mjpeg" and args.trials:
                delays = measure_delay(rig, mode, first_moving, args.trials, settle)
            stop_rig(rig)
    server.terminate()
    print(f"load average after: {os.getloadavg()}")
    if delays:
        p50, p95, lo, hi = quantile_ci([d * 1000 for d in delays])
        print(
            f"\nmotion -> first motion job (MJPEG, {len(delays)} of {args.trials} trials): "
            f"p50 {p50:.0f} ms [{lo:.0f}, {hi:.0f}], p95 {p95:.0f} ms, max {max(delays) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
