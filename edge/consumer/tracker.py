"""Completeness, per device and boot: what a consumer needs to prove nothing was lost.

The contract makes it provable: every result carries `seq`, counted without gaps per boot of the
daemon, and `id` = `<device>-<boot>-<seq>`, stable across redelivery. This tracker is the logic every
consumer would otherwise write again, kept pure (no MQTT, no clock, no I/O) so it is unit-tested on
its own and fed by anything: `edge watch`, a shared-subscription group, a bridge's far side.

Per (device, boot) it keeps the seqs seen as a few disjoint intervals (a gap is the space between
two; memory grows with the number of gaps, not of results) and reports:
- new: first time seen, in order;
- late: first time seen, but after a higher seq of its boot (reordering, e.g. across a reconnect);
  it fills (part of) a gap;
- duplicate: its id was seen before (an at-least-once redelivery; de-duplicate, not a fault);
- gaps: seqs missing between the lowest and highest seen; `complete` is no gap anywhere.

Where a boot starts: the first boot a tracker sees of a device may have begun before the consumer
subscribed, so by default it counts from the lowest seq seen; every later boot of that device began
while the tracker watched, so its seqs are expected from 1. `from_start=True` expects 1 for every
boot (a consumer with a persistent session that has been there since the device's first result).

What it cannot see: results lost at the very end of a boot (nothing with a higher seq follows). The
daemon's outbox keeps them across restarts and replays them first, and every loss is announced by an
event the tracker counts per device and cause: `outbox_dropped` (drop-oldest under a full outbox),
`outbox_damaged` (a damaged file moved aside) and `results_dropped` (expired, unpublishable, or held
in memory and given up while the disk was full). A loss report repeats the range of earlier reports
the broker had not acknowledged (they share `first_id`): the largest count of a run is counted once.
Thread-safe: two subscribers of a shared-subscription group may feed one tracker.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from edge.consumer.models import EventPayload, ResultPayload, parse_result_id

Status = Literal["new", "late", "duplicate", "invalid"]


@dataclass(frozen=True)
class Gap:
    """Seqs `first`..`last` (inclusive) of one boot of one device, not received."""

    device: str
    boot: int
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        seqs = str(self.first) if self.first == self.last else f"{self.first}..{self.last}"
        return f"{self.device} boot {self.boot}: seq {seqs} missing ({self.count})"


@dataclass(frozen=True)
class Observation:
    """What one result meant: its status, and the gaps it revealed (in-order arrival past a hole)."""

    status: Status
    device: str
    boot: int
    seq: int
    new_boot: bool = False
    opened: tuple[Gap, ...] = ()
    reason: str | None = None  # for invalid


@dataclass
class _Boot:
    device: str
    boot: int
    start: int | None  # the seq this boot is expected to start at; None: the lowest seen
    intervals: list[list[int]] = field(default_factory=list)  # sorted, disjoint, non-adjacent [lo, hi]
    received: int = 0
    duplicates: int = 0
    late: int = 0
    announced_last: int = 0  # the last seq the device says this boot produced (outbox_damaged)

    @property
    def highest(self) -> int:
        return self.intervals[-1][1] if self.intervals else 0

    def add(self, seq: int) -> tuple[Status, tuple[Gap, ...]]:
        ivs = self.intervals
        i = bisect.bisect_right(ivs, seq, key=lambda iv: iv[0]) - 1  # the interval starting at or before seq
        if i >= 0 and ivs[i][0] <= seq <= ivs[i][1]:
            self.duplicates += 1
            return "duplicate", ()
        self.received += 1
        opened: tuple[Gap, ...] = ()
        if not ivs:
            if self.start is not None and seq > self.start:
                opened = (Gap(self.device, self.boot, self.start, seq - 1),)
            ivs.append([seq, seq])
            return "new", opened
        status: Status = "new"
        if seq > ivs[-1][1]:
            if seq > ivs[-1][1] + 1:
                opened = (Gap(self.device, self.boot, ivs[-1][1] + 1, seq - 1),)
        else:
            status = "late"
            self.late += 1
        # insert and merge with neighbours
        ivs.insert(i + 1, [seq, seq])
        j = i + 1
        if j + 1 < len(ivs) and ivs[j + 1][0] == seq + 1:
            ivs[j][1] = ivs[j + 1][1]
            del ivs[j + 1]
        if j - 1 >= 0 and ivs[j - 1][1] == seq - 1:
            ivs[j - 1][1] = ivs[j][1]
            del ivs[j]
        return status, opened

    def gaps(self) -> tuple[Gap, ...]:
        out: list[Gap] = []
        ivs = self.intervals
        if ivs and self.start is not None and ivs[0][0] > self.start:
            out.append(Gap(self.device, self.boot, self.start, ivs[0][0] - 1))
        for a, b in zip(ivs, ivs[1:], strict=False):
            out.append(Gap(self.device, self.boot, a[1] + 1, b[0] - 1))
        if ivs and self.announced_last > self.highest:  # lost at the end of the boot, announced
            out.append(Gap(self.device, self.boot, self.highest + 1, self.announced_last))
        return tuple(out)


@dataclass(frozen=True)
class BootReport:
    device: str
    boot: int
    first_seq: int
    last_seq: int
    received: int  # distinct results
    duplicates: int
    late: int
    gaps: tuple[Gap, ...]

    @property
    def missing(self) -> int:
        return sum(g.count for g in self.gaps)


@dataclass(frozen=True)
class DeviceReport:
    device: str
    online: bool | None  # None: no status seen
    offline_count: int  # online -> offline transitions (LWT or a clean stop)
    boots: tuple[BootReport, ...]
    events: int
    dropped_reported: int  # messages the device announced as lost, every cause together
    dropped_by_cause: tuple[tuple[str, int], ...] = ()  # (cause, count): full, damaged, expired, ...


@dataclass(frozen=True)
class Report:
    devices: tuple[DeviceReport, ...]
    invalid: int

    @property
    def boots(self) -> tuple[BootReport, ...]:
        return tuple(b for d in self.devices for b in d.boots)

    @property
    def results(self) -> int:
        return sum(b.received for b in self.boots)

    @property
    def duplicates(self) -> int:
        return sum(b.duplicates for b in self.boots)

    @property
    def late(self) -> int:
        return sum(b.late for b in self.boots)

    @property
    def gaps(self) -> tuple[Gap, ...]:
        return tuple(g for b in self.boots for g in b.gaps)

    @property
    def missing(self) -> int:
        return sum(g.count for g in self.gaps)

    @property
    def complete(self) -> bool:
        return not self.gaps

    def to_dict(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "results": self.results,
            "duplicates": self.duplicates,
            "late": self.late,
            "missing": self.missing,
            "invalid": self.invalid,
            "devices": [
                {
                    "device": d.device,
                    "online": d.online,
                    "offline_count": d.offline_count,
                    "events": d.events,
                    "dropped_reported": d.dropped_reported,
                    "dropped_by_cause": dict(d.dropped_by_cause),
                    "boots": [
                        {
                            "boot": b.boot,
                            "first_seq": b.first_seq,
                            "last_seq": b.last_seq,
                            "received": b.received,
                            "duplicates": b.duplicates,
                            "late": b.late,
                            "gaps": [[g.first, g.last] for g in b.gaps],
                        }
                        for b in d.boots
                    ],
                }
                for d in self.devices
            ],
        }


@dataclass
class _Device:
    boots: dict[int, _Boot] = field(default_factory=dict)
    online: bool | None = None
    offline_count: int = 0
    event_ids: set[str] = field(default_factory=set)
    # (cause, run) -> the largest count reported for it; a run is a first_id (reports repeat the
    # range of the ones not yet acknowledged) or, without one, the event's own id
    drop_runs: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def dropped_reported(self) -> int:
        return sum(self.drop_runs.values())

    def by_cause(self) -> tuple[tuple[str, int], ...]:
        causes: dict[str, int] = {}
        for (cause, _), n in self.drop_runs.items():
            causes[cause] = causes.get(cause, 0) + n
        return tuple(sorted(causes.items()))

    def note_drop(self, cause: str, event: EventPayload) -> None:
        count = event.detail.get("count", 0)
        n = count if isinstance(count, int) and count > 0 else 0
        first = event.detail.get("first_id")
        key = (cause, first if isinstance(first, str) and first else event.id)
        self.drop_runs[key] = max(self.drop_runs.get(key, 0), n)


class Tracker:
    """Feed it results (and events, status) in arrival order; ask for `report()` at any time."""

    def __init__(self, *, from_start: bool = False) -> None:
        self.from_start = from_start
        self._devices: dict[str, _Device] = {}
        self._invalid = 0
        self._lock = threading.Lock()

    def _device(self, name: str) -> _Device:
        dev = self._devices.get(name)
        if dev is None:
            dev = self._devices[name] = _Device()
        return dev

    def result(self, result: ResultPayload) -> Observation:
        rid = parse_result_id(result.id)
        if rid is None or rid.device != result.device or rid.seq != result.seq:
            with self._lock:
                self._invalid += 1
            why = f"id {result.id!r} does not read <device>-<boot>-<seq> for {result.device} seq {result.seq}"
            return Observation("invalid", result.device, rid.boot if rid else -1, result.seq, reason=why)
        with self._lock:
            dev = self._device(rid.device)
            boot = dev.boots.get(rid.boot)
            new_boot = boot is None
            if boot is None:
                # a boot begun while we watched (not the first we see of this device) starts at 1
                start = 1 if (self.from_start or dev.boots) else None
                boot = dev.boots[rid.boot] = _Boot(rid.device, rid.boot, start)
            status, opened = boot.add(rid.seq)
        return Observation(status, rid.device, rid.boot, rid.seq, new_boot, opened)

    def event(self, event: EventPayload) -> bool:
        """Count an event; False if its id was seen before (a redelivery)."""
        with self._lock:
            dev = self._device(event.device)
            if event.id in dev.event_ids:
                return False
            dev.event_ids.add(event.id)
            if event.event == "outbox_dropped":
                dev.note_drop("full", event)
            elif event.event == "results_dropped":
                dev.note_drop(str(event.detail.get("cause") or "other"), event)
            elif event.event == "outbox_damaged":
                # Results lost at the end of a boot leave no gap in seq; the event names that boot's
                # last seq (when the damaged file still said it), which turns the loss into one.
                dev.note_drop("damaged", event)
                boot, last = event.detail.get("boot"), event.detail.get("last_seq")
                if isinstance(boot, int) and isinstance(last, int) and boot in dev.boots:
                    b = dev.boots[boot]
                    b.announced_last = max(b.announced_last, last)
            return True

    def status(self, device: str, value: str) -> Literal["online", "offline"] | None:
        """Record `status` (online/offline); the new availability if it changed, else None."""
        online = value == "online"
        with self._lock:
            dev = self._device(device)
            if dev.online == online:
                return None
            if dev.online and not online:
                dev.offline_count += 1
            dev.online = online
        return "online" if online else "offline"

    def report(self) -> Report:
        with self._lock:
            devices = []
            for name in sorted(self._devices):
                dev = self._devices[name]
                boots = tuple(
                    BootReport(
                        name,
                        b.boot,
                        b.intervals[0][0] if b.intervals else 0,
                        b.highest,
                        b.received,
                        b.duplicates,
                        b.late,
                        b.gaps(),
                    )
                    for _, b in sorted(dev.boots.items())
                )
                devices.append(
                    DeviceReport(
                        name,
                        dev.online,
                        dev.offline_count,
                        boots,
                        len(dev.event_ids),
                        dev.dropped_reported,
                        dev.by_cause(),
                    )
                )
            return Report(tuple(devices), self._invalid)
