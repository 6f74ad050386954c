#!/usr/bin/env python3
"""Cold start: process start -> READY (sd_notify) -> first result on MQTT, for `edge run`.

    python benchmarks/cold_start.py [--runs 5] [--profile demo] [--set KEY=VALUE ...] [--json]

Restarts (`active_hours`, updates, crashes) make this a daily cost. Each run starts `edge run` as
systemd would (a NOTIFY_SOCKET datagram socket bound here), against a private mosquitto on a free
port, with a fresh outbox; a subscriber already on `{prefix}/{device}/+/+/result` timestamps the
first result. The clock starts just before the process is spawned, so Python start-up, imports,
config, camera open, the model load in the worker and the first generation are all inside.
The page cache is warm after the first run: run 1 is reported apart ("first"), the rest as median
and range. Asserts nothing.
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
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent


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


def one_run(
    workdir: Path, port: int, profile: str, overrides: list[str], device: str
) -> dict[str, float | None]:
    first_result = threading.Event()
    at: dict[str, float] = {}
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cold-{uuid.uuid4().hex[:8]}")

    def on_message(_c: object, _u: object, _m: object) -> None:
        if not first_result.is_set():
            at["result"] = time.monotonic()
            first_result.set()

    subscribed = threading.Event()
    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.connect("127.0.0.1", port)
    sub.subscribe(f"edge/{device}/+/+/result", 1)
    sub.loop_start()
    subscribed.wait(10)

    sock_path = workdir / f"notify-{device}.sock"
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(str(sock_path))
    ns.settimeout(0.2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    env["NOTIFY_SOCKET"] = str(sock_path)
    sets = [f"mqtt.port={port}", f'device_id="{device}"', f'mqtt.outbox_path="{workdir / device}.sqlite"']
    argv = [sys.executable, "-m", "edge.cli", "run", "--profile", profile]
    for s in sets + overrides:
        argv += ["--set", s]
    log = (workdir / f"{device}.log").open("w")
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        deadline = t0 + 300
        while "ready" not in at and time.monotonic() < deadline and proc.poll() is None:
            try:
                data = ns.recv(4096).decode(errors="replace")
            except TimeoutError:
                continue
            if "READY=1" in data.split("\n"):
                at["ready"] = time.monotonic()
        first_result.wait(max(0.0, deadline - time.monotonic()))
        rss = _rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        ns.close()
        sub.loop_stop()
        sub.disconnect()
    return {
        "ready_s": at["ready"] - t0 if "ready" in at else None,
        "first_result_s": at["result"] - t0 if "result" in at else None,
        **rss,
    }


def _rss_mb(pid: int) -> dict[str, float | None]:
    """RSS of the main process and of its worker(s), at the first result (MB)."""
    try:
        main = psutil.Process(pid)
        kids = main.children(recursive=True)
        return {
            "main_rss_mb": round(main.memory_info().rss / 2**20, 1),
            "worker_rss_mb": round(sum(k.memory_info().rss for k in kids) / 2**20, 1) if kids else None,
        }
    except psutil.NoSuchProcess:
        return {"main_rss_mb": None, "worker_rss_mb": None}


IMPORT_STEPS = ("numpy", "cv2", "pydantic", "pydantic.main", "paho.mqtt.client", "edge.daemon.app")


def import_costs() -> list[tuple[str, float]]:
    """Cumulative RSS of a fresh interpreter as the main process's big imports come in (MB)."""
    code = (
        "import psutil,importlib,json,sys;p=psutil.Process();out=[('python',p.memory_info().rss)]\n"
        f"for m in {IMPORT_STEPS!r}:\n importlib.import_module(m);out.append((m,p.memory_info().rss))\n"
        "print(json.dumps(out))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return [(m, round(v / 2**20, 1)) for m, v in json.loads(res.stdout)]


def summarize(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="edge-cold-"))
    port = free_port()
    broker = start_mosquitto(workdir, port)
    runs = []
    try:
        for i in range(args.runs):
            runs.append(one_run(workdir, port, args.profile, args.overrides, f"cold{i}"))
            if not args.json:
                print(f"run {i + 1}: {runs[-1]}", file=sys.stderr)
    finally:
        broker.kill()
        broker.wait()
    load = os.getloadavg()
    warm = runs[1:]
    out = {
        "profile": args.profile,
        "overrides": args.overrides,
        "cpus": os.cpu_count(),
        "loadavg_1m_at_end": round(load[0], 2),
        "first": runs[0] if runs else None,
        "ready_s": summarize([r["ready_s"] for r in warm if r["ready_s"] is not None]),
        "first_result_s": summarize([r["first_result_s"] for r in warm if r["first_result_s"] is not None]),
        "main_rss_mb": summarize([r["main_rss_mb"] for r in runs if r["main_rss_mb"] is not None]),
        "worker_rss_mb": summarize([r["worker_rss_mb"] for r in runs if r["worker_rss_mb"] is not None]),
        "import_rss_mb": import_costs(),
        "failed_runs": sum(r["first_result_s"] is None for r in runs),
    }
    if args.json:
        print(json.dumps(out))
    else:
        for key in ("ready_s", "first_result_s"):
            s = out[key]
            if s:
                print(
                    f"{key}: median {s['median']:.2f} s, range {s['min']:.2f}-{s['max']:.2f} s over {s['n']} warm runs"
                )
        for key in ("main_rss_mb", "worker_rss_mb"):
            s = out[key]
            if s:
                print(
                    f"{key} at the first result: median {s['median']:.0f} MB, range {s['min']:.0f}-{s['max']:.0f}"
                )
        print(
            "main-process imports, cumulative RSS MB: "
            + ", ".join(f"{m} {v}" for m, v in out["import_rss_mb"])
        )
        print(f"first (cold cache) run: {out['first']}; load average at the end: {out['loadavg_1m_at_end']}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if out["failed_runs"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
