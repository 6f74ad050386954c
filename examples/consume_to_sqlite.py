"""Store every result of a fleet in SQLite, once, and prove nothing was lost.

    python examples/consume_to_sqlite.py --db results.db [--host broker.lan] [--port 1883]
        [--prefix edge] [--group pipeline] [--client-id results-db] [--for SECONDS]

A persistent session (the broker queues results while this consumer is down) plus the result id as
the primary key (a redelivery is a no-op) make the store exactly-once over an at-least-once stream.
TLS and credentials: build the MqttSettings from your config instead (`edge.config.sources`).
At the end (after --for, or on Ctrl-C / SIGTERM) it prints one JSON line: stored, duplicates and
the gaps the database holds, and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading

from edge.config.settings import MqttSettings
from edge.consumer import Delivery, Observation, Tracker
from edge.consumer.store import ResultStore
from edge.consumer.stream import RESULTS, Consumer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--prefix", default="edge")
    ap.add_argument("--group", help="join a shared subscription group ($share/GROUP/...)")
    ap.add_argument("--client-id", default="edge-results-db")
    ap.add_argument("--for", dest="duration", type=float, help="stop after this many seconds")
    args = ap.parse_args(argv)

    store = ResultStore(args.db)
    duplicates = 0

    def on_delivery(d: Delivery, obs: Observation | None) -> None:
        nonlocal duplicates
        if d.result is None:
            return
        if not store.add(d.result, d.received_at):  # the id is the key: a redelivery stores nothing
            duplicates += 1

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    consumer = Consumer(
        MqttSettings(host=args.host, port=args.port),
        on_delivery,
        client_id=args.client_id,
        tracker=Tracker(),
        prefix=args.prefix,
        what=RESULTS,
        group=args.group,
        session_expiry_s=7 * 86400,  # persistent: queued for us while we are down
    ).start()
    print("ready", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        done.wait(args.duration)
    consumer.stop()
    gaps = store.gaps()
    print(json.dumps({"stored": store.count(), "duplicates": duplicates, "gaps": [str(g) for g in gaps]}))
    store.close()
    return 1 if gaps else 0


if __name__ == "__main__":
    sys.exit(main())
