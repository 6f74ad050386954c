"""The closed vocabularies of the contract, defined once.

Config validation (`config/settings.py`), in-process data and the MQTT payloads
(`core/messages.py`) all name tasks, triggers, events and states with these types, so a new kind is
added in one line here and mypy finds every place that must learn it. Literal types, not enums:
the values travel as plain strings in TOML, JSON and MQTT, and pydantic validates a Literal directly.
"""

from __future__ import annotations

from typing import Literal

TaskKind = Literal["caption", "structured", "ask", "summarize", "event"]
"""What a task asks the model: a caption, JSON against a schema, a question, a summary of results,
or an event told from several frames collected while motion lasted."""

RoiKind = Literal["full", "motion"]
"""What part of a frame a task describes: the whole frame, or the box around the gate's motion."""

TriggerKind = Literal["interval", "motion", "command", "serial"]
"""What starts a job: a timer, the motion gate, an MQTT command, a matching serial line."""

EventKind = Literal[
    "worker_restart",
    "worker_recycled",
    "camera_lost",
    "camera_back",
    "degraded",
    "recovered",
    "outbox_dropped",
    "job_failed",
    "config_rejected",
    "config_reloaded",
    "provider_fallback",
    "backend_switch",
    "storage_full",
    "storage_error",
    "outbox_damaged",
    "results_dropped",
    "session_takeover",
    "hot_start",
    "hot_end",
    "throttled_start",
    "throttled_end",
    "under_voltage_start",
    "under_voltage_end",
    "inactive_start",
    "inactive_end",
    "link_budget_spent",
    "alert_on",
    "alert_off",
]
"""The `event` topic's `event` field: faults and notable transitions."""

StopReason = Literal["eos", "max_tokens", "deadline", "cancelled"]
"""Why a generation ended."""

DaemonState = Literal["starting", "running", "paused", "degraded", "stopping"]
"""The retained `state` and the health payload's `state`."""

CameraState = Literal["ok", "lost", "starting"]
"""The health payload's `camera`."""

StorageState = Literal["ok", "full", "error"]
"""The health payload's `storage`: can the outbox write to its disk?"""

BackendName = Literal["ort-genai", "openvino", "http"]
"""A runtime backend, as `model.backend` names it and a model folder's format is detected."""
