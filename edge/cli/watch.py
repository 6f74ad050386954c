"""`edge watch`: the consumer's view of one device, several, or a whole prefix, live.

Results (device, camera/task, seq, text, end-to-end latency), events, health, state and availability
(the retained `status`, `offline` being the daemon's LWT) per device; per device and boot the
completeness tracker of `edge.consumer` marks gaps in seq (loss), redelivered ids and late arrivals.
`--json` prints one JSON line per message (and per gap, and a summary at the end) for scripts.
`--expect-complete --for S` watches S seconds and exits 1 if any boot has a gap (or nothing came).

It connects with the daemon's own settings (`[mqtt]`: host, TLS, credentials, protocol) through the
one connection factory, under its own client id, so it never displaces the daemon's connection.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from typing import IO, Any

from edge.config.settings import Settings
from edge.consumer import Delivery, Observation, Report, Tracker
from edge.consumer.models import EventPayload, HealthPayload, StatePayload
from edge.consumer.stream import Consumer
from edge.core.errors import ConfigError, EdgeError
from edge.core.messages import iso_epoch, utc_iso
from edge.core.names import sanitize


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def _cut(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


class Printer:
    """Formats deliveries as text lines or JSON lines; one lock so lines never interleave."""

    def __init__(self, out: IO[str], as_json: bool) -> None:
        self.out = out
        self.as_json = as_json
        self._lock = threading.Lock()

    def _emit(self, line: str) -> None:
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()

    def _json(self, obj: dict[str, Any]) -> None:
        self._emit(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))

    def delivery(self, d: Delivery, obs: Observation | None) -> None:
        if self.as_json:
            self._delivery_json(d, obs)
        else:
            self._delivery_text(d, obs)
        for gap in obs.opened if obs else ():
            if self.as_json:
                self._json({"kind": "gap", "device": gap.device, "boot": gap.boot, "first": gap.first,
                            "last": gap.last, "count": gap.count})  # fmt: skip
            else:
                self._emit(f"{_clock(d.received_at)}  GAP  {gap}")

    def _delivery_json(self, d: Delivery, obs: Observation | None) -> None:
        payload: Any = d.payload
        if hasattr(payload, "model_dump"):
            payload = payload.model_dump(mode="json")
        obj: dict[str, Any] = {
            "kind": d.kind,
            "topic": d.topic,
            "device": d.device,
            "received_at": utc_iso(d.received_at),
        }
        if d.kind in ("reply", "command", "image", "other"):
            obj["bytes"] = len(d.raw)
        else:
            obj["payload"] = payload
        if d.error:
            obj["error"] = d.error
        if d.result is not None:
            cap = iso_epoch(d.result.captured_at)
            obj["latency_ms"] = round((d.received_at - cap) * 1000.0, 1) if cap else None
        if obs is not None:
            obj["track"] = {"status": obs.status, "boot": obs.boot, "new_boot": obs.new_boot}
        self._json(obj)

    def _delivery_text(self, d: Delivery, obs: Observation | None) -> None:
        at, dev = _clock(d.received_at), d.device or "?"
        p = d.payload
        if d.error:
            self._emit(f"{at}  {dev}  ! {d.topic}: {d.error}")
        elif d.result is not None and obs is not None:
            r = d.result
            if obs.new_boot:
                self._emit(f"{at}  {dev}  boot {obs.boot} (first seen at seq {r.seq})")
            cap = iso_epoch(r.captured_at)
            lat = f"{d.received_at - cap:6.2f} s" if cap else "     ?  "
            mark = "" if obs.status == "new" else f"  [{obs.status}]"
            self._emit(
                f"{at}  {dev}  {r.camera}/{r.task}  #{r.seq}  lat {lat}  gen {r.stats.total_ms / 1000:.2f} s"
                f"  {_cut(r.text)!r}{mark}"
            )
        elif d.kind == "status":
            self._emit(f"{at}  {dev}  {'online' if p == 'online' else 'OFFLINE'}")
        elif isinstance(p, EventPayload):
            self._emit(f"{at}  {dev}  event {p.event}: {_cut(p.reason or '-', 100)}")
        elif isinstance(p, HealthPayload):
            self._emit(
                f"{at}  {dev}  health {p.state}  up {p.uptime_s:.0f} s  jobs {p.jobs}  failures {p.failures}"
                f"  restarts {p.restarts}  outbox {p.outbox_depth}  dropped {p.dropped}  rss {p.rss_mb:.0f} MB"
            )
        elif isinstance(p, StatePayload):
            self._emit(
                f"{at}  {dev}  state {p.state}  {p.model or '-'} ({'/'.join(str(x) for x in (p.backend, p.provider) if x)})"
            )

    def summary(self, report: Report, elapsed_s: float) -> None:
        if self.as_json:
            self._json({"kind": "summary", "elapsed_s": round(elapsed_s, 1), **report.to_dict()})
            return
        lines = [
            f"--- {elapsed_s:.0f} s: {report.results} results, {report.duplicates} duplicate(s), "
            f"{report.late} late, {report.missing} missing"
        ]
        for dev in report.devices:
            avail = {True: "online", False: "OFFLINE", None: "availability unknown"}[dev.online]
            lines.append(f"{dev.device}: {avail}; {dev.events} event(s); {len(dev.boots)} boot(s)")
            for b in dev.boots:
                lines.append(
                    f"  boot {b.boot}: seq {b.first_seq}..{b.last_seq}, {b.received} received, "
                    f"{b.duplicates} duplicate(s), {b.late} late, {b.missing} missing"
                )
            if dev.dropped_reported:
                causes = ", ".join(f"{cause} {n}" for cause, n in dev.dropped_by_cause)
                lines.append(f"  the device reported {dev.dropped_reported} message(s) lost ({causes})")
        lines += [f"GAP  {g}" for g in report.gaps]
        self._emit("\n".join(lines))


def broker_unreachable(host: str, port: int, timeout_s: float = 5.0) -> str | None:
    """Why a TCP connection to the broker fails (refused, no such host), or None: said at once,
    where waiting for a subscription would only report a timeout after 10 s."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except socket.gaierror as err:
        return f"cannot resolve the host: {err.strerror or err}"
    except TimeoutError:
        return None  # slow, not refused: the subscription wait says what happens next
    except OSError as err:
        return f"cannot connect: {(err.strerror or str(err)).lower()}"


def watch_command(
    settings: Settings,
    *,
    as_json: bool = False,
    expect_complete: bool = False,
    duration_s: float | None = None,
    prefix: str | None = None,
    devices: list[str] | None = None,
    group: str | None = None,
    from_start: bool = False,
    out: IO[str] | None = None,
) -> int:
    """Watch until `duration_s` passes (or Ctrl-C / SIGTERM); exit code per `expect_complete`."""
    printer = Printer(out or sys.stdout, as_json)
    tracker = Tracker(from_start=from_start)
    host = sanitize(socket.gethostname(), "host")
    try:
        consumer = Consumer(
            settings.mqtt,
            printer.delivery,
            client_id=f"edge-watch-{host}-{os.getpid()}",
            tracker=tracker,
            prefix=prefix,
            devices=devices or (),
            group=group,
        )
    except ValueError as err:  # a device, prefix or group that is no topic level
        raise ConfigError([f"watch: {err}"]) from None
    unreachable = broker_unreachable(settings.mqtt.host, settings.mqtt.port)
    if unreachable:
        raise EdgeError(
            f"broker {settings.mqtt.host}:{settings.mqtt.port} (mqtt.host, mqtt.port): {unreachable}"
        )
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    started = time.monotonic()
    consumer.start()
    mq = settings.mqtt
    filters = ", ".join(consumer.subscriber.filters)
    print(f"edge watch: subscribed to {filters} on {mq.host}:{mq.port}", file=sys.stderr, flush=True)
    try:
        done.wait(duration_s)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.stop()
        signal.signal(signal.SIGTERM, previous)
    report = tracker.report()
    printer.summary(report, time.monotonic() - started)
    if not expect_complete:
        return 0
    if report.results == 0:
        print("edge: error: --expect-complete: no results received", file=sys.stderr)
        return 1
    if not report.complete:
        print(f"edge: error: --expect-complete: {report.missing} result(s) missing", file=sys.stderr)
        return 1
    lost = sum(d.dropped_reported for d in report.devices)
    if lost:
        # Nothing missing in seq, but the device itself says it lost messages (e.g. at the end of a boot).
        print(
            f"edge: error: --expect-complete: the device(s) reported {lost} message(s) lost", file=sys.stderr
        )
        return 1
    return 0
