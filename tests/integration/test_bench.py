"""`edge bench` as a user runs it: a subprocess on the packaged demo model, against the test broker.

Structure and sanity only (keys, positive numbers, latency covering the generation, a clean exit,
nothing left behind on the broker); the numbers themselves are printed by the benchmarks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
KEYS = (
    "overhead_pct",
    "ttft_ms",
    "decode_tok_s",
    "latency_ms_p50",
    "latency_ms_p95",
    "idle_cpu_pct",
    "rss_mb_main",
    "rss_mb_worker",
    "load_ms",
    "image_tokens",
    "num_crops",
    "gate_ms_per_frame",
)


def bench(tmp_path: Path, settings: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "edge.toml"
    config.write_text(tomli_w.dumps(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "bench", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


# The packaged demo model (the trained stand-in) answers the test pattern's scenes with real captions
# of a steady length, so daemon/bare pairs decode equally long answers; the random fixture may end at
# once on a frame (EOS first) and leave no pair to compare.
DEMO = "package:assets/models/demo-ort"


def settings_for(tmp_path: Path, broker: Any, model: str = DEMO) -> dict[str, Any]:
    path = model if model.startswith("package:") else str(MODELS / model)
    return {
        "device_id": "cam-bench",
        "camera": {"source": "testsrc", "width": 320, "height": 240, "fps": 15},
        "model": {"path": path, "num_crops": 1, "max_new_tokens": 12},
        "mqtt": {"host": broker.host, "port": broker.port, "outbox_path": str(tmp_path / "outbox.sqlite")},
    }


def test_bench_json_on_the_fixture_model(
    tmp_path: Path, mosquitto: Any, collector_factory: Callable[..., Any]
) -> None:
    res = bench(
        tmp_path,
        settings_for(tmp_path, mosquitto),
        "--json",
        "--jobs",
        "3",
        "--max-pairs",
        "6",
        "--inproc-budget-s",
        "1",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    missing = [k for k in KEYS if k not in report]
    assert not missing, missing
    for key in (
        "ttft_ms",
        "decode_tok_s",
        "latency_ms_p50",
        "latency_ms_p95",
        "rss_mb_main",
        "rss_mb_worker",
    ):
        assert report[key] > 0, (key, report[key])
    assert report["load_ms"] > 0 and report["gate_ms_per_frame"] > 0
    assert report["idle_cpu_pct"] >= 0 and isinstance(report["overhead_pct"], float)
    assert report["num_crops"] == 1 and report["image_tokens"] == 313  # one 336 px crop + the global view
    assert report["broker"].startswith("configured ") and report["provider"] == "cpu"
    assert report["jobs"] == 3 and report["failures"] == 0 and report["daemon_exit"] == 0
    # capture -> broker covers the generation it waited for
    assert report["latency_ms_p50"] >= report["generation_ms_p50"] > 0
    assert report["latency_ms_p95"] >= report["latency_ms_p50"]
    assert report["pipeline_ms_p50"] >= 0
    assert set(report["targets"]) >= {
        "overhead_pct",
        "pipeline_ms_p95",
        "idle_cpu_pct_per_camera",
        "rss_mb_main",
        "ready_s",
        "first_result_s",
    }
    # cold start: spawn -> READY -> the first result, in that order; reported, never judged
    assert 0 < report["ready_s"] <= report["first_result_s"]
    assert report["targets"]["first_result_s"]["verdict"] == "not judged"
    lo, hi = report["ci95"]["idle_cpu_pct_per_camera"]
    assert lo <= report["idle_cpu_pct_per_camera"] <= hi and report["idle_windows"] >= 5
    assert report["cpus"] and report["range"]["rss_mb_main"][1] >= report["rss_mb_main"] > 0
    assert all(t["met"] in (True, False, None) for t in report["targets"].values())
    # every judged figure carries its 95 % interval, and the verdict follows from it
    # both sides timed every token: the per-token estimator ran, on the 6 pairs asked for
    assert report["overhead_method"] == "per-token" and report["overhead_pairs"] == 6
    lo, hi = report["ci95"]["overhead_pct"]
    assert lo <= report["overhead_pct"] <= hi
    # the A/A noise floor next to it: bare against bare, one per pair, with its own interval
    assert report["overhead_aa_pairs"] == 6 == report["overhead_runs"]
    lo, hi = report["ci95"]["overhead_aa_pct"]
    assert lo <= report["overhead_aa_pct"] <= hi
    # in one process (the daemon's job path against the bare loop on one model object): the 12 rounds
    # the budget of 1 s leaves, with their A/A, and the verdict of the overhead target
    assert report["overhead_inproc_method"] == "per-token" and report["overhead_inproc_rounds"] == 12
    for key in ("overhead_inproc_pct", "overhead_inproc_aa_pct"):
        lo, hi = report["ci95"][key]
        assert lo <= report[key] <= hi, key
    assert len(report["overhead_inproc_rounds_pct"]) == 12
    # what crosses processes: the main process's CPU during the daemon's jobs, one figure per job
    lo, hi = report["ci95"]["overhead_main_cpu_pct"]
    assert 0 <= lo <= report["overhead_main_cpu_pct"] <= hi
    inproc = report["targets"]["overhead_inproc_pct"]
    assert inproc["verdict"] in ("met", "missed", "inconclusive", "not judged")
    assert inproc["ci95"] == report["ci95"]["overhead_inproc_pct"]
    assert report["targets"]["overhead_pct"]["verdict"] == "not judged"  # informative beside it
    assert report["ci95"]["pipeline_ms_p95"][1] is None  # 3 jobs cannot bound a p95 from above
    assert report["targets"]["pipeline_ms_p95"]["verdict"] in ("inconclusive", "missed")
    assert all(
        t["verdict"] in ("met", "missed", "inconclusive", "not judged") for t in report["targets"].values()
    )
    # the bench device leaves no retained status/state behind on a shared broker
    seen = collector_factory(mosquitto, "edge/cam-bench-bench/#")
    time.sleep(0.5)
    assert [m.topic for m in seen.messages if m.retain] == []


def test_bench_restarts_every_process_between_sets_of_rounds(tmp_path: Path, mosquitto: Any) -> None:
    args = ("--json", "--jobs", "3", "--max-pairs", "12", "--rotate-every", "2", "--inproc-budget-s", "1")
    res = bench(tmp_path, settings_for(tmp_path, mosquitto), *args)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    # two rounds per set of processes: six daemons and six pairs of bare loops, the interval over the
    # sets (a round whose two answers differ in length is left out, so a set may drop out with both)
    assert report["overhead_rotate"] == 2 and report["overhead_runs"] == 12
    assert 5 <= report["overhead_process_sets"] <= 6
    assert report["overhead_method"] == "per-token, per process set"
    lo, hi = report["ci95"]["overhead_pct"]
    assert (lo is None or lo <= report["overhead_pct"]) and (hi is None or report["overhead_pct"] <= hi)
    # the restarts are the bench's own: no failure, and the last daemon stopped cleanly
    assert report["failures"] == 0 and report["daemon_exit"] == 0 and report["jobs"] == 3


def test_bench_table_needs_a_vision_model(tmp_path: Path, mosquitto: Any) -> None:
    res = bench(tmp_path, settings_for(tmp_path, mosquitto, model="ort-phi3-fp32"))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge: error:") and "text-only" in lines[0]
    assert res.stdout == ""


def test_choose_writes_a_dropin_that_config_check_accepts(tmp_path: Path, mosquitto: Any) -> None:
    settings = settings_for(tmp_path, mosquitto)
    settings["camera"].update(width=1280, height=720)
    settings["model"]["max_new_tokens"] = 40  # whole captions: the cases are scored on exact answers
    res = bench(tmp_path, settings, "--choose", "--budget-s", "20", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    dropin = tmp_path / "conf.d" / "50-bench.toml"
    assert report["dropin"] == str(dropin) and dropin.is_file()
    rows = report["candidates"]
    assert rows[0]["dimension"] == "baseline" and rows[0]["job_s"] > 0 and rows[0]["image_tokens"] > 0
    assert {r["dimension"] for r in rows} >= {"threads", "num_crops", "max_edge"}
    # the demo model's own accuracy cases (edge/assets/models/manifest.json, beside its folder)
    assert report["accuracy"] == "measured"
    done = [r for r in rows if not r["skipped"]]
    assert all(r["accuracy"] is not None for r in done) and rows[0]["accuracy"] >= 0.75, rows
    assert sum(r["chosen"] for r in rows) <= 1 and report["why"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    config = str(tmp_path / "edge.toml")
    check = subprocess.run(
        [sys.executable, "-m", "edge.cli", "config", "check", "--config", config],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    show = subprocess.run(
        [sys.executable, "-m", "edge.cli", "config", "show", "--config", config],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert f"drop-in {dropin}" in show.stdout, show.stdout[-2000:]
    # a budget too small for anything but the configured values still writes a valid drop-in
    res = bench(tmp_path, settings, "--choose", "--budget-s", "0.01", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    assert any(r["skipped"] for r in json.loads(res.stdout)["candidates"])
