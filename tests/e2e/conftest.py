"""Fixtures shared by the end-to-end tests (the daemon run as `edge run` against a real broker)."""

from __future__ import annotations

import pytest

from tests.plugins.mosquitto import Collector


@pytest.fixture
def sub(mosquitto, request: pytest.FixtureRequest) -> Collector:
    """A persistent-session subscriber on the test's broker, started before the daemon.

    It subscribes to the test module's `SUB_TOPICS` (a filter or a list of them), `#` when the module
    names none; persistent, so nothing published while it reconnects is lost to the test.
    """
    topics = getattr(request.module, "SUB_TOPICS", "#")
    c = Collector(mosquitto, topics, persistent=True).start()
    request.addfinalizer(c.stop)
    return c
