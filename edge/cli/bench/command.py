"""`edge bench`: what this board does with the configured model, provider and camera, in one table.

One run, in phases, on the real daemon (`edge run` as a subprocess, as systemd runs it):

1. gating cost per frame, in this process (the camera's size and 640x480);
1b. the overhead in one process (ORT GenAI): a child loads the model once through the worker's loader
   and decodes with the worker's per-job path (run_job) and a bare generator on the same model object
   interleaved token by token, each bare step timed and taken off the job path's; the A/A puts the bare
   loop in run_job's place. No per-process speed offset can enter it, so it carries the overhead
   verdict, with the main process's CPU during the daemon's jobs (phase 3) added as an upper bound of
   what crosses processes;
2. the daemon starts on a bench device id and loads the model (cold start: spawn -> READY -> the first
   result, as benchmarks/cold_start.py times it); its first frame runs one job (warm-up), then the gate
   stays shut: the idle phase measures its CPU per 1 s window with the camera running;
3. overhead: jobs on the daemon (cmd/capture) alternate with the same prompt, frame size and answer
   length on the bare runtime loop (edge/inference/bare_loop.py, no edge code), every process pinned to
   the bench's own CPU set; both sides time every token, and the shift of the per-token decode times
   (stats.py: warm-up tokens dropped, the lower-middle band of log times per run, Hodges-Lehmann over
   the pairs with its signed-rank interval) is the runtime's overhead. A second bare loop, run in the
   daemon's mirror place of each round, gives the same figure for bare against bare (A/A): the noise
   floor, and the check that the schedule favours neither side, reported beside it. With
   --rotate-every N all three processes restart every N rounds and the intervals are over the sets
   (two processes of one program can differ by a few percent per token: only fresh ones sample that).
   This end-to-end figure is informative where the in-process one exists;
4. latency: the gate is opened to one job per interval, each on a fresh frame, and every result's
   capture -> broker time is taken, with and without the generation itself;
5. RSS of the main process (sampled through the run) and the worker; the daemon is stopped with SIGTERM.

The numbers go to stdout as one table (or one JSON object with --json); progress goes to stderr.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from edge import __version__
from edge.capture.redact import redact_source
from edge.cli.bench.daemon_run import (
    IDLE_AFTER_S,
    NEVER_S,
    DaemonProcess,
    Observer,
    ResultSample,
    bench_config,
    cpu_s,
    pin,
    rss_mb,
    run_ns,
)
from edge.cli.bench.measure import (
    BenchError,
    LocalBroker,
    gate_cost_ms,
)
from edge.cli.bench.options import MIN_PAIRS, BenchOptions, Progress, bench_prompt, round_or_none
from edge.cli.bench.overhead_phases import inproc_phase, overhead_phase
from edge.cli.bench.report import evaluate_targets, render_table
from edge.cli.bench.stats import (
    finite,
    mean_ci,
    percentile_ci,
)
from edge.config.settings import HttpModelSettings, LocalModelSettings, MqttSettings, Settings
from edge.config.sources import LoadedSettings
from edge.core.stats import percentile
from edge.inference.model_folder import validate_for
from edge.mqtt.topics import Topics


def _stderr(msg: str) -> None:
    print(f"edge bench: {msg}", file=sys.stderr, flush=True)


def bench_command(
    loaded: LoadedSettings,
    as_json: bool,
    jobs: int,
    max_pairs: int = 40,
    budget_s: float = 240.0,
    rotate: int = 0,
    inproc_budget_s: float = 150.0,
) -> int:
    if jobs < 1:
        raise BenchError("--jobs must be at least 1")
    runs = max(MIN_PAIRS, min(jobs, 10))
    if rotate < 0:
        raise BenchError("--rotate-every must be 0 (never) or a number of rounds")
    if rotate:  # an interval over sets needs at least MIN_PAIRS of them
        runs = max(runs, MIN_PAIRS * rotate)
    opts = BenchOptions(
        jobs=jobs,
        overhead_runs=runs,
        overhead_max_pairs=max(runs, max_pairs),
        overhead_budget_s=budget_s,
        overhead_rotate=rotate,
        inproc_max_rounds=max(2 * MIN_PAIRS, 2 * max_pairs),
        inproc_budget_s=inproc_budget_s,
    )
    report = run_bench(loaded.settings, opts, _stderr)
    if as_json:
        import json

        print(json.dumps(report, indent=None, sort_keys=False))
    else:
        print(render_table(report))
    return 0 if report.get("daemon_exit") == 0 and not report.get("failures") else 1


# --------------------------------------------------------------------------- the run


def _other_daemons() -> list[int]:
    """Pids of `edge run` processes already running here: they would skew every number."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if p.info["pid"] != os.getpid() and (
            "edge.cli run" in cmd or cmd.endswith("edge run") or "/edge run " in cmd
        ):
            found.append(p.info["pid"])
    return found


def _broker(
    settings: Settings, force_local: bool, workdir: Path, notes: list[str]
) -> tuple[MqttSettings, str, Any]:
    """(mqtt settings to use, how to describe the broker, a LocalBroker to stop or None)."""
    configured = f"{settings.mqtt.host}:{settings.mqtt.port}"
    why = "not asked"
    if not force_local:
        from edge.cli.doctor.broker import check_broker

        check = check_broker(settings.mqtt, settings.device_id, timeout_s=3.0)
        if check.status != "fail":
            return settings.mqtt, f"configured {configured}", None
        why = check.detail
    try:
        local = LocalBroker(workdir / "broker")
    except BenchError as err:
        raise BenchError(f"no broker: the configured one ({configured}) failed: {why}; and {err}") from None
    if not force_local:
        notes.append(f"configured broker {configured} did not answer ({why}); used a local mosquitto")
    return MqttSettings(host=local.host, port=local.port), f"local mosquitto {local.host}:{local.port}", local


def run_bench(settings: Settings, opts: BenchOptions, progress: Progress = _stderr) -> dict[str, Any]:
    if isinstance(settings.model, HttpModelSettings):
        # the model runs on the endpoint: the daemon's own load probe says if it sees images
        model_name = settings.model.name
    else:
        folder = validate_for(settings.model.path, settings.model.backend)
        if not folder.vision:
            raise BenchError(f"edge bench measures the camera pipeline: {folder.path} is a text-only model")
        model_name = folder.name
    cam = settings.camera
    width, height = cam.width or 640, cam.height or 480
    notes: list[str] = []
    report: dict[str, Any] = {
        "edge_version": __version__,
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "model": model_name,
        "backend": settings.model.backend,
        "num_crops": settings.model.num_crops if isinstance(settings.model, LocalModelSettings) else None,
        "max_new_tokens": settings.model.max_new_tokens,
        "camera": {"source": redact_source(cam.source), "width": width, "height": height, "fps": cam.fps},
        "notes": notes,
        "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [],
    }
    others = _other_daemons()
    if others:
        notes.append(
            f"another edge daemon is running (pid {', '.join(map(str, others))}): numbers are skewed"
        )

    progress(f"gating cost on {width}x{height} frames")
    report["gate_ms_per_frame"] = round(gate_cost_ms(settings.gate, width, height), 3)
    report["gate_ms_per_frame_640x480"] = (
        report["gate_ms_per_frame"]
        if (width, height) == (640, 480)
        else round(gate_cost_ms(settings.gate, 640, 480), 3)
    )
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        workdir = Path(tmp)
        inproc_phase(settings, opts, workdir, report, progress, width, height)
        mqtt, report["broker"], local = _broker(settings, opts.force_local_broker, workdir, notes)
        progress(f"broker: {report['broker']}")
        try:
            _run_daemon_phases(settings, mqtt, opts, workdir, report, progress, width, height)
        finally:
            if local is not None:
                local.stop()
    evaluate_targets(report)
    return report


def _run_daemon_phases(
    settings: Settings,
    mqtt: MqttSettings,
    opts: BenchOptions,
    workdir: Path,
    report: dict[str, Any],
    progress: Progress,
    width: int,
    height: int,
) -> None:
    notes: list[str] = report["notes"]
    wd = settings.watchdog
    doc = bench_config(settings, mqtt, workdir, bench_prompt(settings))
    topics = Topics(prefix=mqtt.prefix, device_id=doc["device_id"])
    observer = Observer(mqtt, topics)
    observer.start()
    daemon: DaemonProcess | None = None
    try:
        progress(f"starting the daemon (device {topics.device_id}); loading {report['model']}")
        daemon = DaemonProcess(doc, workdir, token_times=workdir / "token_times.jsonl")
        # Cold start as benchmarks/cold_start.py times it: the clock started just before the spawn,
        # READY=1 on the notify socket, then the first result (the first frame's job) at the observer.
        report["ready_s"] = round(daemon.wait_ready(wd.load_timeout_s + 60), 2)
        report["load_ms"] = daemon.load_ms()
        alive = lambda: daemon is not None and daemon.proc.poll() is None  # noqa: E731
        first = _first_result(daemon, observer, wd.total_s + 30, alive)
        report["first_result_s"] = round(first.received - daemon.started_wall, 2)
        report["provider"] = first.payload["model"]["provider"]
        # The command path must work before any phase relies on it (an ACL may refuse cmd/#).
        observer.command("set", {"gate.cooldown_s": 0.0}, 15)
        # Every process of the comparison on the same cores (the bench's own set: `taskset -c ...
        # edge bench` narrows it): neither side may get a core the other is denied.
        report["cpus"] = pin(
            [daemon.pid, *(w.pid for w in [daemon.worker()] if w is not None)], report["cpus"]
        )
        rss_main: list[float] = []

        _idle_phase(daemon, observer, opts.idle_s, len(settings.cameras), report, progress, rss_main)
        slot = [daemon]  # the overhead phase may restart the daemon: the latest one goes on
        try:
            overhead_phase(settings, slot, doc, observer, opts, workdir, report, progress, width, height)
        finally:
            daemon = slot[0]
        _latency_phase(daemon, observer, opts, report, progress, alive, wd.total_s)

        report["rss_mb_main"] = round_or_none(rss_mb(daemon.ps), 1)
        report["rss_mb_worker"] = round_or_none(rss_mb(daemon.worker()), 1)
        rss_main += [m for m in [rss_mb(daemon.ps)] if m is not None]
        rss_main += [
            float(x["main_mb"]) for x in report.get("rss_samples", []) if x.get("main_mb") is not None
        ]
        if rss_main:  # the range over the run: a target is met when even the largest sample is under it
            report["rss_mb_main_samples"] = len(rss_main)
            report.setdefault("range", {})["rss_mb_main"] = [round(min(rss_main), 1), round(max(rss_main), 1)]
    finally:
        if daemon is not None:
            progress("stopping the daemon (SIGTERM)")
            report["daemon_exit"] = daemon.stop(wd.generation_s + 30)
            if report["daemon_exit"] != 0:
                notes.append(f"daemon exit status {report['daemon_exit']}: {daemon.last_error()}")
        kinds = Counter(str(e.get("event")) for e in observer.events)
        report["events"] = dict(kinds)
        report["failures"] = kinds.get("job_failed", 0) + kinds.get("worker_restart", 0)
        with contextlib.suppress(Exception):
            observer.clear_retained()
        observer.stop()


def _first_result(
    daemon: DaemonProcess, observer: Observer, timeout_s: float, alive: Callable[[], bool]
) -> ResultSample:
    """The warm-up job's result (the gate runs the first frame); fails fast on a dead camera."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        got = observer.wait_for(lambda rs: len(rs) >= 1, 1.0, alive)
        if got:
            return got[0]
        health = observer.health[-1][1] if observer.health else {}
        if health.get("camera") == "lost":
            raise BenchError(
                f"camera {daemon.camera_source} gives no frames ({daemon.last_error(('warning', 'error'), 'camera lost')}); "
                "is it in use, e.g. by the running edge service?"
            )
    raise BenchError(f"the daemon's first job gave no result: {daemon.last_error()}")


def _idle_phase(
    daemon: DaemonProcess,
    observer: Observer,
    idle_s: float,
    cameras: int,
    report: dict[str, Any],
    progress: Progress,
    rss_main: list[float],
) -> None:
    """The main process's CPU with the cameras running and the gate shut, per 1 s window.

    One window's figure is noisy (a health publish lands in one, not the next) but the windows of a
    quiet daemon are alike: their mean gets a t-interval, and per camera it is judged against the
    idle target. CPU is read from the kernel's per-thread run time (ns), not from clock ticks, which
    are 1 % of a core per second: the size of the target itself.
    """
    progress(f"idle: {idle_s:.0f} s with the camera running and no job due")
    # let the warm-up job's publish and logging settle, and the cameras reach their idle rate
    time.sleep(1.0 + IDLE_AFTER_S)
    worker = daemon.worker()
    jobs0 = len(observer.results)
    windows: list[float] = []
    t0, main0, work0 = time.monotonic(), cpu_s(daemon.ps), cpu_s(worker)
    ta, ca = t0, run_ns(daemon.pid)
    while time.monotonic() - t0 < idle_s:
        time.sleep(max(0.0, min(1.0, t0 + idle_s - time.monotonic())))
        tb, cb = time.monotonic(), run_ns(daemon.pid)
        if ca is not None and cb is not None and tb - ta > 0.5:
            windows.append((cb - ca) / 1e9 / (tb - ta) * 100.0)
        ta, ca = tb, cb
        rss_main += [m for m in [rss_mb(daemon.ps)] if m is not None]
    dt = time.monotonic() - t0
    report["idle_s"] = round(dt, 1)
    report["idle_cpu_pct"] = round((cpu_s(daemon.ps) - main0) / dt * 100.0, 2)
    report["idle_cpu_pct_worker"] = round((cpu_s(worker) - work0) / dt * 100.0, 2)
    report["cameras"] = cameras
    per_camera = [w / max(1, cameras) for w in windows]
    ci = mean_ci(per_camera)
    if ci is not None:
        report["idle_cpu_pct_per_camera"] = round(ci.value, 3)
        report["idle_windows"] = ci.n
        report.setdefault("ci95", {})["idle_cpu_pct_per_camera"] = ci.rounded(3)
    if len(observer.results) != jobs0:
        report["notes"].append("a job ran during the idle window: idle CPU includes it")
    # Health goes out at start and every 5 s: frames counted between the first and the last so far.
    health = [h for h in observer.health if h[1].get("frames") is not None]
    if len(health) >= 2:
        (ta, a), (tb, b) = health[0], health[-1]
        if tb - ta > 1.0:
            # `frames` counts the frames decoded (at the idle rate now); each camera's `fps` is the
            # rate it delivers, the frames read off it and not decoded included
            report["camera"]["decoded_fps"] = round((int(b["frames"]) - int(a["frames"])) / (tb - ta), 1)
            rates = [float(c["fps"]) for c in (b.get("cameras") or {}).values() if c.get("fps") is not None]
            if rates:
                report["camera"]["measured_fps"] = round(sum(rates) / len(rates), 1)


def _latency_phase(
    daemon: DaemonProcess,
    observer: Observer,
    opts: BenchOptions,
    report: dict[str, Any],
    progress: Progress,
    alive: Callable[[], bool],
    total_s: float,
) -> None:
    wall_s = (report.get("job_wall_ms") or 1000.0) / 1000.0
    interval = round(max(0.2, 1.5 * wall_s + 0.1), 2)  # every job starts idle, on a fresh frame
    report["job_interval_s"] = interval
    progress(f"latency: {opts.jobs} jobs, one every {interval:g} s on a fresh frame")
    samples: list[tuple[float, int, float | None, float | None]] = []
    t_open = time.time()

    def phase(results: list[ResultSample]) -> list[ResultSample]:
        # gate-triggered results after the gate opened (a command job's result may still trail in)
        return [r for r in results if r.received > t_open and r.payload.get("trigger") == "motion"]

    observer.command("set", {"gate.motion_threshold": 0.0, "gate.min_interval_s": interval}, 30)
    deadline = time.monotonic() + opts.jobs * (interval + wall_s) * 3 + total_s + 30
    while time.monotonic() < deadline and alive():
        done = len(phase(observer.results))
        if opts.rss_sample_s:
            samples.append((time.monotonic(), done, rss_mb(daemon.ps), rss_mb(daemon.worker())))
        if done >= opts.jobs:
            break
        observer.wait_for(lambda rs: len(phase(rs)) >= opts.jobs, opts.rss_sample_s or 1.0, alive)
    observer.command("set", {"gate.motion_threshold": 1.0, "gate.min_interval_s": NEVER_S}, 30)
    got = phase(observer.results)[: opts.jobs]
    if len(got) < opts.jobs:
        report["notes"].append(f"latency phase: {len(got)} of {opts.jobs} results arrived")
    lat = [s.latency_ms for s in got if s.latency_ms is not None]
    pipe = [s.pipeline_ms for s in got if s.pipeline_ms is not None]
    report["jobs"] = len(got)
    report["latency_ms_p50"] = round_or_none(percentile(lat, 0.5), 2)
    report["latency_ms_p95"] = round_or_none(percentile(lat, 0.95), 2)
    report["generation_ms_p50"] = round_or_none(percentile([float(s.stats["total_ms"]) for s in got], 0.5), 2)
    report["pipeline_ms_p50"] = round_or_none(percentile(pipe, 0.5), 2)
    report["pipeline_ms_p95"] = round_or_none(percentile(pipe, 0.95), 2)
    report["pipeline_ms_max"] = round_or_none(max(pipe), 2) if pipe else None
    ci95 = report.setdefault("ci95", {})
    for key, values, q in (
        ("latency_ms_p50", lat, 0.5),
        ("latency_ms_p95", lat, 0.95),
        ("pipeline_ms_p50", pipe, 0.5),
        ("pipeline_ms_p95", pipe, 0.95),
    ):
        ci95[key] = finite(percentile_ci(values, q), 2)
    if samples:
        report["rss_samples"] = [
            {
                "t": round(t - samples[0][0], 2),
                "jobs": n,
                "main_mb": round_or_none(m, 2),
                "worker_mb": round_or_none(w, 2),
            }
            for t, n, m, w in samples
        ]
