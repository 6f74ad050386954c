"""A minimal stand-in for the generator side of `edge run`, run by tests as a real subprocess.

It wires what the daemon wires (Supervisor, Notifier, WatchdogPinger, SIGTERM/SIGINT -> stop) and
prints one JSON line per step, so tests can signal it and check the outcome of the job in flight.
The runtime's own end-to-end tests cover the real `edge run`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from edge.daemon.systemd import Notifier, WatchdogPinger
from edge.inference.supervisor import Supervisor
from tests.helpers.supervision import FAKE_LOADER, fake_model, job, watchdog


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--token-s", default="0.02", help="fake backend: seconds per token")
    ap.add_argument("--max-new-tokens", type=int, default=100000)
    ap.add_argument("--generation-s", type=float, default=8.0)
    ap.add_argument("--total-s", type=float, default=10.0)
    ap.add_argument("--wd-token-s", type=float, default=1.0)
    ap.add_argument("--stop-timeout", type=float, default=5.0)
    ap.add_argument("--within-s", type=float, default=0.3, help="progressing(): a token within this")
    args = ap.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    notifier = Notifier()
    wd = watchdog(generation_s=args.generation_s, total_s=args.total_s, token_s=args.wd_token_s,
                  backoff_initial_s=0.2)  # fmt: skip
    sup = Supervisor(fake_model(token_s=args.token_s), wd, lambda k, d: say(event=k, **d), loader=FAKE_LOADER)
    sup.start()
    if not sup.wait_ready(30):
        say(step="load_failed")
        return 1
    notifier.ready("model loaded")
    pinger = WatchdogPinger(notifier, lambda: sup.progressing(within_s=args.within_s))
    pinger.start()
    say(step="ready", worker_pid=sup.stats().worker_pid)

    def jobs() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            say(step="job_started", job_id=f"j{n}", worker_pid=sup.stats().worker_pid)
            o = sup.submit(job(f"j{n}", max_new_tokens=args.max_new_tokens))
            say(step="outcome", job_id=o.job_id, ok=o.ok,
                stop_reason=o.generation.stats.stop_reason if o.generation else None,
                failure=o.failure.reason if o.failure else None)  # fmt: skip

    runner = threading.Thread(target=jobs, name="jobs")
    runner.start()
    stop.wait()
    t0 = time.monotonic()
    notifier.stopping("stopping")
    pinger.stop()
    sup.stop(timeout=args.stop_timeout)
    runner.join(args.stop_timeout)
    say(step="exit", stop_s=round(time.monotonic() - t0, 3), jobs_thread_alive=runner.is_alive())
    return 0


if __name__ == "__main__":
    sys.exit(main())
