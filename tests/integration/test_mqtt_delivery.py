"""At-least-once delivery through the outbox against a real broker that goes away.

Consumers de-duplicate on the result id; these tests do the same and then demand every id, in order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from tests.integration.mqtt_stack import DEVICE, committed, make_stack, result_builder, wait_until
from tests.plugins.mosquitto import Broker, Collector, Received

REPO = Path(__file__).resolve().parents[2]
ROOT = f"edge/{DEVICE}"


def unique_ids(messages: list[Received]) -> list[str]:
    """Ids in first-arrival order, QoS 1 redeliveries removed (what a consumer does)."""
    seen: dict[str, None] = {}
    for m in messages:
        seen.setdefault(m.json()["id"], None)
    return list(seen)


def seqs_of_boot(ids: list[str], boot: int) -> list[int]:
    prefix = f"{DEVICE}-{boot}-"
    return [int(i[len(prefix) :]) for i in ids if i.startswith(prefix)]


def test_broker_outage_500_results_all_arrive_in_order(
    mosquitto: Broker, collector_factory: Any, tmp_path: Path
) -> None:
    # A persistent session: what is published while the broker restarts is queued for us.
    sub: Collector = collector_factory(mosquitto, f"{ROOT}/+/+/result", persistent=True)
    stack = make_stack(mosquitto.mqtt_settings(), tmp_path / "o.db").start()
    build = result_builder()
    try:
        assert stack.client.wait_connected(10)
        for _ in range(150):
            stack.publisher.publish_result(build)
        mosquitto.stop()
        for _ in range(350):  # while the broker is down: only the outbox holds them
            stack.publisher.publish_result(build)
        assert stack.outbox.stats().depth > 0
        time.sleep(3)
        mosquitto.start()
        sub.wait_for(lambda ms: len(unique_ids(ms)) >= 500, timeout=30, what="500 distinct results")
        wait_until(lambda: stack.outbox.stats().depth == 0, what="outbox drained")
    finally:
        stack.stop()
    ids = unique_ids(sub.on(f"{ROOT}/main/caption/result"))
    assert seqs_of_boot(ids, stack.publisher.boot) == list(range(1, 501))
    assert stack.client.connects >= 2


def spawn_child(broker: Broker, outbox: Path, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.mqtt_child",
            broker.host,
            str(broker.port),
            str(outbox),
            str(count),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def read_until(stream: IO[str], predicate: Any, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline().strip()
        if not line:
            raise AssertionError("child exited")
        if predicate(line):
            return line
    raise AssertionError("child did not get there in time")


def test_sigkill_with_messages_in_flight_then_replay_loses_nothing(
    mosquitto: Broker, collector_factory: Any, tmp_path: Path
) -> None:
    sub: Collector = collector_factory(mosquitto, [f"{ROOT}/+/+/result", f"{ROOT}/status", f"{ROOT}/state"])
    outbox = tmp_path / "o.db"
    child = spawn_child(mosquitto, outbox, 400)
    assert child.stdout is not None
    try:
        boot = int(read_until(child.stdout, lambda s: s.startswith("ready")).split("=")[1])
        read_until(child.stdout, lambda s: s.isdigit() and int(s) >= 100)
        # Freeze the broker: PUBLISHes go out but no PUBACK comes back, so they are in flight.
        mosquitto.pause()
        last = int(read_until(child.stdout, lambda s: s.isdigit() and int(s) >= 250))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        mosquitto.resume()
        if child.poll() is None:
            child.kill()
    time.sleep(0.3)
    before = seqs_of_boot(unique_ids(sub.on(f"{ROOT}/+/+/result")), boot)
    assert len(before) < last  # some were in flight or still queued when the process died

    # Last will: the broker saw the connection die and, after the short will delay, says offline.
    sub.wait_for(lambda ms: any(m.topic.endswith("/status") and m.text == "offline" for m in ms), timeout=10)
    sub.clear()

    child = spawn_child(mosquitto, outbox, 0)  # no new results: only the replay
    assert child.stdout is not None
    try:
        read_until(child.stdout, lambda s: s.startswith("ready"))
        sub.wait_for(
            lambda ms: (
                max(seqs_of_boot(unique_ids([m for m in ms if m.topic.endswith("/result")]), boot), default=0)
                >= last
            ),
            timeout=20,
            what="the replay",
        )
        time.sleep(0.3)
    finally:
        child.kill()
        child.wait()
    after = seqs_of_boot(unique_ids(sub.on(f"{ROOT}/+/+/result")), boot)
    everything = sorted(set(before) | set(after))
    assert everything == list(range(1, len(everything) + 1))  # no gaps: nothing lost
    assert len(everything) >= last  # everything the dead process had committed
    assert after == sorted(after)  # the replay is in order
    # Restart: state, then online, after the offline of the kill.
    statuses = [m for m in sub.messages if m.topic.endswith(("/status", "/state"))]
    assert [m.topic.rsplit("/", 1)[1] for m in statuses][:2] == ["state", "status"]
    assert statuses[1].text == "online"


def test_last_will_offline_retained_on_kill_9(
    mosquitto: Broker, collector_factory: Any, tmp_path: Path
) -> None:
    watch: Collector = collector_factory(mosquitto, f"{ROOT}/status")
    child = spawn_child(mosquitto, tmp_path / "o.db", 0)
    assert child.stdout is not None
    try:
        read_until(child.stdout, lambda s: s.startswith("ready"))
        watch.wait_for(lambda ms: [m.text for m in ms] == ["online"])
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    # The broker publishes the will once the (short) will delay has passed.
    watch.wait_for(lambda ms: [m.text for m in ms] == ["online", "offline"], timeout=10)
    late: Collector = collector_factory(mosquitto, f"{ROOT}/status")
    (msg,) = late.wait_topic(f"{ROOT}/status")
    assert msg.retain and msg.text == "offline"


def test_outbox_full_drops_oldest_and_publishes_the_event(
    mosquitto: Broker, collector_factory: Any, tmp_path: Path
) -> None:
    sub: Collector = collector_factory(mosquitto, [f"{ROOT}/+/+/result", f"{ROOT}/event"])
    probe = result_builder()(1, f"{DEVICE}-1-1").model_dump_json()
    stack = make_stack(mosquitto.mqtt_settings(), tmp_path / "o.db", max_bytes=20 * (len(probe) + 200))
    build = result_builder()
    for _ in range(50):  # not connected yet: all of them wait in the bounded outbox
        stack.publisher.publish_result(build)
    assert stack.outbox.stats().dropped_total > 0
    stack.start()
    try:
        sub.wait_topic(f"{ROOT}/event")
        wait_until(lambda: stack.outbox.stats().depth == 0 and stack.outbox.stats().drop_pending == 0)
        time.sleep(0.2)
    finally:
        stack.stop()
    results = seqs_of_boot(unique_ids(sub.on(f"{ROOT}/main/caption/result")), stack.publisher.boot)
    events = [m.json() for m in sub.on(f"{ROOT}/event")]
    assert {e["event"] for e in events} == {"outbox_dropped"}
    # A report repeats the range of earlier ones not yet acknowledged (same first_id): count a run once.
    runs: dict[str, int] = {}
    for e in events:
        key = e["detail"]["first_id"]
        runs[key] = max(runs.get(key, 0), e["detail"]["count"])
    dropped = sum(runs.values())
    assert results == list(range(51 - len(results), 51))  # the newest survive, in order
    assert dropped == 50 - len(results)  # every dropped result is accounted for
    first = events[0]["detail"]
    assert first["first_id"] == f"{DEVICE}-{stack.publisher.boot}-1"
    assert events[0]["device"] == DEVICE and events[0]["id"]


def test_expired_results_are_never_published(
    mosquitto: Broker, collector_factory: Any, tmp_path: Path
) -> None:
    sub: Collector = collector_factory(mosquitto, f"{ROOT}/+/+/result")
    events: Collector = collector_factory(mosquitto, f"{ROOT}/event")
    skew = [0.0]
    wall = [0.0]

    def mono() -> float:  # the monotonic clock, which the test can move forward
        return time.monotonic() + skew[0]

    def clock() -> float:  # the wall clock steps back two days: it must not matter
        return time.time() + wall[0]

    stack = make_stack(
        mosquitto.mqtt_settings(message_expiry_s=60), tmp_path / "o.db", clock=clock, monotonic=mono
    )
    build = result_builder()
    stale = [committed(stack.publisher.publish_result(build)).id for _ in range(5)]
    skew[0] = 61.0  # an hour-long outage, compressed: those five are now past their expiry
    wall[0] = -2 * 86400.0
    fresh = [committed(stack.publisher.publish_result(build)).id for _ in range(2)]
    stack.start()
    try:
        got = sub.wait_topic(f"{ROOT}/main/caption/result", 2)
        wait_until(lambda: stack.outbox.stats().depth == 0)
        dropped = [m.json() for m in events.wait_topic(f"{ROOT}/event", 1)]
        time.sleep(0.3)
        stats = stack.publisher.stats()
    finally:
        stack.stop()
    ids = unique_ids(sub.on(f"{ROOT}/main/caption/result"))
    assert ids == fresh and not set(stale) & set(ids)
    assert stats.expired == 5
    # Every loss is an event: which ids, how many, why.
    (ev,) = [e for e in dropped if e["event"] == "results_dropped"]
    assert ev["detail"]["cause"] == "expired" and ev["detail"]["count"] == 5
    assert (ev["detail"]["first_id"], ev["detail"]["last_id"]) == (stale[0], stale[-1])
    assert all(m.message_expiry is not None and 55 <= m.message_expiry <= 60 for m in got)
