"""Several cameras through one worker: capture + gate CPU per camera, results per camera per minute
under a saturated worker, and the main process's RSS.

    .venv/bin/python benchmarks/multicam_bench.py [--seconds 60] [--warmup 15] [--interval 0.02]

The real daemon (edge.daemon.app.Daemon, in this process so its threads can be measured by name)
with 4 cameras at 640x480, 15 fps: the test pattern, a local HTTP MJPEG server, a video file and a
second MJPEG stream; the tiny fixture model on the CPU; two tasks on every camera, an interval
caption due every `--interval` seconds (far more than one worker can do: it is saturated) and a
motion task (so every frame of every camera goes through its gate). A mosquitto started here
carries the results; a subscriber counts them per camera.

Prints per camera: capture CPU (its grabber's supervisor and reader threads: decoding, validation;
for the test pattern also rendering), gate CPU (time in its gate's decide, on the trigger thread),
frames, results per minute and queue drops; the max/min ratio of results per camera (fairness: the
round robin should keep it near 1, the issue asks <= 1.5); and this process's RSS (an upper bound
for the daemon's main process: it also holds the MJPEG servers and the subscriber). CPU used
outside Python threads (FFmpeg's own decoder threads for the file) is not attributed to a camera.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.config.sources import load_settings  # noqa: E402
from edge.daemon.app import Daemon  # noqa: E402
from edge.imaging import gate as gate_module  # noqa: E402
from tests.plugins.mosquitto import Broker, Collector  # noqa: E402
from tests.plugins.streams import MjpegServer, make_videos  # noqa: E402

MODEL = REPO / "tests" / "fixtures" / "models" / "ort-phi3v-fp32"
SIZE = (640, 480)
FPS = 15.0

gate_cpu: collections.Counter[str] = collections.Counter()
_decide = gate_module.Gate.decide


def _timed_decide(self: Any, frame: Any, now: float) -> Any:
    t0 = time.thread_time()
    try:
        return _decide(self, frame, now)
    finally:
        gate_cpu[frame.camera] += time.thread_time() - t0


def thread_cpu() -> dict[str, float]:
    """CPU seconds per camera, summed over the threads named capture-{camera}[-reader{n}]."""
    by_id = {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}
    out: collections.Counter[str] = collections.Counter()
    for t in threading.enumerate():
        if t.name.startswith("capture-") and t.native_id in by_id:
            camera = t.name[len("capture-") :].split("-reader")[0]
            out[camera] += by_id[t.native_id]
    return dict(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--interval", type=float, default=0.02, help="caption interval per camera (s)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="multicam-"))
    (tmp / "videos").mkdir()
    videos = make_videos(tmp / "videos", fps=FPS, size=SIZE)
    streams = [MjpegServer(fps=FPS, size=SIZE), MjpegServer(fps=FPS, size=SIZE)]
    broker = Broker(tmp / "broker")
    broker.start()
    for s in streams:
        s.start()
    common = {"width": SIZE[0], "height": SIZE[1], "fps": FPS}
    cameras = [
        {"name": "pattern", "source": "testsrc", **common},
        {"name": "mjpeg", "source": streams[0].url, **common},
        {"name": "file", "source": str(videos.moving), **common},
        {"name": "mjpeg2", "source": streams[1].url, **common},
    ]
    overrides = [
        "device_id=bench",
        f"cameras={_toml(cameras)}",
        f'model={{path="{MODEL}", backend="ort-genai", providers=["cpu"], num_crops=1, max_new_tokens=48}}',
        f'tasks=[{{name="caption", trigger="interval", interval_s={args.interval}}}, '
        '{name="moving", trigger="motion"}]',
        "gate={min_interval_s=1.0, max_interval_s=600}",
        f'mqtt={{host="{broker.host}", port={broker.port}, outbox_path="{tmp / "outbox.sqlite"}"}}',
        "health.interval_s=5",
    ]
    loaded = load_settings(overrides=overrides, environ={})
    gate_module.Gate.decide = _timed_decide  # type: ignore[method-assign]
    sub = Collector(broker, "edge/bench/+/+/result").start()
    daemon = Daemon(loaded)
    try:
        daemon.start()
        stop = threading.Event()
        serve = threading.Thread(target=_serve, args=(daemon, stop), daemon=True)
        serve.start()
        time.sleep(args.warmup)
        parts = daemon._parts
        assert parts is not None
        p = parts.pipeline.current
        lane = p.vision

        def snap() -> dict[str, Any]:
            return {
                "t": time.monotonic(),
                "cpu": thread_cpu(),
                "gate": dict(gate_cpu),
                "frames": {n: g.stats().frames for n, g in p.grabbers.items()},
                "results": collections.Counter(
                    m.topic.split("/")[2] for m in sub.on("edge/bench/+/+/result")
                ),
                "drops": dict(lane.queue.stats.by_camera),
                "jobs": parts.pipeline.current.vision.executor.deps.counters.get("jobs"),
            }

        a = snap()
        time.sleep(args.seconds)
        b = snap()
        rss = psutil.Process().memory_info().rss / 2**20
        stop.set()
    finally:
        daemon.stop()
        sub.stop()
        for s in streams:
            s.stop()
        broker.stop()
    dt = b["t"] - a["t"]
    print(
        f"4 cameras {SIZE[0]}x{SIZE[1]} @ {FPS:.0f} fps, {dt:.0f} s measured after {args.warmup:.0f} s warm-up"
    )
    print(
        f"worker: {(b['jobs'] - a['jobs']) / dt:.2f} jobs/s (caption due every {args.interval} s per camera)"
    )
    print(
        f"{'camera':8} {'capture CPU':>12} {'gate CPU':>9} {'fps':>5} {'results/min':>12} {'queue drops':>12}"
    )
    per_min = {}
    for c in (cam["name"] for cam in cameras):
        cap = (b["cpu"].get(c, 0) - a["cpu"].get(c, 0)) / dt * 100
        gate = (b["gate"].get(c, 0) - a["gate"].get(c, 0)) / dt * 100
        fps = (b["frames"][c] - a["frames"][c]) / dt
        per_min[c] = (b["results"][c] - a["results"][c]) / dt * 60
        drops = b["drops"].get(c, 0) - a["drops"].get(c, 0)
        print(f"{c:8} {cap:11.1f}% {gate:8.2f}% {fps:5.1f} {per_min[c]:12.1f} {drops:12d}")
    lo, hi = min(per_min.values()), max(per_min.values())
    print(f"results per camera max/min: {hi / lo if lo else float('inf'):.2f} (want <= 1.5)")
    print(f"main process RSS: {rss:.0f} MiB (with this benchmark's MJPEG servers and subscriber)")
    return 0


def _serve(daemon: Daemon, stop: threading.Event) -> None:
    parts = daemon._parts
    assert parts is not None
    while not stop.wait(0.5):
        parts.state.update()
        parts.health.tick()


def _toml(cameras: list[dict[str, Any]]) -> str:
    def value(v: Any) -> str:
        return f'"{v}"' if isinstance(v, str) else str(v)

    return (
        "[" + ", ".join("{" + ", ".join(f"{k}={value(v)}" for k, v in c.items()) + "}" for c in cameras) + "]"
    )


if __name__ == "__main__":
    sys.exit(main())
