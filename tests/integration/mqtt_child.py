"""A small daemon stand-in for the SIGKILL and last-will tests: the real MQTT stack in a process.

    python -m tests.integration.mqtt_child HOST PORT OUTBOX COUNT

Publishes COUNT results (one every millisecond), printing each committed seq, then keeps draining
until killed (or, with COUNT 0, only replays what the outbox holds). Prints `ready` once connected.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from edge.config.settings import MqttSettings
from tests.integration.mqtt_stack import committed, make_stack, result_builder


def main() -> None:
    host, port, outbox, count = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    settings = MqttSettings(host=host, port=port)
    stack = make_stack(settings, outbox, window=16).start()
    if not stack.client.wait_connected(10):
        print("not connected", flush=True)
        sys.exit(1)
    print(f"ready boot={stack.publisher.boot}", flush=True)
    build = result_builder()
    for _ in range(count):
        result = committed(stack.publisher.publish_result(build))
        print(result.seq, flush=True)  # printed only after the commit
        time.sleep(0.001)
    print("done", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
