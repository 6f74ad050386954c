"""Shared helpers of the wiring tests (tests/e2e/test_wiring*.py): the real `edge run`, commands sent
and answered over a real broker, results read back as payloads."""

from __future__ import annotations

import json
from typing import Any

import psutil

from edge.core.messages import HealthPayload, ResultPayload
from tests.plugins.mosquitto import Collector, Received

ROOT = "edge/cam-e2e"
REPLIES = "client/replies"
BUSY = "busy: the job queue is full"


def results(sub: Collector, task: str = "caption") -> list[ResultPayload]:
    return [ResultPayload.model_validate_json(m.payload) for m in sub.on(f"{ROOT}/main/{task}/result")]


def health(sub: Collector) -> list[HealthPayload]:
    return [HealthPayload.model_validate_json(m.payload) for m in sub.on(f"{ROOT}/health")]


def command(
    sub: Collector, verb: str, body: dict[str, Any] | None, corr: bytes, *, wait: bool = True
) -> None:
    """cmd/{verb} with a response topic and correlation data; `wait=False` does not wait for PUBACK."""
    payload = json.dumps(body) if body is not None else ""
    if wait:
        sub.publish(f"{ROOT}/cmd/{verb}", payload, response_topic=REPLIES, correlation_data=corr)
        return
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = REPLIES
    props.CorrelationData = corr
    sub.client.publish(f"{ROOT}/cmd/{verb}", payload, qos=1, properties=props)


def replies(sub: Collector) -> dict[bytes, dict[str, Any]]:
    """Replies on the response topic by correlation data (a second reply to one command would be a bug)."""
    return {m.correlation_data or b"": json.loads(m.payload) for m in sub.on(REPLIES)}


def wait_replies(sub: Collector, corrs: set[bytes], timeout: float) -> dict[bytes, dict[str, Any]]:
    def done(ms: list[Received]) -> bool:
        return corrs <= {m.correlation_data for m in ms if m.topic == REPLIES}

    sub.wait_for(done, timeout, f"{len(corrs)} replies")
    return {k: v for k, v in replies(sub).items() if k in corrs}


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20
