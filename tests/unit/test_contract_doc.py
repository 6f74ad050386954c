"""docs/mqtt-contract.md names every topic `Topics` builds, so the contract page and the code stay in step.

Every public member of `Topics` that yields a topic is rendered with placeholder names and turned back
into the page's notation (`{camera}/{task}/result`, `reply/{verb}`, ...); the page must contain that
form and name the member. A topic added to topics.py without a line in the page fails here.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from edge.mqtt.topics import Topics

DOC = Path(__file__).resolve().parents[2] / "docs" / "mqtt-contract.md"

# Members of Topics that are not a topic: construction, the device root, and predicates/parsers.
NOT_TOPICS = frozenset(
    {"from_settings", "root", "refuse_response_topic", "is_command_topic", "parse_command"}
)
PLACEHOLDERS = {"camera": "CAM", "task": "TASK", "verb": "VERB", "response_topic": None}


def _topic_members() -> list[str]:
    fields = {"prefix", "device_id", "discovery_prefix", "task_topics"}
    return sorted(n for n in dir(Topics) if not n.startswith("_") and n not in fields | NOT_TOPICS)


def _render(name: str) -> str:
    topics = Topics(prefix="PFX", device_id="DEV", discovery_prefix="homeassistant")
    member = getattr(topics, name)
    if callable(member):
        args = [PLACEHOLDERS[p] for p in inspect.signature(member).parameters]
        member = member(*args)
    assert isinstance(member, str), name
    return (
        member.removeprefix("PFX/DEV/")
        .replace("DEV", "{device_id}")
        .replace("CAM", "{camera}")
        .replace("TASK", "{task}")
        .replace("VERB", "{verb}")
    )


def test_the_members_are_found() -> None:
    """The walker itself: it sees the topics everyone knows, so an empty list cannot pass."""
    assert {"status", "state", "health", "event", "result", "image", "command", "reply"} <= set(
        _topic_members()
    )


@pytest.mark.parametrize("name", _topic_members())
def test_the_contract_page_names_every_topic(name: str) -> None:
    text = DOC.read_text()
    form = _render(name)
    assert form in text, f"docs/mqtt-contract.md does not name {form!r} (Topics.{name})"
    assert f"`{name}`" in text or f"`{name}()`" in text, f"docs/mqtt-contract.md does not name Topics.{name}"
