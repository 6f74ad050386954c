"""The one name rule of the MQTT contract (v2): what a device id, camera, task or prefix may be.

Each of these names becomes one MQTT topic level, so it must not contain `/`, `+`, `#`, spaces or
control characters; the rule is kept strict (ASCII letters, digits, `-`, `_`) so the names are also
safe in file names, HA unique ids and shell commands. Names placed in the per-device topic tree
(device ids, cameras, tasks) must also not be one of the reserved words: `status`, `state`, `health`,
`event`, `cmd` and `reply` are the daemon's own topics, and a camera or task named `cmd` would
publish results into the command subscription and be read back as commands.

It lives in `core` because both the settings (refused at `config check`) and the topic builder use
it; they must never disagree.
"""

from __future__ import annotations

import re

# fullmatch, not `$`: `$` also matches before a trailing newline, so "ab\n" would pass.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
NAME_HINT = "letters, digits, '-' and '_' only, at most 64 (it becomes an MQTT topic level)"

# The device-level topics; see `edge.mqtt.topics`.
RESERVED: frozenset[str] = frozenset({"status", "state", "health", "event", "cmd", "reply"})


def is_topic_safe(value: str) -> bool:
    """True if `value` can be one MQTT topic level under the contract's name rule."""
    return _NAME.fullmatch(value) is not None


def check_name(value: str, *, reserved: bool = True) -> str:
    """`value` if it is topic-safe (and, with `reserved`, not a reserved word); else ValueError.

    The message says what is wrong, not which key: the settings add the key and its source.
    """
    if not is_topic_safe(value):
        raise ValueError(f"{value!r} is not topic-safe: use {NAME_HINT}")
    if reserved and value in RESERVED:
        raise ValueError(f"{value!r} is a reserved topic word ({', '.join(sorted(RESERVED))})")
    return value


def sanitize(value: str, fallback: str) -> str:
    """Make a name topic-safe (runs of other characters become '-'), e.g. a hostname as device id."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", value).strip("-")[:64]
    if not name or name in RESERVED:
        return fallback
    return name
