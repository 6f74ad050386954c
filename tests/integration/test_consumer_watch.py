"""The consumer side against a real broker, fed by the daemon's own Outbox + Publisher:
the Consumer and tracker, the SQLite example, and `edge watch` as a subprocess.

Loss is injected where the daemon could lose something (a row deleted from the outbox before it
was published: a gap in seq) and a redelivery where at-least-once makes one (the same row, byte for
byte, published twice): the gap must be reported, the duplicate must not be.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge.consumer import Tracker
from edge.consumer.store import ResultStore
from edge.consumer.stream import Consumer
from tests.integration.mqtt_stack import DEVICE, Stack, make_stack, result_builder, wait_until
from tests.plugins.mosquitto import Broker

REPO = Path(__file__).resolve().parents[2]


def committed_stack(
    broker: Broker, path: Path, n: int, *, lose: tuple[int, ...] = (), redeliver: tuple[int, ...] = ()
) -> Stack:
    """A stack with `n` results committed but not yet published; the `lose` seqs deleted from the
    outbox (never published: a gap) and the `redeliver` seqs stored twice (published twice)."""
    stack = make_stack(broker.mqtt_settings(), path)
    build = result_builder()
    for _ in range(n):
        stack.publisher.publish_result(build)
    rows = {s.message.msg_id: s for s in stack.outbox.next_batch(0, n + 10)}
    boot = stack.publisher.boot
    stack.outbox.delete([rows[f"{DEVICE}-{boot}-{seq}"].row for seq in lose])
    for seq in redeliver:
        stack.outbox.enqueue(rows[f"{DEVICE}-{boot}-{seq}"].message)
    return stack


def edge_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def test_consumer_tracks_a_gap_and_a_redelivery(mosquitto: Broker, tmp_path: Path) -> None:
    tracker = Tracker(from_start=True)
    consumer = Consumer(mosquitto.mqtt_settings(), client_id="t-consumer", tracker=tracker).start()
    stack = committed_stack(mosquitto, tmp_path / "o.db", 20, lose=(5,), redeliver=(3,)).start()
    try:
        wait_until(lambda: tracker.report().results + tracker.report().duplicates >= 20, what="20 deliveries")
        wait_until(lambda: tracker.report().devices[0].online is True, what="online")
    finally:
        stack.stop()
        wait_until(lambda: tracker.report().devices[0].online is False, what="offline")
        consumer.stop()
    rep = tracker.report()
    assert (rep.results, rep.duplicates, rep.missing) == (19, 1, 1)
    assert [(g.first, g.last) for g in rep.gaps] == [(5, 5)]
    assert rep.devices[0].offline_count == 1


def test_sqlite_example_stores_each_result_once_across_its_own_restart(
    mosquitto: Broker, tmp_path: Path
) -> None:
    db = tmp_path / "results.db"
    cmd = [sys.executable, str(REPO / "examples" / "consume_to_sqlite.py"), "--db", str(db),
           "--port", str(mosquitto.port), "--client-id", "t-results-db"]  # fmt: skip

    def run_example() -> subprocess.Popen[str]:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=edge_env())
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        return p

    def finish(p: subprocess.Popen[str]) -> dict[str, Any]:
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=15)
        return {"rc": p.returncode, **json.loads(out.strip().splitlines()[-1])}

    stack = committed_stack(mosquitto, tmp_path / "o.db", 30, redeliver=(7, 8))
    proc = run_example()
    stack.start()
    try:
        wait_until(lambda: db.exists() and ResultStore(db).count() == 30, timeout=15, what="30 rows")
        wait_until(lambda: stack.outbox.stats().depth == 0, what="outbox drained")
        # the redelivered copies may still be on their way: one more result, delivered after them in
        # order on the same session, tells when the example has handled them
        stack.publisher.publish_result(result_builder())  # seq 31
        wait_until(lambda: ResultStore(db).count() == 31, timeout=15, what="31 rows")
        first = finish(proc)
        # while the consumer is down its persistent session queues the next results
        build = result_builder()
        for _ in range(10):
            stack.publisher.publish_result(build)
        wait_until(lambda: stack.outbox.stats().depth == 0, what="published while the consumer is down")
        proc = run_example()
        wait_until(lambda: ResultStore(db).count() == 41, timeout=15, what="41 rows")
        second = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        stack.stop()
    assert first == {"rc": 0, "stored": 31, "duplicates": 2, "gaps": []}
    assert second == {"rc": 0, "stored": 41, "duplicates": 0, "gaps": []}


def watch(broker: Broker, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "watch",
            "--set",
            f"mqtt.port={broker.port}",
            "--set",
            f'mqtt.host="{broker.host}"',
            *args,
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=edge_env(),
        cwd=REPO,
    )


def wait_subscribed(proc: subprocess.Popen[str]) -> None:
    """`edge watch` says on stderr once its subscription is acknowledged."""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("edge watch: subscribed to "), line


def test_watch_json_reports_gap_and_duplicate_and_fails_expect_complete(
    mosquitto: Broker, tmp_path: Path
) -> None:
    proc = watch(mosquitto, "--json", "--expect-complete", "--from-start", "--for", "6", DEVICE)
    wait_subscribed(proc)
    stack = committed_stack(mosquitto, tmp_path / "o.db", 12, lose=(4, 9), redeliver=(2,)).start()
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        stack.stop()
    lines = [json.loads(line) for line in out.splitlines()]
    results = [x for x in lines if x["kind"] == "result"]
    assert len(results) == 11  # 12 - 2 lost + 1 redelivered
    assert [r["track"]["status"] for r in results].count("duplicate") == 1
    assert all(r["latency_ms"] is not None and r["payload"]["device"] == DEVICE for r in results)
    gaps = [(g["first"], g["last"]) for g in lines if g["kind"] == "gap"]
    assert gaps == [(4, 4), (9, 9)]
    summary = lines[-1]
    assert summary["kind"] == "summary" and summary["missing"] == 2 and summary["duplicates"] == 1
    assert any(x["kind"] == "status" and x["payload"] == "online" for x in lines)
    assert proc.returncode == 1 and "2 result(s) missing" in err


def test_watch_text_passes_expect_complete_on_a_whole_stream(mosquitto: Broker, tmp_path: Path) -> None:
    proc = watch(mosquitto, "--expect-complete", "--for", "5")
    wait_subscribed(proc)
    stack = committed_stack(mosquitto, tmp_path / "o.db", 8, redeliver=(3,)).start()
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        stack.stop()
    assert proc.returncode == 0, err
    assert f"{DEVICE}  main/caption  #8" in out and "[duplicate]" in out
    assert f"{DEVICE}  online" in out
    assert "8 results, 1 duplicate(s), 0 late, 0 missing" in out


def test_watch_refuses_a_bad_device_filter(mosquitto: Broker) -> None:
    proc = watch(mosquitto, "a/b")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "not topic-safe" in err
