"""Field deployments through the real `edge run`: a daily byte budget measured at the broker with
every result delivered, and the board's heat (a fake sysfs the test changes) and active hours
steering the schedule."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.core.messages import EventPayload, HealthPayload, ResultPayload, StatePayload
from edge.mqtt.wire import publish_bytes
from tests.e2e.harness import base_settings, start_daemon
from tests.e2e.wiring import REPLIES, ROOT, command, results, wait_replies
from tests.helpers.broker_bytes import SYS_INTERVAL, BrokerBytes
from tests.helpers.fake_sysfs import FakeSysfs
from tests.plugins.mosquitto import Broker, Collector, Received

REPO = Path(__file__).resolve().parents[2]
DEVICE = "cam-e2e"


def events(sub: Collector, kind: str | None = None) -> list[EventPayload]:
    out = [EventPayload.model_validate_json(m.payload) for m in sub.on(f"{ROOT}/event")]
    return [e for e in out if kind is None or e.event == kind]


def healths(sub: Collector) -> list[HealthPayload]:
    return [HealthPayload.model_validate_json(m.payload) for m in sub.on(f"{ROOT}/health")]


def wire(m: Received) -> int:
    """Approximate PUBLISH size of a received message (properties as the daemon sets them)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)
    if m.content_type:
        props.ContentType = m.content_type
    if m.user_properties:
        props.UserProperty = list(m.user_properties)
    if m.message_expiry:
        props.MessageExpiryInterval = m.message_expiry
    return publish_bytes(m.topic, m.payload, m.qos, v5=True, properties=props)


def start_watch(broker: Broker) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "watch",
            "--json",
            "--expect-complete",
            "--from-start",
            "--set",
            f"mqtt.port={broker.port}",
            "--set",
            f'mqtt.host="{broker.host}"',
            DEVICE,
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "subscribed" in line, line
    return proc


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_budget_holds_at_the_broker_images_dropped_every_result_arrives(
    tmp_path: Path, broker_factory: Any
) -> None:
    broker = broker_factory(extra_config=SYS_INTERVAL)
    budget = int(0.05 * 2**20)
    meter = BrokerBytes(broker)
    watch = start_watch(broker)
    sub = Collector(broker, f"{ROOT}/#", qos=0).start()  # QoS 0: no PUBACKs of its own in the count
    d = None
    try:
        before = meter.settled()
        cfg = base_settings(
            tmp_path,
            broker,
            tasks=[
                {
                    "name": "caption",
                    "kind": "caption",
                    "trigger": "interval",
                    "interval_s": 1,
                    "publish_image": True,
                }
            ],
            link={"max_mb_per_day": 0.05, "reserve_kb": 24, "image_max_edge": 160, "image_quality": 50},
            health={"interval_s": 2},
        )
        d = start_daemon(tmp_path, cfg)
        sub.wait_for(
            lambda ms: any(
                m.topic == f"{ROOT}/health" and (m.json().get("link") or {}).get("images_dropped", 0) >= 3
                for m in ms
            ),
            timeout=150,
            what="health counting 3 images dropped",
        )
        assert d.stop() == 0, d.log()[-3000:]
        d = None
        received = meter.settled() - before
        watch.send_signal(signal.SIGTERM)
        out, err = watch.communicate(timeout=30)
    finally:
        if d is not None:
            d.stop()
        if watch.poll() is None:
            watch.kill()
        sub.stop()
        meter.stop()
    summary = json.loads(out.strip().splitlines()[-1])
    assert watch.returncode == 0, (summary, err[-2000:])
    got = results(sub)
    assert summary["results"] == len(got) and summary["missing"] == 0, summary
    assert [r.seq for r in got] == list(range(1, len(got) + 1))
    record = json.loads((tmp_path / "state" / "outbox.link.json").read_text())
    images = sub.on(f"{ROOT}/main/caption/image")
    assert record["sent"] == len(images) > 0
    assert record["dropped"] >= 3
    assert record["sent"] + record["dropped"] == len(got)  # every result's image: sent or counted
    spent = events(sub, "link_budget_spent")
    assert len(spent) == 1 and spent[0].detail["budget_bytes"] == budget
    # The broker's own count: everything it received over the run (the daemon, and watch's PUBACKs)
    assert received <= budget, (received, budget)
    assert record["bytes"] <= received <= record["bytes"] * 1.1 + 2048, (record["bytes"], received)
    last = healths(sub)[-1]
    assert last.link is not None and last.link.budget_bytes == budget
    states = [StatePayload.model_validate_json(m.payload) for m in sub.on(f"{ROOT}/state")]
    assert any(st.link is not None and st.link.images_dropped >= 1 for st in states)  # republished when spent
    # the image topic is scaled to image_max_edge; the model saw the full 320x240 frame
    shapes: set[tuple[int, ...]] = set()
    for m in images:
        decoded = cv2.imdecode(np.frombuffer(m.payload, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None, "not a JPEG"
        shapes.add(decoded.shape[:2])
    assert shapes == {(120, 160)}, shapes
    # figures for docs/field.md
    result_b = [wire(m) for m in sub.on(f"{ROOT}/main/caption/result")]
    health_b = [wire(m) for m in sub.on(f"{ROOT}/health")]
    image_b = [wire(m) for m in images]
    print(
        f"\nbudget {budget} B; broker received {received} B, daemon counted {record['bytes']} B;"
        f" {len(got)} results (mean {sum(result_b) / len(result_b):.0f} B on the wire),"
        f" {len(images)} images sent (mean {sum(image_b) / len(image_b):.0f} B, 160 px q50),"
        f" {record['dropped']} dropped; health mean {sum(health_b) / len(health_b):.0f} B"
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_heat_stretches_intervals_until_cool_with_events(tmp_path: Path, mosquitto: Broker) -> None:
    fs = FakeSysfs(tmp_path / "sys")
    fs.zone(0, "cpu-thermal", 55.0)
    fs.throttled(0)
    sub = Collector(mosquitto, f"{ROOT}/#").start()
    cfg = base_settings(
        tmp_path,
        mosquitto,
        power={"sysfs_root": str(fs.root), "poll_s": 0.5, "hot_c": 80, "cool_c": 70, "stretch": 6},
    )
    d = start_daemon(tmp_path, cfg)
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 60)
        sub.wait_topic(f"{ROOT}/main/caption/result", count=4, timeout=60)
        fs.zone(0, "cpu-thermal", 85.0)
        fs.throttled(0x4)  # the firmware throttles as it gets hot
        sub.wait_for(lambda ms: any(m.topic.endswith("/event") and m.json()["event"] == "hot_start" for m in ms),
                     30, "hot_start")  # fmt: skip
        n_hot = len(results(sub))
        sub.wait_topic(f"{ROOT}/main/caption/result", count=n_hot + 3, timeout=90)  # three stretched runs
        fs.zone(0, "cpu-thermal", 75.0)  # below hot, above cool: still hot (hysteresis)
        time.sleep(2)
        assert not events(sub, "hot_end")
        fs.zone(0, "cpu-thermal", 65.0)
        fs.throttled(0x40000)  # throttling has occurred, not now
        sub.wait_for(lambda ms: any(m.topic.endswith("/event") and m.json()["event"] == "hot_end" for m in ms),
                     30, "hot_end")  # fmt: skip
        n_cool = len(results(sub))
        sub.wait_topic(f"{ROOT}/main/caption/result", count=n_cool + 4, timeout=60)
        h = sub.wait_for(lambda ms: any(m.topic.endswith("/health") and m.json()["temperature_c"] == 65.0 for m in ms),
                         30, "health at 65 °C")  # fmt: skip
        assert h
    finally:
        assert d.stop() == 0, d.log()[-3000:]
        sub.stop()
    evs = [e.event for e in events(sub) if e.event.startswith(("hot", "throttled", "under"))]
    assert evs == ["hot_start", "throttled_start", "hot_end", "throttled_end"], evs
    hot_start, hot_end = events(sub, "hot_start")[0], events(sub, "hot_end")[0]
    assert hot_start.detail["temperature_c"] == 85.0 and hot_start.detail["stretch"] == 6
    t0 = datetime.fromisoformat(hot_start.at.replace("Z", "+00:00")).timestamp()
    t1 = datetime.fromisoformat(hot_end.at.replace("Z", "+00:00")).timestamp()
    during = [r for r in results(sub) if r.captured_at and t0 + 1 < _ts(r) < t1]
    gaps = [_ts(b) - _ts(a) for a, b in zip(during, during[1:], strict=False)]
    # the interval is 1 s; stretched six-fold the runs are 6 s apart by the scheduler's clock; a
    # job's frame is taken when it starts, so a busy machine's queueing moves a gap by a second or two
    assert gaps and min(gaps) >= 3.0, gaps
    after = [r for r in results(sub) if _ts(r) > t1 + 1]
    cool_gaps = [_ts(b) - _ts(a) for a, b in zip(after, after[1:], strict=False)]
    assert cool_gaps and min(cool_gaps) < 5.0, cool_gaps  # back to the 1 s schedule
    hot_health = [h for h in healths(sub) if h.hot]
    assert hot_health and hot_health[0].throttled is not None
    print(
        f"\nheat policy: hot_start at 85 °C, {len(during)} result(s) in {t1 - t0:.0f} s while hot"
        f" (gaps {min(gaps):.1f}-{max(gaps):.1f} s, interval 1 s x6), hot_end at 65 °C;"
        f" after: gaps {min(cool_gaps):.1f}-{max(cool_gaps):.1f} s"
    )


def _ts(r: ResultPayload) -> float:
    assert r.captured_at is not None
    return datetime.fromisoformat(r.captured_at.replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_outside_active_hours_scheduled_tasks_pause_commands_answered(
    tmp_path: Path, mosquitto: Broker
) -> None:
    now = time.localtime()
    start = (now.tm_hour + 2) % 24  # a window that opens two hours from now: we are outside it
    window = f"{start:02d}:00-{(start + 1) % 24:02d}:00"
    sub = Collector(mosquitto, [f"{ROOT}/#", REPLIES], persistent=True).start()
    cfg = base_settings(tmp_path, mosquitto, power={"active_hours": window, "poll_s": 0.5})
    d = start_daemon(tmp_path, cfg)
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 60)
        sub.wait_for(lambda ms: any(m.topic.endswith("/event") and m.json()["event"] == "inactive_start" for m in ms),
                     30, "inactive_start")  # fmt: skip
        sub.wait_for(lambda ms: sum(m.topic.endswith("/health") for m in ms) >= 4, 30, "4 health messages")
        assert results(sub) == []  # a 1 s interval task, several seconds: nothing scheduled ran
        command(sub, "capture", {}, b"c-1")
        got = wait_replies(sub, {b"c-1"}, 60)
        assert got[b"c-1"]["ok"], got
        sub.wait_topic(f"{ROOT}/main/caption/result", count=1, timeout=30)
        assert [r.trigger for r in results(sub)] == ["command"]
        assert healths(sub)[-1].active is False
    finally:
        assert d.stop() == 0, d.log()[-3000:]
        sub.stop()
