"""The consumer side of the MQTT contract (v2): payload models, a completeness tracker, a consumer.

- `models`: the daemon's own pydantic payload models (re-exported from `edge.core.messages`, never
  copied), the contract and payload versions this library reads, and `decode(topic, payload)`.
- `tracker`: pure completeness logic per device and boot (gaps in seq, duplicates, late arrivals,
  new boots, availability); no I/O.
- `stream`: `Consumer`, a subscription (optionally a shared-subscription group) through the daemon's
  one connection factory, feeding the tracker.
- `store`: `ResultStore`, results in SQLite keyed by id (idempotent under redelivery).

`edge watch` is this package on a terminal.
"""

from edge.consumer.models import (
    CONTRACT_VERSION,
    SUPPORTED,
    Delivery,
    EventPayload,
    HealthPayload,
    ResultId,
    ResultPayload,
    StatePayload,
    decode,
    parse_result_id,
)
from edge.consumer.tracker import BootReport, DeviceReport, Gap, Observation, Report, Tracker

__all__ = [
    "CONTRACT_VERSION",
    "SUPPORTED",
    "BootReport",
    "Delivery",
    "DeviceReport",
    "EventPayload",
    "Gap",
    "HealthPayload",
    "Observation",
    "Report",
    "ResultId",
    "ResultPayload",
    "StatePayload",
    "Tracker",
    "decode",
    "parse_result_id",
]
