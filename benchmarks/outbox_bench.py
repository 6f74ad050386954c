"""Outbox benchmark: what durable publishing costs on this machine, against a local mosquitto.

    .venv/bin/python benchmarks/outbox_bench.py [--n 3000] [--latency-n 1000] [--synchronous FULL]

Prints a table:
- commit (the caller's cost: one SQLite transaction that allocates seq and stores the result),
- publish latency p50/p99, direct paho QoS 1 (publish -> PUBACK) vs through the outbox
  (commit -> PUBACK), one message at a time, and the difference: what the outbox adds,
- throughput: results/s committed, published and deleted on PUBACK, live and as a replay of a
  backlog after an outage.
Targets: the outbox adds under 5 ms p99, and sustains over 500 results/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.mqtt.client import MqttClient  # noqa: E402
from edge.mqtt.outbox import Outbox  # noqa: E402
from edge.mqtt.publisher import Publisher  # noqa: E402
from edge.mqtt.topics import Topics  # noqa: E402
from tests.integration.mqtt_stack import result_builder  # noqa: E402
from tests.plugins.mosquitto import Broker  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


class Acks:
    """Wakes the benchmark when a PUBACK arrives (in paho's thread, at the moment it arrives)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.count = 0

    def __call__(self, mid: int, code: int, reason: str) -> None:
        self.count += 1
        self.event.set()


def stack(
    broker: Broker, path: Path, synchronous: str, window: int = 64
) -> tuple[MqttClient, Outbox, Publisher, Acks]:
    settings = broker.mqtt_settings()
    topics = Topics.from_settings(settings, "bench")
    client = MqttClient(settings, topics, reconnect_min_s=0.1, reconnect_max_s=0.5)
    acks = Acks()
    client.add_ack_listener(acks)
    outbox = Outbox(path, 256 << 20, synchronous=synchronous)  # type: ignore[arg-type]
    publisher = Publisher(client, outbox, topics, message_expiry_s=3600, window=window)
    return client, outbox, publisher, acks


def wait_connected(client: MqttClient) -> None:
    client.start()
    if not client.wait_connected(10):
        raise SystemExit("benchmark: could not connect to the local broker")
    time.sleep(0.2)  # let state/online and their acks settle


def latency(broker: Broker, tmp: Path, n: int, synchronous: str) -> dict[str, list[float]]:
    client, outbox, publisher, acks = stack(broker, tmp / "lat.db", synchronous)
    publisher.start()
    wait_connected(client)
    build = result_builder(device="bench")
    direct, through, commit = [], [], []
    payload = build(1, "bench-0-1").model_dump_json().encode()
    props = client.properties(content_type="application/json", expiry_s=3600)
    for _ in range(n):
        acks.event.clear()
        t0 = time.perf_counter()
        client.publish("edge/bench/direct/result", payload, qos=1, properties=props)
        acks.event.wait(5)
        direct.append((time.perf_counter() - t0) * 1000)
    for _ in range(n):
        acks.event.clear()
        t0 = time.perf_counter()
        publisher.publish_result(build)
        t1 = time.perf_counter()
        acks.event.wait(5)
        through.append((time.perf_counter() - t0) * 1000)
        commit.append((t1 - t0) * 1000)
    publisher.stop(5)
    client.stop()
    outbox.close()
    return {"direct": direct, "outbox": through, "commit": commit}


def throughput(broker: Broker, tmp: Path, n: int, synchronous: str, replay: bool) -> float:
    client, outbox, publisher, _ = stack(broker, tmp / f"tp-{replay}.db", synchronous)
    build = result_builder(device="bench")
    if replay:  # a backlog built up during an outage, then the broker comes back
        for _ in range(n):
            publisher.publish_result(build)
        t0 = time.perf_counter()
        publisher.start()
        wait_connected(client)
        t0 += 0.2  # wait_connected's settle time is not publishing time
    else:
        publisher.start()
        wait_connected(client)
        t0 = time.perf_counter()
        for _ in range(n):
            publisher.publish_result(build)
    while outbox.stats().depth:
        time.sleep(0.002)
    elapsed = time.perf_counter() - t0
    publisher.stop(5)
    client.stop()
    outbox.close()
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="results per throughput run")
    ap.add_argument("--latency-n", type=int, default=1000, help="messages per latency run")
    ap.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL", help="SQLite synchronous")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Broker(directory=tmp / "broker", persistence=False)
        broker.start()
        try:
            lat = latency(broker, tmp, args.latency_n, args.synchronous)
            live = throughput(broker, tmp, args.n, args.synchronous, replay=False)
            replay = throughput(broker, tmp, args.n, args.synchronous, replay=True)
        finally:
            broker.stop()

    print(f"outbox benchmark  (SQLite synchronous={args.synchronous}, local mosquitto, QoS 1, MQTT 5)")
    print(f"{'measure':<38}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    rows = [
        ("commit (caller's cost)", lat["commit"]),
        ("direct paho publish -> PUBACK", lat["direct"]),
        ("outbox commit -> PUBACK", lat["outbox"]),
    ]
    for name, values in rows:
        print(
            f"{name:<38}{pct(values, 0.5):>10.3f}{pct(values, 0.99):>10.3f}{statistics.mean(values):>10.3f}"
        )
    add50 = pct(lat["outbox"], 0.5) - pct(lat["direct"], 0.5)
    add99 = pct(lat["outbox"], 0.99) - pct(lat["direct"], 0.99)
    print(f"{'outbox adds':<38}{add50:>10.3f}{add99:>10.3f}{'':>10}   (target p99 < 5 ms)")
    print()
    print(f"{'throughput (commit+publish+delete)':<38}{'results/s':>10}")
    print(f"{'  live':<38}{live:>10.0f}   (target > 500)")
    print(f"{'  replay of a backlog':<38}{replay:>10.0f}")


if __name__ == "__main__":
    main()
