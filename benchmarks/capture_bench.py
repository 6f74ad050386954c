"""Capture cost: per-frame grab + validate + gate at 640x480 and 1920x1080, and the CPU the capture
threads use at 15 fps. Prints tables; asserts nothing.

    python benchmarks/capture_bench.py [--frames 200] [--seconds 6] [--all-cores]

By default OpenCV is held to one thread and the process to one CPU, as on a busy Pi where the model
owns the other cores. "grab" is what the source costs per frame: rendering (testsrc), decoding an
MJPEG AVI (file), decoding one JPEG part (HTTP MJPEG). CPU% is of one core, counting only the
capture threads (reader + supervisor) and a consumer that gates every frame, not the test server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import psutil

from edge.capture import Grabber
from edge.capture.testsrc import TestSource, render_frame
from edge.config.settings import CameraSettings, GateSettings
from edge.core.messages import Frame
from edge.imaging.frames import prepare_image
from edge.imaging.gate import Gate
from edge.imaging.imageio import decode_image_bytes

SIZES = [(640, 480), (1920, 1080)]


def make_video(path: Path, width: int, height: int, frames: int, fps: float) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    for n in range(frames):
        writer.write(render_frame(n, width, height, fps))
    writer.release()


def jpegs(width: int, height: int, count: int) -> list[bytes]:
    return [cv2.imencode(".jpg", render_frame(n, width, height, 15.0))[1].tobytes() for n in range(count)]


def _file_reader(cap: cv2.VideoCapture) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        ok, frame = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = cap.read()
        return frame

    return read


def _jpeg_decoder(parts: list[bytes]) -> Callable[[], np.ndarray]:
    counter = iter(range(10**9))
    return lambda: decode_image_bytes(parts[next(counter) % len(parts)])


def per_frame(grab: Callable[[], np.ndarray], frames: int) -> dict[str, float]:
    """Median milliseconds of each stage over `frames` frames (after a short warm-up)."""
    gate = Gate(GateSettings())
    stages: dict[str, list[float]] = {"grab": [], "validate": [], "gate": [], "total": []}
    for n in range(frames + 5):
        t0 = time.perf_counter()
        raw = grab()
        t1 = time.perf_counter()
        image = prepare_image(raw, None)
        t2 = time.perf_counter()
        gate.decide(Frame(image, 0.0, 0.0, n), n / 15.0)
        t3 = time.perf_counter()
        if n >= 5:
            for key, value in (
                ("grab", t1 - t0),
                ("validate", t2 - t1),
                ("gate", t3 - t2),
                ("total", t3 - t0),
            ):
                stages[key].append(value * 1000)
    return {k: statistics.median(v) for k, v in stages.items()} | {
        "gate_p95": sorted(stages["gate"])[int(0.95 * frames)]
    }


def bench_per_frame(frames: int, tmp: Path) -> None:
    print(f"\n## Per-frame cost, ms (median of {frames}; gate p95 in brackets)\n")
    print("| size | source | grab | validate | gate | total |")
    print("|---|---|---:|---:|---:|---:|")
    for width, height in SIZES:
        src = TestSource(width, height, 15.0, realtime=False)
        src.open()
        video = tmp / f"bench_{width}x{height}.avi"
        make_video(video, width, height, min(frames + 10, 120), 15.0)
        cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
        cases = {
            "testsrc": src.read,
            "file (MJPEG AVI)": _file_reader(cap),
            "HTTP MJPEG part": _jpeg_decoder(jpegs(width, height, 10)),
        }
        for name, grab in cases.items():
            r = per_frame(grab, frames)
            print(
                f"| {width}x{height} | {name} | {r['grab']:.2f} | {r['validate']:.3f} | "
                f"{r['gate']:.2f} [{r['gate_p95']:.2f}] | {r['total']:.2f} |"
            )
        cap.release()
        src.close()


class _MjpegHandler(BaseHTTPRequestHandler):
    parts: list[bytes] = []
    fps = 15.0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        n = 0
        try:
            while True:
                data = self.parts[n % len(self.parts)]
                self.wfile.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data)
                )
                self.wfile.write(data + b"\r\n")
                n += 1
                time.sleep(1.0 / self.fps)
        except OSError:
            return


def capture_cpu(settings: CameraSettings, seconds: float) -> tuple[float, float, int, int]:
    """(CPU % of one core used by capture + gating threads, measured fps, frames, dropped)."""
    proc = psutil.Process()
    grabber = Grabber(settings)
    gate = Gate(GateSettings())
    stop = threading.Event()

    def consume() -> None:
        last = -1
        while not stop.is_set():
            frame = grabber.wait_frame(last, timeout=0.5)
            if frame is not None:
                last = frame.seq
                gate.decide(frame, time.monotonic())

    consumer = threading.Thread(target=consume, name="capture-bench-consumer", daemon=True)
    grabber.start()
    consumer.start()
    grabber.wait_frame(-1, timeout=10)
    time.sleep(1.0)  # warm-up: connection, first decode, caches

    def ours() -> float:
        ids = {t.native_id for t in threading.enumerate() if t.name.startswith("capture-")}
        return sum(t.user_time + t.system_time for t in proc.threads() if t.id in ids)

    c0, t0, f0 = ours(), time.monotonic(), grabber.stats().frames
    time.sleep(seconds)
    c1, t1, stats = ours(), time.monotonic(), grabber.stats()
    stop.set()
    consumer.join(2)
    grabber.stop(3)
    return 100 * (c1 - c0) / (t1 - t0), (stats.frames - f0) / (t1 - t0), stats.frames, stats.dropped


def bench_cpu(seconds: float, tmp: Path) -> None:
    print(f"\n## Capture CPU at 15 fps ({seconds:g} s each; % of one core, capture threads + gating)\n")
    print("| size | source | CPU % | fps | frames | dropped |")
    print("|---|---|---:|---:|---:|---:|")
    for width, height in SIZES:
        video = tmp / f"cpu_{width}x{height}.avi"
        make_video(video, width, height, 60, 15.0)
        _MjpegHandler.parts = jpegs(width, height, 15)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _MjpegHandler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="bench-mjpeg-server", daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/stream"
        cases = {
            "testsrc": CameraSettings(source="testsrc", width=width, height=height, fps=15),
            "file (MJPEG AVI)": CameraSettings(source=str(video), fps=15, pace="realtime", loop=True),
            "HTTP MJPEG": CameraSettings(source=url, fps=15),
        }
        for name, settings in cases.items():
            cpu, fps, frames, dropped = capture_cpu(settings, seconds)
            print(f"| {width}x{height} | {name} | {cpu:.1f} | {fps:.1f} | {frames} | {dropped} |")
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--all-cores", action="store_true", help="let OpenCV use every core")
    args = parser.parse_args()
    if not args.all_cores:
        cv2.setNumThreads(1)
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cores = "all cores" if args.all_cores else "1 core, cv2.setNumThreads(1)"
    print(
        f"# capture benchmark: OpenCV {cv2.__version__}, {cores}, {psutil.cpu_count()} CPUs on this machine"
    )
    with tempfile.TemporaryDirectory() as tmp:
        bench_per_frame(args.frames, Path(tmp))
        bench_cpu(args.seconds, Path(tmp))


if __name__ == "__main__":
    main()
