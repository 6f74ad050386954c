"""A cancel set by another thread while a generation runs, with no timer racing the decode.

The first token holds the generating side until the other thread has set the event, so the
generation is certainly running when it is set and the next check sees it, on a machine of any load.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from edge.inference.base import TokenCallback

G = TypeVar("G")


def cancel_from_another_thread(
    generate: Callable[[TokenCallback, threading.Event], G],
) -> tuple[G, list[bool]]:
    """generate(on_token, cancel)'s result, and whether the first token saw the event set ([True])."""
    cancel = threading.Event()
    started = threading.Event()
    waited: list[bool] = []

    def on_token(n: int) -> None:
        if n == 1:
            started.set()
            waited.append(cancel.wait(60))

    def canceller() -> None:
        if started.wait(60):
            cancel.set()

    other = threading.Thread(target=canceller)
    other.start()
    try:
        return generate(on_token, cancel), waited
    finally:
        other.join()
