"""`edge view` under a fleet's load: results stored per second, page times at a large store, RSS.

    .venv/bin/python benchmarks/view_bench.py ingest [--devices 100] [--seconds 60] [--engine sqlite|postgresql]
    .venv/bin/python benchmarks/view_bench.py pages [--rows 1000000] [--engine sqlite|postgresql]

`ingest`: `--devices` simulated devices publish 1 result/s each (QoS 1, the daemon's payloads, a
60 KB picture with every tenth) to a private mosquitto; `edge view` processes (one on SQLite, two
of one shared-subscription group on PostgreSQL) store them. Prints results/s stored, the lag
(published -> stored) at the end, and each view's RSS.

`pages`: a store filled with `--rows` results (100 devices x 2 cameras, captions from the demo
world, so words repeat as real captions do), then the overview, the timeline's first and 100th page,
a device's timeline and three searches, each requested 15 times over HTTP; median and the 95 %
interval of the median (order statistics) per page.

The PostgreSQL server is the tests' private one (initdb/pg_ctl on a temp folder, tests/plugins/postgres.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.capture import demo_world as S  # noqa: E402
from edge.core.messages import ModelPayload, ResultPayload, StatsPayload  # noqa: E402
from edge.view.schema import REBUILD_CAMERAS  # noqa: E402
from edge.view.server import ViewServer  # noqa: E402
from edge.view.store import ViewStore, open_store, search_text  # noqa: E402
from tests.plugins.mosquitto import Broker, free_port  # noqa: E402
from tests.plugins.postgres import Postgres  # noqa: E402

MODEL = ModelPayload(name="demo", backend="ort-genai", provider="cpu")
STATS = StatsPayload(prompt_tokens=20, image_tokens=313, new_tokens=14, ttft_ms=90.0, decode_tok_s=40.0,
                     total_ms=400.0, stop_reason="eos")  # fmt: skip


def payload(device: str, seq: int, text: str, camera: str, at: float) -> ResultPayload:
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"
    return ResultPayload(id=f"{device}-1-{seq}", device=device, camera=camera, task="caption", seq=seq,
                         captured_at=iso, published_at=iso, trigger="interval", text=text, model=MODEL,
                         stats=STATS)  # fmt: skip


def median_ci(samples: list[float]) -> tuple[float, float, float]:
    """Median and its 95 % interval from order statistics (binomial ranks)."""
    s = sorted(samples)
    n = len(s)
    half = 1.96 * np.sqrt(n) / 2
    lo, hi = max(0, int(np.floor(n / 2 - half))), min(n - 1, int(np.ceil(n / 2 + half)))
    return float(np.median(s)), s[lo], s[hi]


def store_url(engine: str, root: Path, pg: Postgres | None) -> str:
    if engine == "sqlite":
        return str(root / "view.db")
    assert pg is not None
    return pg.new_database()


def ingest(args: argparse.Namespace, root: Path, pg: Postgres | None) -> dict[str, object]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    broker = Broker(root / "broker", free_port())
    (root / "broker").mkdir()
    broker.start()
    where = store_url(args.engine, root, pg)
    config = root / "view.toml"
    config.write_text(f'device_id = "bench"\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n')
    views = []
    for _ in range(1 if args.engine == "sqlite" else 2):
        cmd = [sys.executable, "-m", "edge.cli", "view", "--config", str(config), "--store", where,
               "--listen", f"127.0.0.1:{free_port()}", "--group", "bench"]  # fmt: skip
        views.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(3)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    rng = np.random.default_rng(1)
    jpeg = bytes(rng.integers(0, 256, 60_000, dtype=np.uint8))
    published = 0
    start = time.monotonic()
    for second in range(args.seconds):
        for d in range(args.devices):
            scene = S.random_scene(rng, size=(640, 480))
            r = payload(f"dev{d:03d}", second + 1, S.caption(scene), "main", time.time())
            client.publish(f"edge/{r.device}/main/caption/result", r.model_dump_json(), qos=1)
            if second % 10 == 0:
                props = mqtt.Properties(mqtt.PacketTypes.PUBLISH)
                props.UserProperty = [("id", r.id)]
                client.publish(f"edge/{r.device}/main/caption/image", jpeg, qos=1, properties=props)
            published += 1
        time.sleep(max(0.0, start + second + 1 - time.monotonic()))
    sent = time.monotonic()
    store = open_store(where)
    while store.count() < published and time.monotonic() - sent < 120:
        time.sleep(0.2)
    stored_at = time.monotonic()
    out = {
        "engine": args.engine,
        "views": len(views),
        "devices": args.devices,
        "published": published,
        "stored": store.count(),
        "offered_per_s": round(published / (sent - start), 1),
        "stored_per_s": round(store.count() / (stored_at - start), 1),
        "lag_at_end_s": round(stored_at - sent, 2),
        "view_rss_mb": [round(psutil.Process(v.pid).memory_info().rss / 2**20, 1) for v in views],
    }
    store.close()
    client.loop_stop()
    for v in views:
        v.send_signal(signal.SIGTERM)
        v.wait(20)
    broker.stop()
    return out


def fill(store: ViewStore, rows: int) -> None:
    """`rows` results straight into the store's tables (the same schema and search text)."""
    rng = np.random.default_rng(2)
    captions = [S.caption(S.random_scene(rng, size=(640, 480))) for _ in range(500)]
    now = time.time() - rows
    batch: list[tuple[object, ...]] = []
    p = store.placeholder
    sql = (f"INSERT INTO results (id, device, boot, seq, camera, task, at, received_at, text, search, payload)"
           f" VALUES ({','.join([p] * 11)})")  # fmt: skip
    for i in range(rows):
        device, seq = f"dev{i % 100:03d}", i // 100 + 1
        camera = "main" if i % 2 else "back"
        text = captions[int(rng.integers(500))]
        r = payload(device, seq, text, camera, now + i)
        batch.append(
            (
                r.id,
                device,
                1,
                seq,
                camera,
                "caption",
                now + i,
                now + i,
                text,
                search_text(r),
                r.model_dump_json(),
            )
        )
        if len(batch) == 5000 or i == rows - 1:
            with store._lock, store._transaction():
                if store.dialect == "sqlite":
                    store._db.executemany(sql, batch)  # type: ignore[attr-defined]
                    store._db.executemany(  # type: ignore[attr-defined]
                        "INSERT INTO results_fts (id, search) VALUES (?, ?)", [(b[0], b[9]) for b in batch]
                    )
                else:
                    with store._db.cursor() as cur:  # type: ignore[attr-defined]
                        cur.executemany(sql, batch)
            batch = []


def pages(args: argparse.Namespace, root: Path, pg: Postgres | None) -> dict[str, object]:
    store = open_store(store_url(args.engine, root, pg))
    t0 = time.monotonic()
    fill(store, args.rows)
    with store._lock, store._transaction():  # what inserting one by one keeps up to date
        for sql in REBUILD_CAMERAS:
            store._execute(sql)
    if store.dialect == "postgresql":
        store._execute("ANALYZE")
    filled_s = time.monotonic() - t0
    server = ViewServer(store, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{server.port}"
    views = {
        "overview": "/",
        "timeline": "/timeline",
        "timeline page 100": "/timeline?page=100",
        "one device": "/timeline?device=dev042",
        "search red": "/search?q=red",
        "search yellow triangle": "/search?q=yellow+triangle",
        "search nothing": "/search?q=purple",
    }
    out: dict[str, object] = {"engine": args.engine, "rows": store.count(), "fill_s": round(filled_s, 1)}
    for name, path in views.items():
        times = []
        for _ in range(15):
            t = time.perf_counter()
            with urllib.request.urlopen(base + path, timeout=120) as r:
                r.read()
            times.append((time.perf_counter() - t) * 1000)
        med, lo, hi = median_ci(times)
        out[name] = f"{med:.0f} ms [{lo:.0f}, {hi:.0f}]"
    out["rss_mb"] = round(psutil.Process().memory_info().rss / 2**20, 1)
    server.stop()
    store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["ingest", "pages"])
    ap.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="view-bench-"))
    root.chmod(0o755)  # the PostgreSQL server runs as its own user under it
    pg = None
    try:
        if args.engine == "postgresql":
            (root / "pg").mkdir()
            pg = Postgres(root / "pg")
            pg.start()
        result = ingest(args, root, pg) if args.what == "ingest" else pages(args, root, pg)
        print(json.dumps(result, indent=1))
    finally:
        if pg is not None:
            pg.stop()
        if os.environ.get("KEEP") is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
