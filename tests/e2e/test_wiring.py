"""The real daemon's wiring: commands, queues, reload and process ends through `edge run`
as a subprocess, with a real broker, the fixture models and a real NOTIFY_SOCKET. The command tests
elsewhere run against a fake runtime; these prove the composition root connects the real parts."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil

from tests.e2e.harness import MODELS, base_settings, start_daemon, write_config
from tests.e2e.wiring import BUSY, REPLIES, ROOT, command, health, results, rss_mb, wait_replies

TEXT_MODEL = {
    "path": str(MODELS / "ort-phi3-fp32"),
    "backend": "ort-genai",
    "providers": ["cpu"],
    "max_new_tokens": 8,
}


SUB_TOPICS = [f"{ROOT}/#", REPLIES]  # what the `sub` fixture (tests/e2e/conftest.py) subscribes to


def test_set_prompt_shows_in_the_next_results_and_a_full_queue_answers_busy(
    tmp_path: Path, mosquitto, sub
) -> None:
    d = start_daemon(tmp_path, base_settings(tmp_path, mosquitto))
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 60)
        sub.wait_topic(f"{ROOT}/main/caption/result", count=1, timeout=30)
        before = results(sub)[-1].stats.prompt_tokens
        command(sub, "set", {"tasks.caption.prompt": "Describe the scene in great detail. " * 12}, b"set")
        assert wait_replies(sub, {b"set"}, 10)[b"set"]["ok"] is True
        n = len(results(sub))
        # a job already running (and one already queued) may still carry the old prompt
        sub.wait_topic(f"{ROOT}/main/caption/result", count=n + 3, timeout=30)
        after = [r.stats.prompt_tokens for r in results(sub)[n:]]
        assert after[-1] > before + 50, (before, after)
        assert all(t == after[-1] for t in after[2:]), after

        # 20 asks at once: the vision queue holds 8 (one slot kept for scheduled work), the rest are busy
        corrs = {b"ask-%d" % i for i in range(20)}
        for corr in sorted(corrs):
            command(sub, "ask", {"prompt": "what is there?"}, corr, wait=False)
        got = wait_replies(sub, corrs, 60)
        busy = [c for c, r in got.items() if not r["ok"]]
        assert busy and all(got[c]["error"] == BUSY for c in busy)
        answered = [c for c, r in got.items() if r["ok"]]
        assert answered and all(got[c]["result"]["task"] == "ask" for c in answered)
        assert len(busy) + len(answered) == 20
    finally:
        assert d.stop() == 0, d.log()[-3000:]


def test_two_thousand_commands_memory_bounded_all_answered_results_keep_flowing(
    tmp_path: Path, mosquitto, sub
) -> None:
    """A command flood on both lanes (image asks to the vision worker, text asks to the text model's):
    every command is answered, main's RSS stays bounded, interval results keep coming, and health
    counts the drops of both queues."""
    cfg = base_settings(tmp_path, mosquitto, text_model=TEXT_MODEL)
    d = start_daemon(tmp_path, cfg)
    n_cmds = 2000
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 60)
        sub.wait_topic(f"{ROOT}/main/caption/result", count=1, timeout=30)
        # warm up: the paths the flood takes are loaded once (imports, pydantic schemas, paho buffers)
        warm = {b"w-%d" % i for i in range(40)}
        for i, corr in enumerate(sorted(warm)):
            command(sub, "ask", {"prompt": "warm", "image": i % 2 == 0}, corr, wait=False)
        wait_replies(sub, warm, 60)
        time.sleep(1)
        rss0 = rss_mb(d.pid)
        kinds: list[tuple[str, dict[str, Any]]] = [
            ("ask", {"prompt": "what is there?"}),
            ("ask", {"prompt": "a text question", "image": False}),
            ("capture", {}),
            ("set", {"gate.cooldown_s": 0.5}),
            ("ask", {"prompt": 7}),  # refused: an error reply
        ]
        corrs = [b"f-%d" % i for i in range(n_cmds)]
        t0 = time.monotonic()
        for i, corr in enumerate(corrs):
            verb, body = kinds[i % len(kinds)]
            command(sub, verb, body, corr, wait=False)
        sent_s = time.monotonic() - t0
        n = len(results(sub))
        got = wait_replies(sub, set(corrs), 120)
        answered_s = time.monotonic() - t0
        rss_peak = rss_mb(d.pid)
        # results keep flowing after the flood
        sub.wait_topic(f"{ROOT}/main/caption/result", count=n + 2, timeout=30)
        time.sleep(1.5)
        rss1 = rss_mb(d.pid)
        busy = [c for c, r in got.items() if not r["ok"] and r["error"] == BUSY]
        text_busy = [c for c in busy if int(c.split(b"-")[1]) % len(kinds) == 1]
        errors = [c for c, r in got.items() if not r["ok"] and r["error"] != BUSY]
        assert len(got) == n_cmds
        assert {int(c.split(b"-")[1]) % len(kinds) for c in errors} == {4}
        assert text_busy and len(busy) > len(text_busy), "both queues must have refused commands"
        # health counts the drops of every queue (vision and text), not only the first
        h = sub.wait_for(
            lambda ms: any(m.topic == f"{ROOT}/health" and m.json()["dropped"] >= len(busy) for m in ms),
            10,
            "health counting every refused command",
        )
        assert h and health(sub)[-1].dropped >= len(busy)
        print(
            f"\n{n_cmds} commands sent in {sent_s:.1f}s, all answered after {answered_s:.1f}s "
            f"({len(busy)} busy, {len(text_busy)} of them text); main RSS {rss0:.1f} -> peak "
            f"{rss_peak:.1f} -> {rss1:.1f} MB"
        )
        assert rss1 - rss0 < 40, (rss0, rss_peak, rss1)
        assert d.alive()
    finally:
        assert d.stop() == 0, d.log()[-3000:]


def test_watchdog_reload_reaches_every_worker_and_sigkill_leaves_none(tmp_path: Path, mosquitto, sub) -> None:
    cfg = base_settings(tmp_path, mosquitto, text_model=TEXT_MODEL)
    d = start_daemon(tmp_path, cfg)
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 60)
        deadline = time.monotonic() + 30
        while len(d.worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        old = set(d.worker_pids())
        assert len(old) == 2, d.log()[-3000:]
        cfg["watchdog"] = {**cfg["watchdog"], "generation_s": 9, "total_s": 13}
        write_config(d.config, cfg)
        d.signal(signal.SIGHUP)
        reloaded = sub.wait_for(
            lambda ms: any(m.topic == f"{ROOT}/event" and b"config_reloaded" in m.payload for m in ms),
            30,
            "config_reloaded",
        )
        event = next(
            m.json() for m in reloaded if m.topic == f"{ROOT}/event" and b"config_reloaded" in m.payload
        )
        assert "watchdog" in event["detail"]["applied"]
        # both the vision and the text model's supervisor restarted their worker with the new settings
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = set(d.worker_pids())
            if len(now) == 2 and not now & old:
                break
            time.sleep(0.1)
        now = set(d.worker_pids())
        assert len(now) == 2 and not now & old, (old, now, d.log()[-3000:])
        assert "reload: text worker restarted" in d.log() and "reload: vision worker restarted" in d.log()
        # the text lane still answers, on its new worker
        command(sub, "ask", {"prompt": "still there?", "image": False}, b"t")
        assert wait_replies(sub, {b"t"}, 30)[b"t"]["ok"] is True

        # SIGKILL of the main process: no worker is left behind (orphans would hold the model's memory)
        workers = [psutil.Process(p) for p in now]
        os.kill(d.pid, signal.SIGKILL)
        d.proc.wait(10)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers outlived the main process: {[p.pid for p in alive]}"
    finally:
        d.stop()


def test_sigterm_with_a_stalled_worker_exits_within_the_stop_budget(tmp_path: Path, mosquitto, sub) -> None:
    cfg = base_settings(
        tmp_path,
        mosquitto,
        model={"max_new_tokens": 4000},
        tasks=[{"name": "caption", "kind": "caption", "trigger": "interval", "interval_s": 60}],
    )
    budget = cfg["watchdog"]["generation_s"] + 10.0  # what `edge run` gives a running job at stop
    d = start_daemon(tmp_path, cfg)
    try:
        assert d.notify is not None
        d.notify.wait_for("READY", "1", 60)
        worker = d.wait_worker()
        time.sleep(0.5)  # the first interval job is generating now
        os.kill(worker, signal.SIGSTOP)  # stalled: no heartbeats, no exit on its own
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.proc.wait(budget + 15)
        took = time.monotonic() - t0
    finally:
        d.stop()
    print(f"\nSIGTERM with a stalled worker: exit {rc} after {took:.1f}s (budget {budget:.0f}s)")
    assert rc == 0 and took < budget, (took, d.log()[-3000:])
    assert not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE
    assert [m.text for m in sub.on(f"{ROOT}/status")][-1] == "offline"
