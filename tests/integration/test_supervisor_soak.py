"""Soak: 2,000 real image jobs on the tiny vision model with the worker SIGKILLed every 100 jobs.

Every submitted job must come back exactly once (a result or a failure naming the kill), every kill
must show up as one restart, and the main process must not grow (< 10 MB RSS): restarts, recycles,
frames through the pipe and sender threads must not leak. ~2 min on 2 cores.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import psutil
import pytest

from edge.inference.protocol import JobOutcome
from tests.helpers.supervision import EventLog, frame, job, real_model, running, watchdog
from tests.plugins.models import model_dir

JOBS = 2000
KILL_EVERY = 100


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_soak_two_thousand_jobs_with_a_kill_every_hundred() -> None:
    events = EventLog()
    wd = watchdog(backoff_initial_s=0.05, backoff_max_s=0.2, max_restarts=1000, recycle_after_jobs=40)
    rng = random.Random(7)
    frames = [frame(320, 240, seq=i) for i in range(8)]  # 230 KB each: the threaded send path
    me = psutil.Process()
    outcomes: list[JobOutcome] = []
    kills = 0
    baseline_rss = 0.0
    t0 = time.monotonic()
    with running(real_model(model_dir("ort-phi3v-eos")), wd, events,
                 loader="edge.inference.registry:load_backend") as sup:  # fmt: skip
        for i in range(JOBS):
            killer = None
            if i % KILL_EVERY == KILL_EVERY // 2:
                pid = sup.stats().worker_pid
                assert pid is not None, "worker not back after the last kill"
                delay = rng.uniform(0.0, 0.08)  # mostly mid-prefill, sometimes between jobs
                killer = threading.Timer(delay, os.kill, (pid, signal.SIGKILL))
                killer.start()
                kills += 1
            outcomes.append(sup.submit(job(f"soak-{i}", max_new_tokens=8, image=frames[i % len(frames)])))
            if killer is not None:
                killer.join()
                sup.wait_ready(30)  # a kill between jobs is found while idle; let it be replaced
            if i == 99:
                baseline_rss = me.memory_info().rss / 2**20
        assert sup.wait_ready(30)
        stats = sup.stats()
    elapsed = time.monotonic() - t0
    final_rss = me.memory_info().rss / 2**20

    assert [o.job_id for o in outcomes] == [f"soak-{i}" for i in range(JOBS)]  # each exactly once
    failed = [o for o in outcomes if not o.ok]
    assert all(o.failure is not None and o.failure.reason == "crashed" for o in failed)
    assert len(failed) <= kills
    restarts = events.of("worker_restart")
    assert len(restarts) == kills == stats.restarts
    assert {r["job_id"] for r in restarts if r["job_id"]} == {o.job_id for o in failed}
    assert {r["reason"] for r in restarts} <= {"crashed", "exited"}
    assert len(events.of("job_failed")) == len(failed) == stats.failures
    assert stats.jobs == JOBS
    assert stats.recycles >= 2
    ok = [o for o in outcomes if o.ok]
    assert all(o.generation is not None and o.generation.stats.image_tokens > 0 for o in ok)
    growth = final_rss - baseline_rss
    print(
        f"\nsoak: {JOBS} jobs in {elapsed:.1f}s, {kills} kills, {len(failed)} failed jobs, "
        f"{stats.recycles} recycles, main RSS {baseline_rss:.1f} -> {final_rss:.1f} MB ({growth:+.1f})"
    )
    assert growth < 10.0
