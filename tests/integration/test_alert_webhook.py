"""The alert webhook against a real local HTTP server that is down, then up: every change arrives
once, in order, also across a restart of the sender; a request the receiver refuses (400) is dropped
and counted; posting never waits for the receiver."""

from __future__ import annotations

from pathlib import Path

from edge.daemon.webhook import WebhookSender
from tests.helpers.webhook_receiver import Receiver
from tests.integration.mqtt_stack import wait_until
from tests.plugins.mosquitto import free_port


def test_changes_wait_for_a_receiver_that_is_down_and_survive_a_restart(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    path = tmp_path / "outbox.webhook.sqlite"
    sender = WebhookSender(path, timeout_s=2)
    sender.start()
    for i in range(3):
        sender.post(
            url, {"alert": "gate", "state": "on" if i % 2 == 0 else "off", "n": i}, f"r{i}-alert-gate"
        )
    wait_until(lambda: sender.failures >= 1, what="a failed try while the receiver is down")
    sender.stop()  # a restart: the queue is in the file
    sender = WebhookSender(path, timeout_s=2)
    assert sender.depth == 3
    sender.post(url, {"alert": "gate", "state": "on", "n": 3}, "r3-alert-gate")
    receiver = Receiver(port, refuse={"r2-alert-gate"})
    sender.start()
    try:
        wait_until(lambda: sender.depth == 0, timeout=30, what="queue delivered")
    finally:
        sender.stop()
        receiver.stop()
    assert [k for k, _ in receiver.got] == ["r0-alert-gate", "r1-alert-gate", "r3-alert-gate"]
    assert [b["n"] for _, b in receiver.got] == [0, 1, 3]
    assert sender.refused == 1 and sender.sent == 3
