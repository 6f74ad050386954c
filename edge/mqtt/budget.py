"""A daily byte budget for a metered uplink (an LTE SIM paid by the megabyte).

Every PUBLISH the client hands to paho is counted here in wire bytes (`MqttClient.set_byte_counter`),
per local day. Results, events, replies, state and health are never held back: a result is what the
device is for, and those messages are small. Images are the lever: one is sent only while the day's
count plus its size stays under the budget less a reserve kept for the rest of the day's small
messages; beyond that it is dropped and counted, or (`over_budget = "defer"`) kept in the outbox for
the next day, where the outbox's own size and expiry limits still apply.

The day's figures are kept in a small JSON file beside the outbox, so a restart in the afternoon
does not hand out a second day's budget.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.config.settings import LinkSettings
from edge.core.messages import LinkPayload

log = logging.getLogger(__name__)

Verdict = Literal["send", "drop", "defer"]
IMAGE_OVERHEAD_BYTES = 256
"""Topic and MQTT 5 properties of an image PUBLISH, added to its JPEG when asking for room."""
SAVE_EVERY_S = 10.0


def local_day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(ts))


@dataclass
class _Day:
    day: str
    bytes: int = 0
    sent: int = 0
    dropped: int = 0
    deferred: int = 0


class LinkBudget:
    """Thread-safe: paho's thread, the publisher and the health tick all touch it."""

    def __init__(
        self,
        settings: LinkSettings,
        state_path: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_spent: Callable[[LinkPayload], None] | None = None,
    ) -> None:
        self.settings = settings
        self.state_path = state_path
        self._clock = clock
        self._lock = threading.Lock()
        self._today = _Day(local_day(clock()))
        self._spent_said = False  # the day's `link_budget_spent` went out
        self._dirty = False
        self._saved_at = 0.0
        self.on_spent = on_spent
        self._load()

    @property
    def limited(self) -> bool:
        return self.settings.budget_bytes > 0

    def _roll(self) -> _Day:
        """The current day's record (a new day starts from zero). Call with the lock held."""
        day = local_day(self._clock())
        if day != self._today.day:
            log.info(
                "link: day %s closed at %d bytes (%d image(s) sent, %d dropped, %d deferred)",
                self._today.day,
                self._today.bytes,
                self._today.sent,
                self._today.dropped,
                self._today.deferred,
            )
            self._today = _Day(day)
            self._spent_said = False
            self._dirty = True
        return self._today

    def count(self, nbytes: int) -> None:
        """Bytes handed to the network (any topic)."""
        with self._lock:
            self._roll().bytes += nbytes
            self._dirty = True

    def room(self) -> int | None:
        """Bytes images may still use today; None: unlimited."""
        if not self.limited:
            return None
        with self._lock:
            used = self._roll().bytes
        return max(0, self.settings.budget_bytes - self.settings.reserve_bytes - used)

    def admit_image(self, size: int, *, deferred: bool = False) -> Verdict:
        """May an image of `size` JPEG bytes go out now? `deferred`: one held back earlier, asked
        again (it is already counted as deferred, and stays so while there is no room)."""
        room = self.room()
        fits = room is None or size + IMAGE_OVERHEAD_BYTES <= room
        spent: LinkPayload | None = None
        with self._lock:
            today = self._roll()
            if fits:
                today.sent += 1
                if deferred:
                    today.deferred = max(0, today.deferred - 1)
                verdict: Verdict = "send"
            elif deferred:
                return "defer"
            elif self.settings.over_budget == "defer":
                today.deferred += 1
                verdict = "defer"
            else:
                today.dropped += 1
                verdict = "drop"
            self._dirty = True
            if verdict != "send" and not self._spent_said:
                self._spent_said = True
                spent = self._payload(today)
        if spent is not None:
            log.warning(
                "link budget: %d of %d bytes used today; images are %s until tomorrow (local time)",
                spent.bytes_today,
                self.settings.budget_bytes,
                "deferred" if verdict == "defer" else "dropped",
            )
            if self.on_spent is not None:
                self.on_spent(spent)
        return verdict

    def deferred_expired(self, n: int) -> None:
        """Deferred images the outbox gave up (expiry, size limit): they count as dropped now."""
        with self._lock:
            today = self._roll()
            moved = min(n, today.deferred)
            today.deferred -= moved
            today.dropped += n
            self._dirty = True

    def snapshot(self) -> LinkPayload:
        with self._lock:
            return self._payload(self._roll())

    def _payload(self, today: _Day) -> LinkPayload:
        return LinkPayload(
            day=today.day,
            bytes_today=today.bytes,
            budget_bytes=self.settings.budget_bytes or None,
            images_sent=today.sent,
            images_dropped=today.dropped,
            images_deferred=today.deferred,
        )

    # ------------------------------------------------------------------ persistence

    def _load(self) -> None:
        if self.state_path is None:
            return
        try:
            doc = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            log.warning("link budget: cannot read %s (%s); counting today from zero", self.state_path, err)
            return
        if not isinstance(doc, dict) or doc.get("day") != self._today.day:
            return
        try:
            self._today = _Day(
                day=str(doc["day"]),
                bytes=int(doc["bytes"]),
                sent=int(doc["sent"]),
                dropped=int(doc["dropped"]),
                deferred=int(doc["deferred"]),
            )
        except (KeyError, TypeError, ValueError):
            log.warning("link budget: %s is not a day's record; counting today from zero", self.state_path)

    def save(self, force: bool = False) -> None:
        """Write the day's record (at most every SAVE_EVERY_S unless forced); atomic, never raises."""
        if self.state_path is None:
            return
        now = time.monotonic()
        with self._lock:
            if not self._dirty or (not force and now - self._saved_at < SAVE_EVERY_S):
                return
            t = self._today
            doc = {
                "day": t.day,
                "bytes": t.bytes,
                "sent": t.sent,
                "dropped": t.dropped,
                "deferred": t.deferred,
            }
            self._dirty = False
            self._saved_at = now
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, self.state_path)
        except OSError as err:
            log.warning("link budget: cannot write %s: %s", self.state_path, err)


def budget_path(outbox_path: Path) -> Path:
    """The day's record lives beside the outbox (the state directory)."""
    return outbox_path.with_name(outbox_path.stem + ".link.json")
