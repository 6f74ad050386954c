#!/usr/bin/env python3
"""Memory around the model: what the main process and the worker hold, and what each import costs.

    python benchmarks/memory.py run [--profile demo] [--camera testsrc|images] [--seconds 30] [--set K=V ...]
    python benchmarks/memory.py imports

`run` starts `edge run --profile PROFILE` against a private mosquitto on a free port (a fresh outbox,
the daemon's own environment otherwise), waits for the first result on MQTT, then samples the main
process and the worker once a second for `--seconds`: RSS, PSS and USS (psutil's memory_full_info,
from /proc/PID/smaps) and the anonymous part of RSS (/proc/PID/smaps_rollup), so shared library
pages are told apart from the heap. `--camera images` points the camera at a folder of JPEGs written
here (a file camera: every frame is a JPEG decode) instead of the test pattern. It also lists the
main process's largest mappings, and which runtime libraries are mapped into each process at all
(cv2, onnxruntime, openvino: a model-side library in the main process, or OpenCV in the worker of a
runtime that takes arrays, is memory spent for nothing).

`imports` runs a fresh interpreter per line and reports the cumulative RSS/USS after each of the
main process's big imports in the order `edge run` meets them, then the top-level packages that
`import edge.daemon.app` (what `edge run` loads) leaves in sys.modules.

Prints tables; asserts nothing. Timings are not the point here, but the load average is printed:
RSS does not depend on it, start-up time does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
MB = 2**20
RUNTIME_LIBS = ("cv2", "libopencv", "onnxruntime", "openvino", "libtorch", "tokenizers")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mosquitto(directory: Path, port: int) -> subprocess.Popen[bytes]:
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\n" + ("user root\n" if os.geteuid() == 0 else "")
    )
    proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("mosquitto did not start")


def write_images(folder: Path, count: int = 4) -> None:
    """A file camera's folder: the demo world's scenes as JPEGs (the demo model names their shapes)."""
    import numpy as np

    from edge.capture import demo_world

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rng = np.random.default_rng([4242, i])
        scene = demo_world.random_scene(rng, n_shapes=1 + i % 3, size=(640, 480))
        image = demo_world.draw(scene, rng, overlay=False, jpeg=False)
        from edge.imaging.opencv import cv2

        assert cv2.imwrite(str(folder / f"scene{i}.jpg"), image)


def smaps_rollup(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0]) * 1024
    return out


def sample(pid: int) -> dict[str, float]:
    p = psutil.Process(pid)
    full = p.memory_full_info()
    roll = smaps_rollup(pid)
    return {
        "rss": full.rss / MB,
        "pss": full.pss / MB,
        "uss": full.uss / MB,
        "anon": roll.get("Anonymous", 0) / MB,
        "threads": float(p.num_threads()),
    }


def mappings(pid: int, top: int) -> tuple[list[tuple[str, float]], list[str]]:
    """The largest mappings by RSS, grouped by file ([anon] for the heap and thread arenas), and the
    runtime libraries mapped at all."""
    by_file: Counter[str] = Counter()
    name = "?"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            name = head[5] if len(head) > 5 else "[anon]"
            if "site-packages/" in name:
                name = name.split("site-packages/", 1)[1]
        elif head and head[0] == "Rss:":
            by_file[name] += int(head[1]) * 1024
    libs = sorted({f for f in by_file if any(lib in f for lib in RUNTIME_LIBS)})
    return [(f, b / MB) for f, b in by_file.most_common(top)], libs


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="edge-memory-"))
    port = free_port()
    broker = start_mosquitto(workdir, port)
    device = "mem-bench"
    first = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"mem-{uuid.uuid4().hex[:8]}")
    sub.on_message = lambda *_a: first.set()
    subscribed = threading.Event()
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.connect("127.0.0.1", port)
    sub.subscribe(f"edge/{device}/+/+/result", 1)
    sub.loop_start()
    subscribed.wait(10)
    sets = [f"mqtt.port={port}", f'device_id="{device}"', f'mqtt.outbox_path="{workdir / "outbox.sqlite"}"']
    if args.camera == "images":
        write_images(workdir / "camera")
        sets.append(f'camera.source="{workdir / "camera"}"')
    argv = [sys.executable, "-m", "edge.cli", "run", "--profile", args.profile]
    for s in sets + args.overrides:
        argv += ["--set", s]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    log_path = workdir / "edge.log"
    rows: dict[str, list[dict[str, float]]] = {"main": [], "worker": [], "tracker": []}
    top: list[tuple[str, float]] = []
    libs: list[str] = []
    worker_libs: list[str] = []
    with log_path.open("w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    try:
        if not first.wait(300) or proc.poll() is not None:
            raise SystemExit(f"no result in 300 s:\n{log_path.read_text(errors='replace')[-3000:]}")
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            rows["main"].append(sample(proc.pid))
            for kid in psutil.Process(proc.pid).children(recursive=True):
                # spawn's children: the worker, and multiprocessing's resource tracker
                who = "tracker" if "resource_tracker" in " ".join(kid.cmdline()) else "worker"
                rows[who].append(sample(kid.pid))
            time.sleep(1)
        top, libs = mappings(proc.pid, args.top)
        for kid in psutil.Process(proc.pid).children(recursive=True):
            if "resource_tracker" not in " ".join(kid.cmdline()):
                worker_libs = mappings(kid.pid, 0)[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sub.loop_stop()
        sub.disconnect()
        broker.kill()
        broker.wait()
    load = Path("/proc/loadavg").read_text().split()[:3]
    out = {
        "profile": args.profile,
        "camera": args.camera,
        "overrides": args.overrides,
        "seconds": args.seconds,
        "loadavg": " ".join(load),
        **{who: summarize(r) for who, r in rows.items()},
        "main_top_mappings_mb": [(f, round(v, 1)) for f, v in top],
        "main_runtime_libs": libs,
        "worker_runtime_libs": worker_libs,
    }
    shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"edge run --profile {args.profile} (camera: {args.camera}), {args.seconds} s after the first result"
    )
    print(f"load average {out['loadavg']}")
    print(f"{'':8} {'RSS':>14} {'PSS':>14} {'USS':>14} {'anon':>14} {'threads':>8}   (MB: median [min-max])")
    for who in ("main", "worker", "tracker"):
        s = out[who]
        if s:
            cells = " ".join(f"{s[k]['median']:6.1f} [{s[k]['min']:.0f}-{s[k]['max']:.0f}]".rjust(14)
                             for k in ("rss", "pss", "uss", "anon"))  # fmt: skip
            print(f"{who:8} {cells} {s['threads']['median']:8.0f}")
    print("main process, largest mappings by RSS (MB):")
    for f, v in out["main_top_mappings_mb"]:
        print(f"  {v:6.1f}  {f}")
    print(f"runtime libraries mapped in the main process: {', '.join(libs) or 'none'}")
    print(f"runtime libraries mapped in the worker: {', '.join(worker_libs) or 'none'}")
    return 0


def summarize(rows: list[dict[str, float]]) -> dict[str, dict[str, float]] | None:
    if not rows:
        return None
    return {
        k: {
            "median": round(statistics.median(r[k] for r in rows), 1),
            "min": round(min(r[k] for r in rows), 1),
            "max": round(max(r[k] for r in rows), 1),
        }
        for k in rows[0]
    }


# What `edge run` imports, in the order it meets them; "pydantic.main" is where pydantic really loads
# (`import pydantic` alone is lazy). OpenCV is not among them: only a camera read through
# cv2.VideoCapture, a non-JPEG image or a shrink by another factor loads it (see `run`'s mappings).
IMPORT_STEPS = (
    "numpy",
    "simplejpeg",
    "pydantic",
    "pydantic.main",
    "paho.mqtt.client",
    "edge.config.sources",
    "edge.cli.main",
    "edge.daemon.app",
)
_STEP_CODE = """
import importlib, json, sys, psutil
p = psutil.Process()
def mem():
    m = p.memory_full_info()
    roll = open("/proc/self/smaps_rollup").read().split("Anonymous:")[1].split()[0]
    return [m.rss, m.uss, int(roll) * 1024]
out = [["python", *mem(), len(sys.modules)]]
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except ImportError:
        out.append([name + " (not installed)", *mem(), len(sys.modules)])
        continue
    out.append([name, *mem(), len(sys.modules)])
import edge.daemon.app
tops = {}
for m in sys.modules:
    tops[m.split(".")[0]] = tops.get(m.split(".")[0], 0) + 1
print(json.dumps({"steps": out, "tops": tops}))
"""


def imports(args: argparse.Namespace) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    # not run from the checkout, so that PYTHONPATH can point at another tree (a before/after)
    res = subprocess.run([sys.executable, "-c", _STEP_CODE, json.dumps(IMPORT_STEPS)],
                         capture_output=True, text=True, cwd=tempfile.gettempdir(), env=env, check=True)  # fmt: skip
    data = json.loads(res.stdout)
    if args.json:
        print(json.dumps(data))
        return 0
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"fresh interpreter, cumulative after each import (load average {load})")
    print(
        f"{'import':20} {'RSS MB':>8} {'+':>6} {'USS MB':>8} {'+':>6} {'anon MB':>8} {'+':>6} {'modules':>8}"
    )
    prev = None
    for name, *mb, n in data["steps"]:
        cells = [f"{v / MB:8.1f} {'' if prev is None else f'{(v - p) / MB:+6.1f}':>6}"
                 for v, p in zip(mb, prev or mb, strict=True)]  # fmt: skip
        print(f"{name:20} {' '.join(cells)} {n:8d}")
        prev = mb
    tops = sorted(data["tops"].items(), key=lambda kv: -kv[1])
    print("top-level packages after `import edge.daemon.app` (modules):")
    print("  " + ", ".join(f"{k} {v}" for k, v in tops if v > 1 and not k.startswith("_")))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run", help="RSS/PSS/USS of a running daemon's main process and worker")
    r.add_argument("--profile", default="demo")
    r.add_argument("--camera", choices=("testsrc", "images"), default="testsrc")
    r.add_argument("--seconds", type=float, default=30)
    r.add_argument("--top", type=int, default=12, help="largest mappings of the main process to list")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--json", action="store_true")
    i = sub.add_parser("imports", help="cumulative RSS of the main process's imports")
    i.add_argument("--json", action="store_true")
    args = ap.parse_args()
    return run(args) if args.what == "run" else imports(args)


if __name__ == "__main__":
    sys.exit(main())
