"""Fleet benchmark: N devices' result streams through a board-side broker, its bridge, the central
broker and a shared-subscription group of consumers, with no model anywhere.

    .venv/bin/python benchmarks/fleet_bench.py [--devices 50] [--per-device 20] [--rate 1.0]
        [--consumers 2] [--bridges 1]

Each device is the daemon's own MQTT stack (MqttClient + SQLite Outbox + Publisher, one connection
each), replaying results at `--rate` per second per device (0: as fast as they commit). They publish
to `--bridges` local mosquittos (devices spread round-robin; a real fleet has one per board), each
bridged (the packaged recipe, edge/assets/mosquitto/bridge.conf.example) to one central mosquitto,
where `--consumers` members of one `$share` group feed one completeness Tracker.

Prints: offered and delivered results/s, end-to-end latency (commit in the outbox -> consumer
callback) p50/p95/max, lost (the tracker's missing + never arrived), duplicates, and CPU seconds of
this process (devices + consumers) and of each broker.

Limits found (2-vCPU VM, shared): the brokers are never the bottleneck here (0.3 CPU-s for 2000
results through bridge and central). Replayed at full speed, 50 devices reach ~430 results/s: the
one replay thread commits to 50 SQLite outboxes with an fsync each (what each real board does
for its own results, in parallel). One process hosts at most ~130 devices: paho's loop uses
select(), which fails for file descriptors >= 1024, and each device holds ~7 (socket, paho's
socketpair, the SQLite file, WAL, shm, lock); shard larger fleets over processes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.consumer import Delivery, Observation, Tracker  # noqa: E402
from edge.consumer.stream import RESULTS, Consumer  # noqa: E402
from tests.helpers.bridge import render_bridge  # noqa: E402
from tests.integration.mqtt_stack import Stack, make_stack, result_builder  # noqa: E402
from tests.plugins.mosquitto import Broker  # noqa: E402


def bridge_lines(central: Broker, client_id: str) -> list[str]:
    overrides: dict[str, str | None] = {
        "persistence": None,
        "persistence_location": None,
        "autosave_interval": None,
        "address": f"{central.host}:{central.port}",
        "remote_clientid": client_id,
        "remote_username": None,
        "remote_password": None,
        "bridge_cafile": None,
        "restart_timeout": "1 2",
    }
    return render_bridge(overrides)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


def cpu_s(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--per-device", type=int, default=20)
    ap.add_argument("--rate", type=float, default=1.0, help="results/s per device (0: as fast as possible)")
    ap.add_argument("--consumers", type=int, default=2)
    ap.add_argument("--bridges", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    central = Broker(tmp / "central")
    central.start()
    locals_ = [
        Broker(tmp / f"local{i}", extra_config=bridge_lines(central, f"bench-bridge-{i}"))
        for i in range(args.bridges)
    ]
    for b in locals_:
        b.start()
    tracker = Tracker(from_start=True)
    committed: dict[str, float] = {}
    latencies: list[float] = []
    lock = threading.Lock()

    def on_delivery(d: Delivery, obs: Observation | None) -> None:
        now = time.time()
        if d.result is not None and obs is not None and obs.status in ("new", "late"):
            with lock:
                latencies.append((now - committed[d.result.id]) * 1000.0)

    consumers = [
        Consumer(
            central.mqtt_settings(),
            on_delivery,
            client_id=f"bench-sink-{i}",
            tracker=tracker,
            what=RESULTS,
            group="bench",
        )  # fmt: skip
        for i in range(args.consumers)
    ]
    stacks: list[Stack] = []
    try:
        for c in consumers:
            c.start()
        for i in range(args.devices):
            local = locals_[i % len(locals_)]
            device = f"dev-{i:03d}"
            stacks.append(
                make_stack(local.mqtt_settings(), tmp / f"{device}.db", device_id=device, with_state=False)
            )
        for s in stacks:
            s.start()
        deadline = time.monotonic() + 60
        while not all(s.client.is_connected for s in stacks):
            if time.monotonic() > deadline:
                up = sum(s.client.is_connected for s in stacks)
                raise SystemExit(f"{up} of {len(stacks)} devices connected within 60 s")
            time.sleep(0.1)
        time.sleep(2.0)  # bridges up
        builders = [result_builder(device=s.topics.device_id) for s in stacks]
        cpu0 = (time.process_time(), cpu_s(central.pid), [cpu_s(b.pid) for b in locals_])
        total = args.devices * args.per_device
        t0 = time.time()
        interval = 1.0 / args.rate if args.rate > 0 else 0.0
        for k in range(args.per_device):
            for s, build in zip(stacks, builders, strict=True):

                def stamped(seq: int, rid: str, build=build) -> object:  # type: ignore[no-untyped-def]
                    committed[rid] = time.time()
                    return build(seq, rid)

                s.publisher.publish_result(stamped)  # type: ignore[arg-type]
            if interval:
                time.sleep(max(0.0, t0 + (k + 1) * interval - time.time()))
        t_pub = time.time() - t0
        deadline = time.monotonic() + args.timeout
        while tracker.report().results < total and time.monotonic() < deadline:
            time.sleep(0.05)
        t_all = time.time() - t0
        cpu1 = (time.process_time(), cpu_s(central.pid), [cpu_s(b.pid) for b in locals_])
    finally:
        for s in stacks:
            s.stop(flush_timeout=2.0)
        for c in consumers:
            c.stop()
        for b in [*locals_, central]:
            b.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    rep = tracker.report()
    arrived = rep.results
    lost = total - arrived  # never arrived (the tracker counts holes inside a boot: rep.missing)
    print(f"fleet: {args.devices} devices x {args.per_device} results, rate {args.rate or 'max'}/s/device, "
          f"{args.bridges} bridge(s), {args.consumers} shared consumers")  # fmt: skip
    print("| metric | value |\n|---|---|")
    print(f"| offered (commit) | {total / t_pub:.0f} results/s over {t_pub:.1f} s |")
    print(
        f"| delivered (distinct) | {arrived} of {total}, {arrived / t_all:.0f} results/s over {t_all:.1f} s |"
    )
    print(f"| latency commit -> consumer p50 / p95 / max | {pct(latencies, 0.5):.1f} / {pct(latencies, 0.95):.1f} / {max(latencies or [0]):.1f} ms |")  # fmt: skip
    print(f"| lost / duplicates / late | {lost} / {rep.duplicates} / {rep.late} |")
    print(f"| CPU s: this process (devices + consumers) | {cpu1[0] - cpu0[0]:.1f} |")
    print(f"| CPU s: central broker / local broker(s) | {cpu1[1] - cpu0[1]:.1f} / "
          f"{sum(b - a for a, b in zip(cpu0[2], cpu1[2], strict=True)):.1f} |")  # fmt: skip
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
