"""Shared test harness: real brokers, thread-failure detection, fixture model paths."""

from __future__ import annotations

pytest_plugins = [
    "tests.plugins.threads",
    "tests.plugins.mosquitto",
    "tests.plugins.brokers",
    "tests.plugins.models",
    "tests.plugins.streams",
    "tests.plugins.postgres",
]
