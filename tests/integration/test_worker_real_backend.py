"""The supervised worker running the REAL ORT GenAI backend on the committed fixture models.

Stalls and kills land at a random moment of a stream of real jobs (prefill of a 757-token image
prompt is most of each ~0.1 s job, the realistic place for a native call to hang): whichever phase
they hit, exactly that job must fail with a clear reason and every other job must succeed.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from edge.inference.protocol import JobOutcome
from edge.inference.supervisor import Supervisor
from tests.helpers.supervision import EventLog, frame, job, real_model, running, wait_until, watchdog
from tests.plugins.models import model_dir

REAL = "edge.inference.registry:load_backend"


def _stream_with_fault(
    sup: Supervisor, sig: signal.Signals, after_fault: int = 3
) -> tuple[list[str], list[JobOutcome], float]:
    """Submit image jobs until a signal sent mid-stream has cost one job and `after_fault` more succeeded."""
    fired: list[float] = []

    def killer() -> None:
        wait_until(lambda: sup.stats().jobs >= 3, timeout=30)
        pid = sup.stats().worker_pid
        assert pid is not None
        time.sleep(0.037)  # lands inside a ~0.1 s job almost always; between jobs is fine too
        fired.append(time.monotonic())
        os.kill(pid, sig)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    submitted: list[str] = []
    outcomes: list[JobOutcome] = []
    ok_after = 0
    for i in range(200):
        submitted.append(f"img-{i}")
        outcomes.append(sup.submit(job(f"img-{i}", max_new_tokens=200, image=frame(320, 240, seq=i))))
        if fired and not outcomes[-1].ok:
            ok_after = 0
        elif fired and any(not o.ok for o in outcomes):
            ok_after += 1
            if ok_after >= after_fault:
                break
    thread.join(5)
    assert fired, "the fault was never injected"
    return submitted, outcomes, fired[0]


@pytest.mark.parametrize(
    ("model", "backend", "sig"),
    [
        ("ort-phi3v-fp32", "ort-genai", signal.SIGSTOP),
        ("ort-phi3v-fp32", "ort-genai", signal.SIGKILL),
        ("ov-phi3v", "openvino", signal.SIGSTOP),
    ],
    ids=["ort-sigstop", "ort-sigkill", "openvino-sigstop"],
)
def test_real_backend_fault_mid_stream_costs_exactly_one_job(
    model: str, backend: str, sig: signal.Signals
) -> None:
    events = EventLog()
    wd = watchdog(first_token_s=2.0, token_s=1.0, backoff_initial_s=0.2)
    with running(real_model(model_dir(model), backend), wd, events, loader=REAL) as sup:
        submitted, outcomes, fired_at = _stream_with_fault(sup, sig)
        assert [o.job_id for o in outcomes] == submitted  # nothing dropped, nothing duplicated
        failed = [o for o in outcomes if not o.ok]
        assert len(failed) == 1
        assert failed[0].failure is not None
        expected = {"first_token_timeout", "token_timeout"} if sig == signal.SIGSTOP else {"crashed"}
        assert failed[0].failure.reason in expected
        restart = events.wait_for("worker_restart")[0]
        assert restart["job_id"] == failed[0].job_id and restart["reason"] == failed[0].failure.reason
        for o in outcomes:
            if o.ok:
                assert o.generation is not None and o.generation.stats.image_tokens > 0
                assert o.model is not None and o.model.backend == backend
        first_ok_after = outcomes[outcomes.index(failed[0]) + 1]
        assert first_ok_after.worker_pid != failed[0].worker_pid
        recovered = time.monotonic() - fired_at
        limit = wd.first_token_s if sig == signal.SIGSTOP else 0.0
        assert recovered < limit + wd.backoff_initial_s + 15.0  # deadline + backoff + reloads, generous
        assert sup.stats().restarts == 1


def test_corrupt_model_does_not_spin_backs_off_and_says_why(tmp_path: Path) -> None:
    folder = tmp_path / "ort-phi3-fp32"
    shutil.copytree(model_dir("ort-phi3-fp32"), folder)
    good = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(os.urandom(len(good)))
    events = EventLog()
    wd = watchdog(backoff_initial_s=0.2, backoff_max_s=0.8, max_restarts=50)
    sup = Supervisor(real_model(folder), wd, events, loader=REAL)
    sup.start()
    try:
        assert not sup.wait_ready(20)  # returns as soon as the first load has failed
        degraded = events.wait_for("degraded")[0]
        assert "load failed" in degraded["reason"] and "model.onnx" in degraded["reason"]
        time.sleep(3.0)
        restarts = events.of("worker_restart")
        assert all(r["reason"] == "load_failed" for r in restarts)
        assert all("Protobuf" in r["error"] or "model.onnx" in r["error"] for r in restarts)
        backoffs = [r["backoff_s"] for r in restarts]
        assert backoffs[:3] == [0.2, 0.4, 0.8] and set(backoffs[3:]) <= {0.8}
        assert len(restarts) <= 8  # ~3 s / growing backoff: no spin
        stats = sup.stats()
        assert stats.state == "degraded" and stats.worker_pid is None
        t0 = time.monotonic()
        outcome = sup.submit(job("while-broken"))
        assert outcome.failure is not None and outcome.failure.reason == "unavailable"
        assert "model.onnx" in outcome.failure.message
        assert time.monotonic() - t0 < 2.0  # fails fast instead of waiting for a model that never loads
        (folder / "model.onnx").write_bytes(good)  # repaired (e.g. a re-download)
        assert events.wait_for("recovered", timeout=10)
        assert sup.wait_ready(10)
        assert sup.submit(job("after-repair")).ok
        assert sup.stats().state == "ok"
        assert len(events.of("degraded")) == 1
    finally:
        sup.stop(5.0)


def test_recycle_by_job_count_loses_no_job() -> None:
    events = EventLog()
    wd = watchdog(recycle_after_jobs=3)
    with running(real_model(model_dir("ort-phi3-eos")), wd, events, loader=REAL) as sup:
        results: list[JobOutcome] = []
        lock = threading.Lock()

        def client(name: str) -> None:
            for i in range(4):
                o = sup.submit(job(f"{name}-{i}", max_new_tokens=8))
                with lock:
                    results.append(o)

        threads = [threading.Thread(target=client, args=(f"c{n}",)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(o.job_id for o in results) == sorted(f"c{n}-{i}" for n in range(3) for i in range(4))
        assert all(o.ok for o in results)
        assert all(o.generation is not None and o.generation.stats.stop_reason == "eos" for o in results)
        recycled = events.wait_for("worker_recycled", count=4)  # after jobs 3, 6, 9, 12
        assert len(recycled) == 4
        assert {r["reason"] for r in recycled} == {"jobs"} and all(r["jobs"] == 3 for r in recycled)
        assert len({o.worker_pid for o in results}) == 4
        assert sup.wait_ready(20)
        stats = sup.stats()
        assert (stats.recycles, stats.restarts, stats.failures, stats.jobs) == (4, 0, 0, 12)


def test_recycle_by_rss_between_jobs() -> None:
    events = EventLog()
    wd = watchdog(max_rss_mb=20)  # any loaded runtime is above this: recycle after every job
    with running(real_model(model_dir("ort-phi3-fp32")), wd, events, loader=REAL) as sup:
        rss = sup.stats().worker_rss_mb
        assert rss is not None and rss > 20
        outcomes = [sup.submit(job(f"rss-{i}", max_new_tokens=16)) for i in range(3)]
        assert all(o.ok for o in outcomes)
        recycled = events.wait_for("worker_recycled", count=3)
        assert all(r["reason"] == "rss" and r["rss_mb"] > 20 for r in recycled)
        assert len({o.worker_pid for o in outcomes}) == 3
        assert sup.stats().restarts == 0


def test_large_frame_crosses_to_the_worker_and_a_stalled_reader_cannot_block_us() -> None:
    events = EventLog()
    wd = watchdog(first_token_s=1.5)
    with running(real_model(model_dir("ort-phi3v-eos")), wd, events, loader=REAL) as sup:
        big = frame(1280, 720, seq=1)  # 2.7 MB: more than a socket buffer holds
        ok = sup.submit(job("big", image=big))
        assert ok.ok and ok.generation is not None
        assert ok.generation.stats.stop_reason == "eos" and ok.generation.stats.image_tokens > 0
        pid = sup.stats().worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # the child will never read the frame
        stuck = sup.submit(job("big-stuck", image=big))
        assert stuck.failure is not None and stuck.failure.reason == "first_token_timeout"
        assert sup.wait_ready(20)
        assert sup.submit(job("big-again", image=big)).ok


@pytest.mark.parametrize("backend, model", [("ort-genai", "ort-phi3v-fp32"), ("openvino", "ov-phi3v")])
def test_threads_reach_the_runtime(backend: str, model: str) -> None:
    """[model] threads loads (ORT: an intra_op_num_threads overlay; OpenVINO: INFERENCE_NUM_THREADS)
    and jobs still succeed."""
    pytest.importorskip("onnxruntime_genai" if backend == "ort-genai" else "openvino_genai")
    settings = real_model(model_dir(model), backend, threads=1)
    with running(settings, watchdog(), EventLog(), loader=REAL) as sup:
        out = sup.submit(job("t1", max_new_tokens=4, image=frame(320, 240)))
        assert out.ok, out
        pid = sup.stats().worker_pid
        assert pid is not None
        assert len(os.listdir(f"/proc/{pid}/task")) < 40  # not a thread pool per core x sessions
