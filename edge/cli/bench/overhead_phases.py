"""The two overhead phases of `edge bench`: in one process on one model object (the verdict's
figure, phase 1b) and across processes against the daemon (phase 3, informative where the first
exists), with the daemon restarts the second uses to sample fresh processes. command.py's docstring
describes the whole run."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from edge.capture.testsrc import render_frame
from edge.cli.bench.daemon_run import (
    TASK,
    DaemonProcess,
    Observer,
    RunTimeSampler,
    pin,
)
from edge.cli.bench.measure import (
    BARE_SCRIPT,
    BareProcess,
    BenchError,
    ProbeProcess,
    bare_inputs,
    bare_provider,
    median,
)
from edge.cli.bench.options import BenchOptions, Progress, bench_prompt, round_or_none
from edge.cli.bench.overhead_estimate import (
    comparable_pairs,
    log_ratios,
    overhead_ci,
    put_shift,
    report_overhead,
    rounds_pct,
    settled,
)
from edge.cli.bench.stats import (
    cpu_ns_within,
    main_cpu_share_pct,
    mean_ci,
)
from edge.config.settings import LocalModelSettings, Settings


def inproc_phase(
    settings: Settings,
    opts: BenchOptions,
    workdir: Path,
    report: dict[str, Any],
    progress: Progress,
    width: int,
    height: int,
) -> None:
    """The overhead in one process, on one model object: the daemon's job path against the bare loop.

    Runs before the daemon starts (nothing else of the bench's is loaded). The probe child loads the
    model once through the worker's own loader; each round runs A (worker.run_job: heartbeat,
    deadline, token clock, sanitising) with a bare generator on the same model interleaved token by
    token (its steps timed and taken off A's), then the bare loop itself in A's place the same way
    (the A/A), the pairs' order alternating. Two processes of one program can differ by a few percent
    per token on a virtualised board; two generators of one process share weights, pages, sessions and
    each moment's load, so only the code differs. ORT GenAI only (the OpenVINO pipeline has no
    per-token loop to interleave).
    """
    model = settings.model
    if not isinstance(model, LocalModelSettings) or model.backend != "ort-genai":
        report["notes"].append("in-process overhead: measured on ort-genai models only; not run")
        return
    frame_path, model_path = workdir / "probe_frame.npy", workdir / "probe_model.json"
    np.save(frame_path, render_frame(0, width, height, 15.0))
    model_path.write_text(model.model_dump_json(), encoding="utf-8")
    progress("in-process overhead: loading the model once for the daemon's job path and the bare loop")
    t0 = time.monotonic()
    probe = ProbeProcess(
        model_path, frame_path, bench_prompt(settings), settings.watchdog.load_timeout_s + 60
    )
    runs: dict[str, list[dict[str, Any]]] = {"a": [], "b": [], "b2": [], "b2_ref": []}
    try:
        report["cpus"] = pin([probe.pid], report["cpus"])
        tokens = max(model.max_new_tokens, opts.inproc_tokens)
        report["overhead_inproc_max_new_tokens"] = tokens
        probe.round(0, tokens)  # warm-up, not counted
        t_rounds = time.monotonic()
        for i in range(opts.inproc_max_rounds):
            if i >= opts.inproc_min_rounds and i % 2 == 0:
                ab, aa = overhead_ci(runs["a"], runs["b"]), overhead_ci(runs["b2"], runs["b2_ref"])
                narrow = ab is not None and aa is not None
                if narrow and max(ab.half_width, aa.half_width) <= opts.overhead_half_width:  # type: ignore[union-attr]
                    break
                if time.monotonic() - t_rounds > opts.inproc_budget_s:
                    break
            reply = probe.round(i, tokens)
            for arm in runs:
                runs[arm].append(reply[arm])
            if i % 10 == 9:
                ab, aa = overhead_ci(runs["a"], runs["b"]), overhead_ci(runs["b2"], runs["b2_ref"])
                if ab is not None and aa is not None:
                    progress(
                        f"in-process overhead: {i + 1} rounds, {ab.value:+.2f} % [{ab.low:+.2f}, {ab.high:+.2f}]; "
                        f"A/A {aa.value:+.2f} % [{aa.low:+.2f}, {aa.high:+.2f}]"
                    )
    finally:
        probe.close()
    report["overhead_inproc_s"] = round(time.monotonic() - t0, 1)
    ab_logs, method = log_ratios(runs["a"], runs["b"])
    aa_logs, _ = log_ratios(runs["b2"], runs["b2_ref"])
    report["overhead_inproc_method"] = method
    report["overhead_inproc_rounds"] = len(ab_logs)
    report["overhead_inproc_rounds_pct"] = rounds_pct(ab_logs, aa_logs)
    for key, logs in (("overhead_inproc_pct", ab_logs), ("overhead_inproc_aa_pct", aa_logs)):
        put_shift(report, key, logs)


def _restart_daemon(
    slot: list[DaemonProcess],
    doc: dict[str, Any],
    observer: Observer,
    settings: Settings,
    workdir: Path,
    report: dict[str, Any],
) -> None:
    """Stop the daemon in `slot[0]` and put a fresh one, loaded, warmed up and pinned, in its place."""
    wd = settings.watchdog
    old = slot[0]
    code = old.stop(wd.generation_s + 30)
    if code != 0:
        report["notes"].append(
            f"a daemon restarted by the overhead phase exited with {code}: {old.last_error()}"
        )
    n = len([d for d in workdir.iterdir() if d.name.startswith("daemon-")]) + 2
    folder = workdir / f"daemon-{n}"
    folder.mkdir()
    seen = len(observer.results)
    fresh = DaemonProcess(doc, folder, token_times=folder / "token_times.jsonl")
    slot[0] = fresh  # stopped by the caller from here on, whatever happens next
    fresh.wait_ready(wd.load_timeout_s + 60)
    alive = lambda: fresh.proc.poll() is None  # noqa: E731
    if len(observer.wait_for(lambda rs: len(rs) > seen, wd.total_s + 30, alive)) <= seen:
        raise BenchError(f"a restarted daemon's first job gave no result: {fresh.last_error()}")
    pin([fresh.pid, *(w.pid for w in [fresh.worker()] if w is not None)], report["cpus"])


def overhead_phase(
    settings: Settings,
    slot: list[DaemonProcess],
    doc: dict[str, Any],
    observer: Observer,
    opts: BenchOptions,
    workdir: Path,
    report: dict[str, Any],
    progress: Progress,
    width: int,
    height: int,
) -> None:
    model = settings.model
    wd = settings.watchdog
    runtime: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []  # a second bare loop's runs, in the daemon's mirror place: the A/A
    walls: list[float] = []
    main_share: list[float] = []  # per daemon job: the main process's CPU, % of the bench's cores
    main_share_job: list[float] = []  # ... its whole job's CPU over the same decode time

    block = 0  # which set of processes a round ran on

    def daemon_job() -> None:
        daemon = slot[0]
        seen = len(daemon.token_steps())
        cpus = len(report["cpus"]) or os.cpu_count() or 1
        sampler = RunTimeSampler(daemon.pid)
        t0 = time.monotonic()
        reply = observer.command("capture", {"task": TASK}, wd.total_s + 30)
        walls.append(time.monotonic() - t0)
        # the reply is small ({id, topic}); the stats come with the result on its own topic
        stats = observer.result(str(reply["result"]["id"]), 30).stats
        samples = sampler.stop()
        # The main process's CPU as a share of the runtime's cores while the worker decoded: all of
        # its CPU in the decode's window (the worker's first to last token) is counted as taken from
        # them, an upper bound. The whole job's (command, frame hand-over, publish included) over the
        # same decode time is the looser bound beside it.
        window = daemon.last_decode_window()
        if window is not None and window[1] > window[0]:
            ns = cpu_ns_within(samples, *window)
            if ns is not None:
                main_share.append(main_cpu_share_pct(int(ns), window[1] - window[0], cpus))
        decode_s = (float(stats["total_ms"]) - float(stats["ttft_ms"])) / 1000.0
        if len(samples) >= 2 and decode_s > 0:
            job_ns = samples[-1][1] - samples[0][1]
            main_share_job.append(main_cpu_share_pct(job_ns, decode_s, cpus))
        # the worker wrote the job's per-token times before it handed the result over
        steps = daemon.token_steps()
        if len(steps) > seen:
            stats["steps_ms"] = steps[-1]
        stats["block"] = block
        runtime.append(stats)

    local = model if isinstance(model, LocalModelSettings) else None
    folder_mb = (
        0.0
        if local is None
        else sum(f.stat().st_size for f in Path(str(local.path)).rglob("*") if f.is_file()) / 2**20
    )
    # two bare processes (the A/A needs its own), each with the model loaded once more
    low_memory = psutil.virtual_memory().available / 2**20 < 2.5 * folder_mb + 512
    if local is None or low_memory or not BARE_SCRIPT.is_file():
        if local is None:  # ttft, decode and latency are the endpoint's as the daemon sees them
            why = "the model runs on the endpoint: no local runtime to compare the daemon with"
        elif low_memory:
            why = "not enough free memory to load the model twice more"
        else:
            why = f"the bare baseline {BARE_SCRIPT} is missing from this install"
        report["notes"].append(f"bare loop skipped: {why}")
        progress(f"overhead: bare loop skipped ({why}); daemon jobs only")
        for _ in range(opts.overhead_runs):
            daemon_job()
    else:
        provider, popts = bare_provider(local, report["provider"])
        progress(f"overhead: loading two bare runtime loops ({local.backend}, {provider})")
        inputs = bare_inputs(local, True, bench_prompt(settings), width, height, workdir / "bare_inputs.npz")
        bares: list[BareProcess] = []

        def start_bares() -> tuple[BareProcess, BareProcess]:
            for bp in bares:
                bp.close()
            bares.clear()
            for _ in range(2):
                bares.append(BareProcess(local, provider, popts, wd.load_timeout_s))
            pin([bp.pid for bp in bares], report["cpus"])
            for bp in bares:
                bp.generate(inputs, local.max_new_tokens)  # warm-up
            return bares[0], bares[1]

        def tagged(reply: dict[str, Any]) -> dict[str, Any]:
            return {**reply, "block": block}

        try:
            b1, b2 = start_bares()
            report["bare_load_ms"] = round(b1.load_ms, 1)
            if opts.overhead_rotate:
                progress(
                    f"overhead: the daemon and both bare loops restart every {opts.overhead_rotate} rounds"
                )
            progress(
                f"overhead: daemon jobs and two bare loops in turn until the A/B and A/A 95 % intervals are "
                f"within +/-{opts.overhead_half_width:g} points ({opts.overhead_runs}..{opts.overhead_max_pairs} "
                f"rounds, {opts.overhead_budget_s:.0f} s)"
            )
            length = model.max_new_tokens
            t_pairs = time.monotonic()
            for i in range(opts.overhead_max_pairs):
                rotate = opts.overhead_rotate
                if (
                    i >= opts.overhead_runs
                    and (not rotate or i % rotate == 0)
                    and (
                        settled(runtime, bare, again, opts.overhead_half_width, rotate)
                        or time.monotonic() - t_pairs > opts.overhead_budget_s
                    )
                ):
                    break
                if rotate and i and i % rotate == 0:  # a fresh set of processes
                    block += 1
                    _restart_daemon(slot, doc, observer, settings, workdir, report)
                    b1, b2 = start_bares()
                # One round: the daemon (D), the reference bare loop (B1) and a second bare loop (B2),
                # as D B1 B2 and then B2 B1 D. A/B is D against B1, A/A is B2 against B1, and D and B2
                # sit in mirror places: the same neighbours, the same idle time before each run, the
                # same side of B1 across two rounds (a linear drift cancels). Whatever the schedule
                # does to a process (a scheduler's credit after sleeping, caches another process
                # evicted) it does to the daemon and to B2 alike, so an A/A interval that covers 0 says
                # the A/B one is not bent by it. The bare runs are as long as the daemon's last
                # answer: the camera's frame may have ended it early.
                if i % 2 == 0:
                    daemon_job()
                    length = max(2, int(runtime[-1]["new_tokens"]))
                    bare.append(tagged(b1.generate(inputs, length)))
                    again.append(tagged(b2.generate(inputs, length)))
                else:
                    again.append(tagged(b2.generate(inputs, length)))
                    bare.append(tagged(b1.generate(inputs, length)))
                    daemon_job()
                    length = max(2, int(runtime[-1]["new_tokens"]))
                if i + 1 >= opts.overhead_runs and i % 5 == 4:
                    ab, aa = overhead_ci(runtime, bare, rotate), overhead_ci(again, bare, rotate)
                    if ab is not None and aa is not None:
                        progress(
                            f"overhead: {i + 1} rounds, {ab.value:+.2f} % [{ab.low:+.2f}, {ab.high:+.2f}]; "
                            f"A/A {aa.value:+.2f} % [{aa.low:+.2f}, {aa.high:+.2f}]"
                        )
        finally:
            for bp in bares:
                bp.close()
        if inputs.image_tokens != runtime[0]["image_tokens"]:
            report["notes"].append(
                f"the camera's frames give {runtime[0]['image_tokens']} image tokens, the bare loop's "
                f"{width}x{height} frame {inputs.image_tokens}: the comparison is approximate"
            )
    report["overhead_runs"] = len(runtime)
    for key, shares in (("overhead_main_cpu_pct", main_share), ("overhead_main_cpu_job_pct", main_share_job)):
        share = mean_ci(shares)
        if share is not None:
            report[key] = round(share.value, 3)
            # a share of the cores is >= 0: a t-interval on a few skewed jobs can reach below it
            low, high = share.rounded(3)
            report.setdefault("ci95", {})[key] = [max(0.0, low), high]
    report["job_wall_ms"] = round_or_none(median([w * 1000 for w in walls]), 1)
    report["image_tokens"] = runtime[0]["image_tokens"]
    report["prompt_tokens"] = runtime[0]["prompt_tokens"]
    report["new_tokens"] = median([r["new_tokens"] for r in runtime])
    report["ttft_ms"] = round_or_none(median([r["ttft_ms"] for r in runtime]), 2)
    report["decode_tok_s"] = round_or_none(
        median([r["decode_tok_s"] for r in runtime if r["new_tokens"] > 1]), 1
    )
    if report["decode_tok_s"]:
        report["decode_ms_per_token"] = round(1000.0 / report["decode_tok_s"], 3)
    if bare:
        report["bare_new_tokens"] = median([b["new_tokens"] for b in bare])
        report["bare_ttft_ms"] = round_or_none(median([b["ttft_ms"] for b in bare]), 2)
        report["bare_decode_tok_s"] = round_or_none(
            median([b["decode_tok_s"] for b in bare if b["new_tokens"] > 1]), 1
        )
        report["preprocess_ms"] = inputs.preprocess_ms
        pairs = comparable_pairs(runtime, bare)
        if pairs and len(pairs) < len(
            [1 for r, b in zip(runtime, bare, strict=False) if r["new_tokens"] > 1]
        ):
            report["notes"].append(
                "answers differed in length between the two sides in some pairs: those were left out"
            )
        report_overhead(report, runtime, bare, again, opts.overhead_rotate)
