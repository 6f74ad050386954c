"""The MQTT topic contract (v2): every topic the daemon uses, built in one place.

Device topics live under `{prefix}/{device_id}/` (status, state, health, event, cmd/{verb},
reply/{verb}); results under `{prefix}/{device_id}/{camera}/{task}/result|image`, and beside them
`last`: the newest result again, retained (results themselves are a non-retained, at-least-once
stream; `last` is what a dashboard that starts later, such as Home Assistant, reads). The daemon
subscribes to `cmd/#` only, and nothing it publishes lies there: replies go to the requester's MQTT 5
response topic or to `reply/{verb}`, and camera and task names may not be reserved words (the one name
rule is `edge.core.names`), so a task named `cmd` cannot publish into the commands.

Names that came through the settings are already checked; the checks here are for values that did
not (tests, commands, tools), so building topics stays plain string joining.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edge.config.settings import MqttSettings, TaskSettings
from edge.core.names import check_name

COMMAND_VERBS: tuple[str, ...] = ("ask", "capture", "pause", "resume", "set", "reload")
DEFAULT_CAMERA = "main"


def _check(value: str, what: str, *, reserved: bool = True) -> str:
    try:
        return check_name(value, reserved=reserved)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None


@dataclass(frozen=True)
class Topics:
    """Topic names for one device. `task_topics` maps a task to its topic override, if any."""

    prefix: str
    device_id: str
    discovery_prefix: str = "homeassistant"
    task_topics: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _check(self.prefix, "prefix", reserved=False)
        _check(self.device_id, "device_id")
        for part in self.discovery_prefix.split("/"):
            _check(part, "discovery_prefix level", reserved=False)
        for task, override in self.task_topics:
            for level in override.split("/"):
                _check(level, f"topic override of task {task!r}")

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

    # ---- results, per camera

    def task_base(self, camera: str, task: str) -> str:
        """`{root}/{camera}/{task}`, or `{root}/{override}` when the task has a topic override.

        An override is the user's explicit choice of place, relative to the device's root (as in v1).
        """
        override = dict(self.task_topics).get(task)
        if override:
            return f"{self.root}/{override}"
        return f"{self.root}/{_check(camera, 'camera')}/{_check(task, 'task')}"

    def result(self, camera: str, task: str) -> str:
        return f"{self.task_base(camera, task)}/result"

    def image(self, camera: str, task: str) -> str:
        return f"{self.task_base(camera, task)}/image"

    def last(self, camera: str, task: str) -> str:
        """The newest result of (camera, task), retained, same payload as on `result`: what a reader
        that starts later shows at once. Latest value only; no history, no delivery guarantee."""
        return f"{self.task_base(camera, task)}/last"

    # ---- commands

    @property
    def command_filter(self) -> str:
        """What the daemon subscribes to: every verb, and nothing the daemon publishes itself."""
        return f"{self.root}/cmd/#"

    def command(self, verb: str) -> str:
        return f"{self.root}/cmd/{_check(verb, 'verb', reserved=False)}"

    def reply(self, verb: str) -> str:
        """Where a reply goes when the command carried no (usable) MQTT 5 response topic."""
        return f"{self.root}/reply/{_check(verb, 'verb', reserved=False)}"

    def reply_to(self, verb: str, response_topic: str | None) -> str:
        """The requester's response topic when it is usable (`refuse_response_topic` says None),
        else, as without one, `reply/{verb}`."""
        if response_topic and self.refuse_response_topic(verb, response_topic) is None:
            return response_topic
        return self.reply(verb)

    def refuse_response_topic(self, verb: str, topic: str) -> str | None:
        """Why a command's MQTT 5 response topic must not be used, or None when it may.

        A reply is published wherever the requester asks, so anyone with publish rights on `cmd/#`
        could make the device write into topics consumers trust. Refused: anything inside the
        device's own namespace `{prefix}/{device_id}/#` (its status, state, results, events; its
        commands, where the reply would be read back as a command), the Home Assistant discovery
        topics it publishes or reads, another edge device's commands, wildcards, and what is not a
        valid topic name at all. The command's own `reply/{verb}` is allowed: the reply goes there anyway.
        """
        if not topic:
            return "empty"
        if "+" in topic or "#" in topic:
            return "contains a wildcard"
        if "\x00" in topic or len(topic.encode("utf-8", "surrogatepass")) > 65535:
            return "not a valid topic name"
        if topic.startswith("$"):
            return "a broker topic ($...)"
        root = self.root
        if topic == root or topic.startswith(f"{root}/"):
            if topic == f"{root}/reply/{verb}":
                return None
            return "inside the device's own topics"
        if topic == self.discovery_config or topic == self.ha_status:
            return "a Home Assistant discovery topic"
        levels = topic.split("/")
        if len(levels) >= 3 and levels[0] == self.prefix and levels[2] == "cmd":
            return "another device's commands"
        return None

    def is_command_topic(self, topic: str) -> bool:
        """True for anything the command subscription (`cmd/#`) receives."""
        return topic == f"{self.root}/cmd" or topic.startswith(f"{self.root}/cmd/")

    def parse_command(self, topic: str) -> str | None:
        """`{root}/cmd/{verb}` -> verb; anything else (deeper levels, other topics) -> None.

        The verb is returned even when unknown, so the caller can answer with an error reply.
        """
        head = f"{self.root}/cmd/"
        if not topic.startswith(head):
            return None
        verb = topic[len(head) :]
        return verb if verb and "/" not in verb else None

    # ---- Home Assistant

    @property
    def discovery_config(self) -> str:
        """Home Assistant device-based discovery (HA 2024.11+)."""
        return f"{self.discovery_prefix}/device/{self.device_id}/config"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth / last-will topic."""
        return f"{self.discovery_prefix}/status"
