"""The size of a PUBLISH packet on the wire, computed the way MQTT encodes it.

A link budget counts what crosses the link, not just payloads: for a 300-byte result the topic and
the MQTT 5 properties (content type, user properties, expiry) are a third again.
"""

from __future__ import annotations

from paho.mqtt.properties import Properties


def varint_len(n: int) -> int:
    """Bytes of MQTT's variable byte integer for `n`."""
    size = 1
    while n >= 128:
        n //= 128
        size += 1
    return size


def publish_bytes(
    topic: str, payload: bytes | str | None, qos: int, *, v5: bool, properties: Properties | None = None
) -> int:
    """Fixed header + topic + packet id (QoS > 0) + MQTT 5 properties + payload."""
    body = 2 + len(topic.encode("utf-8"))
    if qos > 0:
        body += 2
    if v5:
        body += len(properties.pack()) if properties is not None else 1  # type: ignore[no-untyped-call]
    if isinstance(payload, str):
        body += len(payload.encode("utf-8"))
    elif payload is not None:
        body += len(payload)
    return 1 + varint_len(body) + body


PINGREQ_BYTES = 2
PUBACK_BYTES = 4  # what the client sends back for a QoS 1 command (MQTT 5 may add a reason code)


def connect_bytes(client_id: str, will_topic: str | None, will_payload: bytes, v5: bool) -> int:
    """An estimate of CONNECT (+ SUBSCRIBE) on each connect: small next to a day's results."""
    body = 10 + (3 if v5 else 0) + 2 + len(client_id.encode())
    if will_topic is not None:
        body += 2 + len(will_topic.encode()) + 2 + len(will_payload) + (8 if v5 else 0)
    return 1 + varint_len(body) + body
