"""Fail any test during which a background thread raised: a dying grabber or client thread is a bug
even when the test's own assertions pass."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def fail_on_thread_exception() -> Iterator[None]:
    errors: list[str] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread else "?"
        errors.append(f"thread {name}: {args.exc_type.__name__}: {args.exc_value}")
        previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous
    if errors:
        pytest.fail("background thread raised: " + "; ".join(errors))
