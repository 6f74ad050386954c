"""Faults in the real worker process: stalls (SIGSTOP), kills, crashes, errors, provider fallback.

The worker is a real spawned process and the signals are real; the backend is the fake from
tests/helpers (a per-token sleep stands in for a slow board) where a deterministic phase matters.
The real ORT GenAI backend on the fixture models is exercised in test_worker_real_backend.py.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import psutil

from edge.core.messages import GenerationRequest, Job
from tests.helpers.supervision import (
    EventLog,
    fake_model,
    in_thread,
    job,
    running,
    wait_until,
    watchdog,
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigstop_mid_decode_is_killed_reported_and_recovered() -> None:
    events = EventLog()
    wd = watchdog(token_s=1.0, backoff_initial_s=0.2)
    with running(fake_model(token_s="0.02"), wd, events) as sup:
        old_pid = sup.stats().worker_pid
        assert old_pid
        thread, box = in_thread(lambda: sup.submit(job("stall-1", max_new_tokens=400)))
        wait_until(lambda: sup.stats().phase == "decoding", timeout=10)
        os.kill(old_pid, signal.SIGSTOP)
        stalled_at = time.monotonic()
        thread.join(15)
        outcome = box[0]
        assert not outcome.ok and outcome.failure is not None
        assert outcome.failure.reason == "token_timeout"
        assert outcome.generation is None
        restart = events.wait_for("worker_restart")[0]
        assert restart["reason"] == "token_timeout"
        assert restart["job_id"] == "stall-1" and restart["task"] == "caption"
        assert events.of("job_failed")[0]["job_id"] == "stall-1"
        killed_after = events.time_of("worker_restart") - stalled_at
        assert wd.token_s <= killed_after + 0.1  # not before the deadline ...
        assert killed_after < wd.token_s + 2.0  # ... and promptly after it
        assert _gone(old_pid)
        assert sup.wait_ready(20)
        nxt = sup.submit(job("after-stall", max_new_tokens=4))
        recovered = time.monotonic() - stalled_at
        assert nxt.ok and nxt.generation is not None
        assert nxt.generation.stats.new_tokens == 4
        assert nxt.worker_pid not in (None, old_pid)
        # stall -> recovered: the deadline + backoff + a respawn/load, with a generous margin
        assert recovered < wd.token_s + wd.backoff_initial_s + 10.0
        stats = sup.stats()
        assert (stats.restarts, stats.failures, stats.jobs) == (1, 1, 2)
        assert stats.state == "ok"


def test_stall_before_the_first_token_hits_the_prefill_deadline() -> None:
    events = EventLog()
    wd = watchdog(first_token_s=1.0)
    with running(fake_model(), wd, events) as sup:
        pid = sup.stats().worker_pid
        assert pid
        os.kill(pid, signal.SIGSTOP)  # stuck in a native call before the job even starts
        t0 = time.monotonic()
        outcome = sup.submit(job("prefill-stall"))
        assert outcome.failure is not None and outcome.failure.reason == "first_token_timeout"
        assert wd.first_token_s - 0.1 <= time.monotonic() - t0 < wd.first_token_s + 3.0
        assert events.wait_for("worker_restart")[0]["reason"] == "first_token_timeout"
        assert sup.wait_ready(20)
        assert sup.submit(job("next")).ok


def test_sigkill_mid_generation_fails_the_job_and_restarts() -> None:
    events = EventLog()
    with running(fake_model(token_s="0.02"), watchdog(), events) as sup:
        pid = sup.stats().worker_pid
        assert pid
        thread, box = in_thread(lambda: sup.submit(job("killed-1", max_new_tokens=400)))
        wait_until(lambda: sup.stats().phase == "decoding", timeout=10)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        thread.join(10)
        outcome = box[0]
        assert outcome.failure is not None and outcome.failure.reason == "crashed"
        assert time.monotonic() - killed_at < 2.0  # a death is noticed at once, not at a deadline
        restart = events.wait_for("worker_restart")[0]
        assert restart["reason"] == "crashed" and restart["job_id"] == "killed-1"
        assert "SIGKILL" in restart["error"]
        assert sup.wait_ready(20)
        assert sup.submit(job("next")).ok


def test_worker_dying_while_idle_is_restarted() -> None:
    events = EventLog()
    with running(fake_model(), watchdog(), events) as sup:
        pid = sup.stats().worker_pid
        assert pid
        os.kill(pid, signal.SIGKILL)
        restart = events.wait_for("worker_restart", timeout=10)[0]
        assert restart["reason"] == "exited" and restart["job_id"] is None
        assert sup.wait_ready(20)
        wait_until(lambda: sup.stats().worker_pid not in (None, pid))
        assert sup.submit(job("next")).ok


def test_native_crash_in_a_job_is_a_failed_job_not_a_lost_one() -> None:
    events = EventLog()
    with running(fake_model(), watchdog(), events) as sup:
        outcome = sup.submit(job("crash-1", prompt="crash"))
        assert outcome.failure is not None and outcome.failure.reason == "crashed"
        assert "status 3" in outcome.failure.message
        assert events.wait_for("worker_restart")[0]["job_id"] == "crash-1"
        assert sup.submit(job("ok-after")).ok


def test_generation_error_keeps_the_worker() -> None:
    events = EventLog()
    with running(fake_model(), watchdog(), events) as sup:
        pid = sup.stats().worker_pid
        outcome = sup.submit(job("too-long", prompt="raise"))
        assert outcome.failure is not None
        assert outcome.failure.reason == "generation_error"
        assert outcome.failure.error_type == "GenerationError"
        ok = sup.submit(job("next"))
        assert ok.ok and ok.worker_pid == pid
        assert events.of("worker_restart") == []
        assert [e["reason"] for e in events.of("job_failed")] == ["generation_error"]


def test_invalid_frame_is_refused_before_the_worker() -> None:
    events = EventLog()
    with running(fake_model(), watchdog(), events) as sup:
        chw = np.zeros((3, 48, 64), dtype=np.uint8)
        bad = Job(id="chw", task="caption", kind="caption", trigger="command",
                  request=GenerationRequest(prompt="x", images=(chw,)))  # fmt: skip
        outcome = sup.submit(bad)
        assert outcome.failure is not None and outcome.failure.reason == "invalid_request"
        assert "HxWx3" in outcome.failure.message
        assert sup.stats().jobs == 1 and sup.stats().restarts == 0


def test_soft_deadline_returns_partial_text() -> None:
    wd = watchdog(generation_s=0.5, total_s=3.0, token_s=1.0)
    with running(fake_model(token_s="0.02"), wd) as sup:
        outcome = sup.submit(job("long", max_new_tokens=1000))
        assert outcome.ok and outcome.generation is not None
        stats = outcome.generation.stats
        assert stats.stop_reason == "deadline"
        assert 0 < stats.new_tokens < 1000
        assert outcome.generation.text
        assert sup.stats().restarts == 0


def test_cancel_current_returns_what_was_generated() -> None:
    with running(fake_model(token_s="0.02"), watchdog()) as sup:
        thread, box = in_thread(lambda: sup.submit(job("cancel-me", max_new_tokens=1000)))
        wait_until(lambda: sup.stats().phase == "decoding", timeout=10)
        sup.cancel_current()
        thread.join(5)
        gen = box[0].generation
        assert gen is not None and gen.stats.stop_reason == "cancelled"
        assert 0 < gen.stats.new_tokens < 1000


def test_repeated_crashes_degrade_then_fall_back_to_the_next_provider() -> None:
    events = EventLog()
    wd = watchdog(max_restarts=2, backoff_initial_s=0.05, backoff_max_s=0.2)
    with running(fake_model(["crashy", "cpu"]), wd, events) as sup:
        assert sup.stats().provider == "crashy"
        outcomes = [sup.submit(job(f"j{i}")) for i in range(3)]
        assert [o.failure.reason for o in outcomes if o.failure] == ["crashed"] * 3
        degraded = events.wait_for("degraded")[0]
        assert "3 worker restarts" in degraded["reason"]
        fallback = events.wait_for("provider_fallback")[0]
        assert (fallback["from"], fallback["to"]) == ("crashy", "cpu")
        assert sup.wait_ready(20)
        after = sup.submit(job("on-cpu"))
        assert after.ok and after.model is not None and after.model.provider == "cpu"
        stats = sup.stats()
        assert stats.state == "degraded" and stats.provider == "cpu"
        assert "fallback" in (stats.degraded_reason or "")


def test_crash_loop_without_fallback_backs_off_and_accounts_every_job() -> None:
    events = EventLog()
    wd = watchdog(max_restarts=2, backoff_initial_s=0.1, backoff_max_s=0.4)
    with running(fake_model(["crashy"]), wd, events) as sup:
        outcomes = [sup.submit(job(f"j{i}")) for i in range(5)]
        assert all(o.failure is not None and o.failure.reason == "crashed" for o in outcomes)
        assert [o.job_id for o in outcomes] == [f"j{i}" for i in range(5)]
        backoffs = [e["backoff_s"] for e in events.of("worker_restart")]
        assert backoffs == [0.1, 0.2, 0.4, 0.4, 0.4]
        assert len(events.of("degraded")) == 1
        assert events.of("provider_fallback") == []
        stats = sup.stats()
        assert stats.state == "degraded" and (stats.jobs, stats.failures) == (5, 5)


def test_worker_is_the_preferred_oom_victim() -> None:
    with running(fake_model(), watchdog()) as sup:
        pid = sup.stats().worker_pid
        assert pid is not None
        with open(f"/proc/{pid}/oom_score_adj") as fh:
            assert int(fh.read()) == 500
        with open("/proc/self/oom_score_adj") as fh:
            assert int(fh.read()) < 500
