"""The MQTT topic contract (v1): every topic the daemon uses, built in one place.

All topics live under `{prefix}/{device_id}/`. Prefix, device id and task names are validated as
topic-safe by the settings, so building topics is plain string joining; the checks here are for
values that did not come through the settings (tests, commands).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from edge.config.settings import MqttSettings, TaskSettings

COMMAND_VERBS: tuple[str, ...] = ("ask", "capture", "pause", "resume", "set", "reload")

_LEVEL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _check_level(value: str, what: str) -> str:
    if not _LEVEL.match(value):
        raise ValueError(f"{what} {value!r} is not a valid topic level (letters, digits, '-', '_')")
    return value


@dataclass(frozen=True)
class Topics:
    """Topic names for one device. `task_topics` maps a task to its topic override, if any."""

    prefix: str
    device_id: str
    discovery_prefix: str = "homeassistant"
    task_topics: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _check_level(self.prefix, "prefix")
        _check_level(self.device_id, "device_id")
        for part in self.discovery_prefix.split("/"):
            _check_level(part, "discovery_prefix level")

    @classmethod
    def from_settings(cls, mqtt: MqttSettings, device_id: str, tasks: Iterable[TaskSettings] = ()) -> Topics:
        return cls(
            prefix=mqtt.prefix,
            device_id=device_id,
            discovery_prefix=mqtt.discovery_prefix,
            task_topics=tuple((t.name, t.topic) for t in tasks if t.topic),
        )

    @property
    def root(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def status(self) -> str:
        """Retained `online` / `offline`; the will topic."""
        return f"{self.root}/status"

    @property
    def state(self) -> str:
        return f"{self.root}/state"

    @property
    def health(self) -> str:
        return f"{self.root}/health"

    @property
    def event(self) -> str:
        return f"{self.root}/event"

    def task_base(self, task: str) -> str:
        """`{root}/{task}`, or `{root}/{override}` when the task has a topic override."""
        override = dict(self.task_topics).get(task)
        return f"{self.root}/{override or _check_level(task, 'task')}"

    def result(self, task: str) -> str:
        return f"{self.task_base(task)}/result"

    def image(self, task: str) -> str:
        return f"{self.task_base(task)}/image"

    # ---- commands

    @property
    def command_filter(self) -> str:
        """What the client subscribes to: every verb (and, harmlessly, replies, which are ignored)."""
        return f"{self.root}/cmd/#"

    def command(self, verb: str) -> str:
        return f"{self.root}/cmd/{_check_level(verb, 'verb')}"

    def command_reply(self, verb: str) -> str:
        """Where a reply goes when the command carried no MQTT 5 response topic."""
        return f"{self.command(verb)}/reply"

    def parse_command(self, topic: str) -> tuple[str, bool] | None:
        """`{root}/cmd/{verb}` -> (verb, False); `.../cmd/{verb}/reply` -> (verb, True); else None.

        The verb is returned even when unknown, so the caller can answer with an error reply.
        """
        head = f"{self.root}/cmd/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head) :].split("/")
        if len(parts) == 1 and parts[0]:
            return parts[0], False
        if len(parts) == 2 and parts[0] and parts[1] == "reply":
            return parts[0], True
        return None

    # ---- Home Assistant

    @property
    def discovery_config(self) -> str:
        """Home Assistant device-based discovery (HA 2024.11+)."""
        return f"{self.discovery_prefix}/device/{self.device_id}/config"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth / last-will topic."""
        return f"{self.discovery_prefix}/status"
