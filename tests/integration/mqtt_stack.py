"""Builds the daemon's MQTT stack (client, outbox, publisher) against a test broker.

Shared by the MQTT integration tests and by `mqtt_child.py`, the process the SIGKILL tests kill.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config.settings import MqttSettings
from edge.core.messages import ModelPayload, ResultPayload, StatePayload, StatsPayload, utc_iso
from edge.mqtt.client import MqttClient
from edge.mqtt.outbox import Outbox
from edge.mqtt.publisher import Publisher
from edge.mqtt.topics import Topics

DEVICE = "cam-01"


def result_builder(
    task: str = "caption", text: str = "a test scene", device: str = DEVICE
) -> Callable[[int, str], ResultPayload]:
    def build(seq: int, rid: str) -> ResultPayload:
        now = time.time()
        return ResultPayload(
            id=rid,
            device=device,
            camera="main",
            task=task,
            seq=seq,
            captured_at=utc_iso(now),
            published_at=utc_iso(now),
            trigger="interval",
            text=f"{text} {seq}",
            model=ModelPayload(name="phi-3.5-vision", backend="ort-genai", provider="cpu"),
            stats=StatsPayload(
                prompt_tokens=10,
                image_tokens=0,
                new_tokens=5,
                ttft_ms=12.0,
                decode_tok_s=40.0,
                total_ms=150.0,
                stop_reason="eos",
            ),
        )

    return build


def committed(result: ResultPayload | None) -> ResultPayload:
    """`publish_result`'s answer where the outbox takes writes (None only while the disk refuses them)."""
    assert result is not None, "the outbox refused the write"
    return result


def state(value: str = "running", device: str = DEVICE) -> StatePayload:
    return StatePayload(
        state=value,
        version="test",
        device=device,
        model="phi-3.5-vision",
        backend="ort-genai",
        provider="cpu",
        tasks=["caption"],
        since=utc_iso(time.time()),
    )


@dataclass
class Stack:
    settings: MqttSettings
    topics: Topics
    client: MqttClient
    outbox: Outbox
    publisher: Publisher

    def start(self) -> Stack:
        self.publisher.start()
        self.client.start()
        return self

    def stop(self, flush_timeout: float = 5.0) -> None:
        self.publisher.stop(flush_timeout)
        self.client.stop()
        self.outbox.close()


def make_stack(
    settings: MqttSettings,
    outbox_path: Path,
    *,
    device_id: str = DEVICE,
    window: int = 32,
    max_bytes: int = 64 << 20,
    will_delay_s: int = 1,
    drop_report_interval_s: float = 0.0,
    with_state: bool = True,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    **publisher_kw: Any,
) -> Stack:
    topics = Topics.from_settings(settings, device_id)
    client = MqttClient(settings, topics, will_delay_s=will_delay_s, reconnect_min_s=0.2, reconnect_max_s=1.0)
    if with_state:
        client.set_state(state(device=device_id))
    outbox = Outbox(outbox_path, max_bytes, clock=clock, monotonic=monotonic)
    publisher = Publisher(
        client,
        outbox,
        topics,
        qos=settings.qos,
        message_expiry_s=settings.message_expiry_s,
        window=window,
        drop_report_interval_s=drop_report_interval_s,
        clock=clock,
        **publisher_kw,
    )
    return Stack(settings, topics, client, outbox, publisher)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
