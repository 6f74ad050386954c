#!/usr/bin/env python3
"""The daemon's main-process RSS across model-restarting reloads.

    python benchmarks/reload_rss.py [--reloads 30] [--model tests/fixtures/models/ort-phi3v-fp32]

Runs `edge run` as a subprocess (testsrc camera, the tiny vision model, no broker: the daemon keeps
reconnecting, which costs nothing here), then changes `model.max_new_tokens` in its config file and
sends SIGHUP, `--reloads` times. Each reload restarts the vision worker (a new supervisor, worker
process and model load). After each reload has finished ("vision worker restarted" in the log, then
a short settle) it samples the main process's RSS, and prints a table: RSS after start, after each
reload, and the growth per reload (a least-squares slope over the second half, past any warm-up).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import tomli_w

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings(tmp: Path, model: Path, tokens: int) -> dict[str, object]:
    return {
        "device_id": "bench-reload",
        "camera": {"source": "testsrc", "width": 640, "height": 480, "fps": 10},
        "model": {"path": str(model), "backend": "ort-genai", "providers": ["cpu"], "max_new_tokens": tokens},
        "tasks": [{"name": "caption", "kind": "caption", "trigger": "interval", "interval_s": 1}],
        # a broker port nobody listens on: the daemon reconnects with backoff in the background
        "mqtt": {"host": "127.0.0.1", "port": free_port(), "outbox_path": str(tmp / "outbox.sqlite")},
        "health": {"interval_s": 5},
    }


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def wait_log(log: Path, needle: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.read_text(errors="replace").count(needle) >= count:
            return
        time.sleep(0.1)
    raise SystemExit(f"no {count}x {needle!r} in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def slope(ys: list[float]) -> float:
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / sum((i - mx) ** 2 for i in range(n))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reloads", type=int, default=30)
    ap.add_argument("--model", type=Path, default=ROOT / "tests/fixtures/models/ort-phi3v-fp32")
    ap.add_argument("--settle", type=float, default=1.5, help="seconds after each reload before sampling")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-reload-rss-") as d:
        tmp = Path(d)
        config, log = tmp / "edge.toml", tmp / "edge.log"
        config.write_text(tomli_w.dumps(settings(tmp, args.model, 8)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "NOTIFY_SOCKET"))}
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=tmp,
            )
        try:
            wait_log(log, "running:", 1, 120)
            time.sleep(args.settle * 2)
            base = rss_mb(proc.pid)
            rows: list[tuple[int, float]] = [(0, base)]
            for i in range(1, args.reloads + 1):
                config.write_text(tomli_w.dumps(settings(tmp, args.model, 8 + i % 2)))
                proc.send_signal(signal.SIGHUP)
                wait_log(log, "reload: vision worker restarted", i, 120)
                wait_log(log, "model loaded:", i + 1, 120)
                time.sleep(args.settle)
                rows.append((i, rss_mb(proc.pid)))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"main-process RSS over {args.reloads} model-restarting reloads ({args.model.name})")
    print(f"{'reload':>6} {'rss MB':>8} {'delta MB':>9}")
    for i, r in rows:
        print(f"{i:>6} {r:>8.1f} {r - base:>+9.1f}")
    half = [r for _, r in rows[len(rows) // 2 :]]
    print(f"start {base:.1f} MB, end {rows[-1][1]:.1f} MB, peak {max(r for _, r in rows):.1f} MB")
    print(f"growth per reload over the second half: {slope(half):+.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
