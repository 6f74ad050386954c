#!/usr/bin/env python3
"""Fault soak: one `edge run` daemon, the faults of docs/faults.md injected in turn, one
table from one run with the results lost per fault.

    sudo env PYTHONPATH=. .venv/bin/python benchmarks/fault_soak.py [--quick] [--json out.json]

The daemon (device `soak-cam`): an HTTP MJPEG camera (the test MjpegServer, so it can be killed),
the tiny fixture model `ort-phi3v-fp32`, one caption task every 1 s, its outbox on a private 32 MiB
tmpfs, its own mosquitto. A persistent-session consumer (the consumer library's Consumer + Tracker)
records every result id and event. Faults, each followed by recovery before the next:

- full disk: the tmpfs filled to 0 bytes free, then the filler removed;
- damaged page: broker stopped so results queue, daemon stopped, the page holding the queued rows
  overwritten with random bytes, broker and daemon started;
- clock back / forward: the daemon restarted under Debian's faketime at -2d / +2d (results queued under
  that clock while the broker is down at the end), then restarted with the true clock;
- duplicate device_id: a second daemon with the same id (own outbox) for a while, then stopped; at
  the end it is started alone once so the results it still held are delivered (a `cleanup` row);
- broker freeze: SIGSTOP mosquitto, SIGCONT;
- worker stall: SIGSTOP the inference worker (the watchdog kills and restarts it);
- camera loss: the MJPEG server killed, then started on the same port.

Per fault: the events the consumer saw, results numbered in the window (seq ranges of every boot,
plus results found queued in a stopped daemon's outbox), results delivered, results lost (tracker
gaps, and ids seen queued in an outbox that never arrived), losses the daemon reported as events,
redeliveries, and the time from the fault's end to the first result captured after it (and to an
empty outbox). Needs root (tmpfs) and faketime; a fault whose tool is missing is skipped and says so.
Prints a markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from fault_soak_report import Window, fmt_s, table, to_json  # noqa: E402
from fault_soak_rig import (  # noqa: E402
    FAKETIME_LIB,
    Daemons,
    Recorder,
    damage_rows_page,
    queued_results,
    reported_lost,
)

from edge.consumer import parse_result_id  # noqa: E402
from tests.plugins.mosquitto import Broker  # noqa: E402
from tests.plugins.streams import MjpegServer  # noqa: E402


class Soak:
    def __init__(self, root: Path, quick: bool) -> None:
        self.root = root
        self.quick = quick
        self.hold = 10.0 if quick else 60.0  # how long a fault lasts
        self.dwell = 3.0 if quick else 15.0  # normal running before each fault
        self.small = root / "small"
        self.filler = self.small / "filler"
        self.broker = Broker(directory=root / "broker")
        self.camera = MjpegServer(fps=10)
        self.windows: list[Window] = []
        self.twin_outbox = root / "twin" / "outbox.sqlite"
        self.tmpfs = False

    # ------------------------------------------------------------------ set-up

    def setup(self) -> None:
        self.small.mkdir(parents=True)
        rc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(self.small)],
            capture_output=True,
            text=True,
        )
        self.tmpfs = rc.returncode == 0
        if not self.tmpfs:
            print(f"# no tmpfs ({rc.stderr.strip()}): the full-disk fault is skipped", file=sys.stderr)
        self.broker.start()
        self.camera.start()
        self.rec = Recorder(self.broker).start()
        self.daemons = Daemons(self.root, self.broker, self.camera.url, self.small / "outbox.sqlite")
        self.d = self.daemons.start("main")
        self.rec.wait(lambda: self.rec.highest(), 60)

    def teardown(self) -> None:
        for closer in (lambda: self.rec.stop(), self.camera.stop, self.broker.kill):
            try:
                closer()
            except Exception as err:  # noqa: BLE001 - best effort, report and go on
                print(f"# teardown: {err!r}", file=sys.stderr)
        if self.tmpfs:
            subprocess.run(["umount", "-l", str(self.small)], check=False)

    # ------------------------------------------------------------------ one window

    def window(self, fault: str, inject: Callable[[Window], None]) -> Window:
        w = Window(fault)
        self._open(w)
        time.sleep(self.dwell)
        print(f"# {time.strftime('%H:%M:%S')} {fault}", file=sys.stderr, flush=True)
        inject(w)
        if w.skipped is None:
            self._recover(w)
        self._close(w)
        self.windows.append(w)
        return w

    def _open(self, w: Window) -> None:
        rep = self.rec.report()
        w.t0, w.i0, w.hi0 = time.monotonic(), self.rec.count(), self.rec.highest()
        w.dup0, w.recv0 = rep.duplicates, rep.results

    def _close(self, w: Window) -> None:
        time.sleep(2.0)  # late events (drop reports go out at most once a second)
        rep = self.rec.report()
        w.t1, w.i1, w.hi1 = time.monotonic(), self.rec.count(), self.rec.highest()
        w.dup1, w.recv1 = rep.duplicates, rep.results

    def _recover(self, w: Window, timeout: float = 120.0) -> None:
        """Wait for the first result captured after the fault ended, then for an empty outbox."""
        w.restored = time.monotonic()
        wall = time.time()
        fresh = None
        if self.rec.wait(lambda: self.rec.fresh_result(w.i0, wall), timeout) is not None:
            fresh = self.rec.fresh_result(w.i0, wall)
        w.recovery_s = None if fresh is None else fresh.at - w.restored
        done = None
        if self.rec.wait(lambda: self.rec.drained(w.i0, wall + 0.5), 60) is not None:
            done = self.rec.drained(w.i0, wall + 0.5)
        w.drained_s = None if done is None else done.at - w.restored

    def restart_main(self, faketime: str | None = None) -> None:
        self.d = self.daemons.start("main" if faketime is None else f"main{faketime}", faketime=faketime)

    def stop_main(self) -> set[str]:
        """Stop the daemon; the result ids it left queued in its outbox."""
        self.daemons.stop(self.d)
        return set(queued_results(self.small / "outbox.sqlite"))

    # ------------------------------------------------------------------ the faults

    def full_disk(self, w: Window) -> None:
        if not self.tmpfs:
            w.skipped = "no tmpfs (needs root)"
            return
        with self.filler.open("wb") as f:  # every free byte of the outbox's filesystem
            chunk = b"\0" * (256 << 10)
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
        for size in (4096, 512, 1):
            try:
                with self.filler.open("ab") as f:
                    while True:
                        f.write(b"\0" * size)
                        f.flush()
            except OSError:
                pass
        free = shutil.disk_usage(self.small).free
        w.injected = f"32 MiB tmpfs filled ({free} B free) for {self.hold:.0f} s, then freed"
        time.sleep(self.hold)
        self.filler.unlink()

    def damaged_page(self, w: Window) -> None:
        self.broker.stop()  # results queue in the outbox
        time.sleep(min(self.hold, 5.0))
        w.stranded = self.stop_main()
        page = damage_rows_page(self.small / "outbox.sqlite")
        w.injected = (
            f"broker down, daemon stopped with {len(w.stranded)} results queued, page {page} overwritten"
        )
        self.broker.start()
        self.restart_main()

    def clock(self, offset: str) -> Callable[[Window], None]:
        def inject(w: Window) -> None:
            if not FAKETIME_LIB.exists():
                w.skipped = "faketime not installed"
                return
            w.stranded |= self.stop_main()
            self.restart_main(faketime=offset)
            time.sleep(self.hold)
            self.broker.stop()  # some results wait under the faked clock across the restart
            time.sleep(4.0)
            w.stranded |= self.stop_main()
            w.injected = (
                f"restarted under FAKETIME={offset} for {self.hold:.0f}+4 s (broker down the last 4 s: "
                f"{len(w.stranded)} results queued), then the true clock"
            )
            self.broker.start()
            self.restart_main()

        return inject

    def duplicate(self, w: Window) -> None:
        twin = self.daemons.start("twin", outbox=self.twin_outbox)
        hold = max(self.hold, 20.0)
        time.sleep(hold)
        self.daemons.stop(twin)
        w.stranded = set(queued_results(self.twin_outbox))
        w.injected = f"a second daemon, same device_id, for {hold:.0f} s ({len(w.stranded)} results left in its outbox)"

    def twin_drain(self, w: Window) -> None:
        if not self.twin_outbox.exists():
            w.skipped = "no twin outbox"
            return
        held = set(queued_results(self.twin_outbox))
        w.stranded |= self.stop_main()
        twin = self.daemons.start("twin", outbox=self.twin_outbox)
        self.rec.wait(lambda: all(self.rec.received(i) for i in held), 60)
        time.sleep(2.0)
        self.daemons.stop(twin)
        w.stranded |= set(queued_results(self.twin_outbox))
        w.injected = f"main stopped; the twin alone for its {len(held)} held results"
        w.skipped = ""  # no recovery to time: the run ends here

    def broker_freeze(self, w: Window) -> None:
        hold = self.hold * 2  # past keepalive_s (10) x 1.5: the daemon's ping goes unanswered
        self.broker.pause()
        time.sleep(hold)
        self.broker.resume()
        w.injected = f"SIGSTOP mosquitto {hold:.0f} s (keepalive 10 s), SIGCONT"

    def worker_stall(self, w: Window) -> None:
        pid = self.d.wait_worker()
        os.kill(pid, signal.SIGSTOP)
        took = self.rec.wait(lambda: pid not in self.d.worker_pids(), 60)
        w.injected = f"SIGSTOP the inference worker; the watchdog killed it after {fmt_s(took)} s"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # if the watchdog had not killed it: let it go

    def camera_loss(self, w: Window) -> None:
        self.camera.stop()
        time.sleep(self.hold)
        self.camera.start()
        w.injected = f"MJPEG server killed for {self.hold:.0f} s, restarted on its port"

    # ------------------------------------------------------------------ the run

    def run(self) -> None:
        self.window("full disk", self.full_disk)
        self.window("damaged page", self.damaged_page)
        self.window("clock stepped back 2 days (then forward)", self.clock("-2d"))
        self.window("clock stepped forward 2 days (then back)", self.clock("+2d"))
        self.window("duplicate device_id", self.duplicate)
        self.window("broker freeze", self.broker_freeze)
        self.window("worker stall", self.worker_stall)
        self.window("camera loss", self.camera_loss)
        self.window("cleanup: duplicate's outbox delivered", self.twin_drain)
        time.sleep(3.0)  # the last redeliveries
        self.account()

    def account(self) -> None:
        """Attribute every missing result to the window whose seq range holds it; events by arrival."""
        final = self.rec.report()
        missing: set[tuple[int, int]] = {(g.boot, s) for g in final.gaps for s in range(g.first, g.last + 1)}
        for w in self.windows:
            for rid in w.stranded:
                p = parse_result_id(rid)
                if p and not self.rec.received(rid):
                    missing.add((p.boot, p.seq))
        seen_events: set[str] = set()
        for w in self.windows:
            top = dict(w.hi1)
            for rid in w.stranded:
                p = parse_result_id(rid)
                if p:
                    top[p.boot] = max(top.get(p.boot, 0), p.seq)
            owned = {b: (w.hi0.get(b, 0), hi) for b, hi in top.items()}
            w.produced = sum(max(0, hi - lo) for lo, hi in owned.values())
            w.lost = sorted(f"{b}-{s}" for b, s in missing if b in owned and owned[b][0] < s <= owned[b][1])
            for s in self.rec.between(w.i0, w.i1):
                if s.kind == "event" and s.event is not None and s.event.id not in seen_events:
                    seen_events.add(s.event.id)  # a redelivered event counts once
                    w.events[s.event.event] += 1
                    n = reported_lost(s.event)
                    if n is None:
                        w.reported_unknown += 1
                    else:
                        w.reported += n
            # claimed once: a later window with the same boot range must not count it again
            missing -= {(int(x.split("-")[0]), int(x.split("-")[1])) for x in w.lost}
        self.unattributed = sorted(missing)
        self.final = final


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 s faults, 3 s between (about 4 min)")
    ap.add_argument("--json", type=Path, help="also write the windows and the final report here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs of every boot)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="edge-soak-"))
    soak = Soak(root, args.quick)
    started = time.monotonic()
    try:
        soak.setup()
        soak.run()
    finally:
        try:
            if getattr(soak, "d", None) is not None and soak.d.alive():
                soak.daemons.stop(soak.d)
        finally:
            soak.teardown()
    took = time.monotonic() - started
    rep = soak.final
    print(
        f"## fault soak ({'quick' if args.quick else 'full'}, {took:.0f} s): {rep.results} results, "
        f"{len(rep.boots)} boots, {rep.missing} in gaps, {rep.duplicates} redelivered, "
        f"{len(soak.unattributed)} lost outside any window\n"
    )
    print(table(soak.windows))
    if args.json:
        args.json.write_text(json.dumps(to_json(soak.windows, rep), indent=1))
    if args.keep:
        print(f"\nlogs: {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
