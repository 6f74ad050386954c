"""`edge bench --choose`: sweep the settings that trade speed for detail on this board, within a
time budget, show the table, and write the chosen values as a conf.d drop-in the daemon reads.

The sweep is one dimension at a time from the configured values (a full grid would not fit a
budget): provider order and thread count are pure speed (the fastest job wins), num_crops and
max_edge trade detail for speed. Detail is judged only when it can be measured:

- accuracy: when the model folder describes its world (`standin.json` in the folder, or a
  `manifest.json` beside or above it, with an "eval" list of {"image", "prompt", "answer"}), each
  setting answers those cases and is scored by exact match; the fastest setting within 2 points of
  the best accuracy is chosen. Otherwise the column says n/a, and
- without accuracy, the most detailed setting whose mean job time fits `--job-s` is chosen; with no
  such target the configured detail is kept (the table shows what less detail would buy).

Each setting loads the backend in this process (as `edge run`'s worker does), warms up once and
runs a few jobs on a testsrc frame of the camera's size (or on the eval images).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge import __version__
from edge.capture.testsrc import render_frame
from edge.cli.bench.measure import BenchError
from edge.cli.bench.stats import mean_ci, t975
from edge.config.settings import (
    LocalModelSettings,
    ModelSettings,
    OpenVINOModelSettings,
    OrtGenAIModelSettings,
    Settings,
    TaskSettings,
)
from edge.config.sources import LoadedSettings, dropin_dir, load_settings
from edge.core.errors import ConfigError
from edge.core.messages import GenerationRequest
from edge.imaging.frames import prepare_image
from edge.inference.model_folder import validate_for
from edge.inference.requests import bind

Progress = Callable[[str], None]
DROPIN_NAME = "50-bench.toml"
ACCURACY_SLACK = 0.02  # a setting within 2 points of the best accuracy counts as accurate enough


@dataclass
class Candidate:
    providers: list[str]
    threads: int | None
    num_crops: int
    max_edge: int | None
    dimension: str  # which knob this candidate varies ("baseline" for the configured values)
    # measured
    load_ms: float | None = None
    ttft_ms: float | None = None
    decode_tok_s: float | None = None
    decode_ci95: list[float] | None = None
    image_tokens: int | None = None
    job_s: float | None = None
    accuracy: float | None = None
    provider: str | None = None
    error: str | None = None
    skipped: str | None = None
    chosen: bool = False
    runs: list[dict[str, Any]] = field(default_factory=list)

    def key(self) -> tuple[Any, ...]:
        return (tuple(self.providers), self.threads, self.num_crops, self.max_edge)

    def row(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "runs"}
        return d


def _stderr(msg: str) -> None:
    print(f"edge bench --choose: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- accuracy hook


def eval_cases(folder: Path) -> list[dict[str, Any]] | None:
    """The model's own evaluation cases, if its folder describes its world; else None (n/a)."""
    for manifest in (folder / "standin.json", folder / "manifest.json", folder.parent / "manifest.json"):
        if not manifest.is_file():
            continue
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        cases = doc.get("eval") if isinstance(doc, dict) else None
        if not isinstance(cases, list):
            continue
        out = []
        for case in cases:
            if isinstance(case, dict) and {"image", "prompt", "answer"} <= set(case):
                image = (manifest.parent / str(case["image"])).resolve()
                if image.is_file():
                    out.append({**case, "image": image})
        if out:
            return out
    return None


def _score(answer: str, expected: str) -> bool:
    def norm(s: str) -> str:
        return " ".join(s.lower().strip().rstrip(".").split())

    return norm(answer) == norm(expected)


# --------------------------------------------------------------------------- the sweep


def local_model(settings: Settings) -> OrtGenAIModelSettings | OpenVINOModelSettings:
    """The model section to tune: a local runtime's (an http server's hardware is the server's own)."""
    if not isinstance(settings.model, LocalModelSettings):
        raise BenchError(
            f"--choose tunes a local runtime's providers, threads and num_crops; backend "
            f"{settings.model.backend!r} has none of them"
        )
    return settings.model


def candidates(settings: Settings, vision: bool) -> list[Candidate]:
    """The configured values first, then one dimension at a time around them."""
    m, cam = local_model(settings), settings.camera
    cpus = os.cpu_count() or 1
    base = Candidate(list(m.providers), m.threads, m.num_crops, cam.max_edge, "baseline")
    out = [base]

    def add(dimension: str, **change: Any) -> None:
        c = Candidate(
            change.get("providers", base.providers),
            change.get("threads", base.threads),
            change.get("num_crops", base.num_crops),
            change.get("max_edge", base.max_edge),
            dimension,
        )
        if c.key() not in {x.key() for x in out}:
            out.append(c)

    for i in range(1, len(m.providers)):  # each configured provider first, the rest kept as fallback
        add("providers", providers=[m.providers[i], *m.providers[:i], *m.providers[i + 1 :]])
    for t in (None, *sorted({1, max(1, cpus // 2), cpus})):  # None: the runtime's default
        add("threads", threads=t)
    if vision:
        for n in (1, 2, 4):
            add("num_crops", num_crops=n)
        longest = max(cam.width or 640, cam.height or 480)
        for edge in (1344, 672):
            if edge < longest and edge != cam.max_edge:
                add("max_edge", max_edge=edge)
    return out


def _frame(settings: Settings, max_edge: int | None) -> np.ndarray:
    cam = settings.camera
    return prepare_image(render_frame(3, cam.width or 640, cam.height or 480, cam.fps or 15.0), max_edge)


def measure(
    settings: Settings,
    cand: Candidate,
    runs: int,
    cases: list[dict[str, Any]] | None,
    prompt: str,
    vision: bool,
) -> None:
    """Load the backend with the candidate's values and time `runs` jobs (or the eval cases)."""
    from edge.imaging.imageio import read_image_file
    from edge.inference.registry import load_backend

    model: ModelSettings = local_model(settings).model_copy(
        update={"providers": cand.providers, "threads": cand.threads, "num_crops": cand.num_crops}
    )
    t0 = time.perf_counter()
    backend = load_backend(model)
    cand.load_ms = round((time.perf_counter() - t0) * 1000.0, 1)
    cand.provider = backend.info.provider
    try:
        jobs: list[tuple[np.ndarray | None, str, str | None]]
        if cases:
            jobs = [
                (
                    prepare_image(read_image_file(str(c["image"])), cand.max_edge),
                    str(c["prompt"]),
                    str(c["answer"]),
                )
                for c in cases
            ]
        else:
            frame = _frame(settings, cand.max_edge) if vision else None
            jobs = [(frame, prompt, None)] * runs
        warm = jobs[0]
        backend.generate(_request(warm[0], warm[1], model, 4))
        right = 0
        for image, text, expected in jobs:
            t = time.perf_counter()
            gen = backend.generate(_request(image, text, model, model.max_new_tokens))
            stats = gen.stats
            cand.runs.append(
                {
                    "ttft_ms": stats.ttft_ms,
                    "decode_tok_s": stats.decode_tok_s,
                    "new_tokens": stats.new_tokens,
                    "image_tokens": stats.image_tokens,
                    "job_s": time.perf_counter() - t,
                }
            )
            if expected is not None:
                right += _score(gen.text, expected)
        if cases:
            cand.accuracy = round(right / len(jobs), 3)
    finally:
        backend.close()
    decode = [r["decode_tok_s"] for r in cand.runs if r["new_tokens"] > 1]
    cand.ttft_ms = round(statistics.median(r["ttft_ms"] for r in cand.runs), 1)
    cand.job_s = round(statistics.fmean(r["job_s"] for r in cand.runs), 3)
    cand.image_tokens = int(cand.runs[0]["image_tokens"])
    if decode:
        cand.decode_tok_s = round(statistics.median(decode), 1)
        ci = mean_ci(decode)
        cand.decode_ci95 = ci.rounded(1) if ci else None


def _request(image: np.ndarray | None, prompt: str, model: ModelSettings, max_new: int) -> GenerationRequest:
    """Bound to the candidate like a daemon job (its system prompt and num_crops), but greedy and
    `max_new` long so that the candidates compare."""
    request = bind(GenerationRequest(prompt=prompt, images=(image,) if image is not None else ()), model)
    return dataclasses.replace(request, max_new_tokens=max_new, temperature=0.0)


def _show(c: Candidate, name: str) -> str:
    value = getattr(c, name)
    if name == "threads":
        return str(value) if value else "the runtime's default (all cores)"
    if name == "max_edge":
        return str(value) if value else "none (the camera's full frame)"
    return ",".join(value) if isinstance(value, list) else str(value)


def faster_by(base: Candidate, other: Candidate) -> tuple[float, float, float] | None:
    """How much faster a job `other` is than `base` (mean, 95 % interval, Welch), or None when the
    interval includes 0: a setting replaces the configured one only when it is surely faster."""
    a = [r["job_s"] for r in base.runs]
    b = [r["job_s"] for r in other.runs]
    if len(a) < 2 or len(b) < 2:
        return None
    d = statistics.fmean(a) - statistics.fmean(b)
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    half = t975(min(len(a), len(b)) - 1) * se
    return (d, d - half, d + half) if d - half > 0 else None


def choose(cands: list[Candidate], job_s: float | None) -> tuple[Candidate, list[str]]:
    """The chosen values, per dimension from the baseline; and why, one line per dimension."""
    ok = [c for c in cands if c.job_s is not None]
    base = next(c for c in cands if c.dimension == "baseline")
    if base.job_s is None:
        raise BenchError(f"the configured settings could not be measured: {base.error or base.skipped}")
    why: list[str] = []
    chosen = Candidate(list(base.providers), base.threads, base.num_crops, base.max_edge, "chosen")

    def dim(name: str) -> list[Candidate]:
        return [base, *(c for c in ok if c.dimension == name)]

    def speed(c: Candidate) -> float:
        return c.job_s or float("inf")

    for name in ("providers", "threads"):
        group = dim(name)
        if len(group) <= 1:
            continue
        best = min(group, key=speed)
        if best is base:
            why.append(f"{name}: {_show(base, name)} kept (the configured value was fastest)")
            continue
        gain = faster_by(base, best)
        if gain is None:
            why.append(
                f"{name}: {_show(base, name)} kept ({_show(best, name)} was faster, {best.job_s:.2f} vs "
                f"{base.job_s:.2f} s a job, but not surely: the 95 % interval of the gain includes 0)"
            )
            continue
        setattr(chosen, name, getattr(best, name))
        why.append(
            f"{name}: {_show(best, name)} ({gain[0]:.2f} s [{gain[1]:.2f}, {gain[2]:.2f}] faster a job, 95 % CI)"
        )
    accuracy_known = base.accuracy is not None
    for name in ("num_crops", "max_edge"):
        group = dim(name)
        if len(group) <= 1:
            continue
        if accuracy_known:
            top = max(c.accuracy or 0.0 for c in group)
            good = [c for c in group if (c.accuracy or 0.0) >= top - ACCURACY_SLACK]
            best = min(good, key=speed)
            why.append(
                f"{name}: {_show(best, name)} (fastest within 2 points of the best accuracy {top:.2f})"
            )
        elif job_s is not None:
            fits = [c for c in group if speed(c) <= job_s]
            detail = lambda c: (c.num_crops, c.max_edge or 1 << 30)  # noqa: E731
            best = max(fits, key=detail) if fits else min(group, key=speed)
            why.append(
                f"{name}: {_show(best, name)} ("
                + (
                    f"most detail within --job-s {job_s:g}"
                    if fits
                    else f"none fits --job-s {job_s:g}: the fastest"
                )
                + ")"
            )
        else:
            best = base
            why.append(
                f"{name}: {_show(best, name)} kept (no accuracy to judge detail by, no --job-s target)"
            )
        setattr(chosen, name, getattr(best, name))
    for c in cands:
        c.chosen = c.key() == chosen.key()
    return chosen, why


def run_choose(
    settings: Settings,
    budget_s: float,
    job_s: float | None = None,
    runs: int = 5,
    progress: Progress = _stderr,
) -> dict[str, Any]:
    folder = validate_for(local_model(settings).path, settings.model.backend)
    cases = eval_cases(folder.path)
    task = next((t for t in settings.tasks if t.kind == "caption"), None)
    prompt = task.prompt if task is not None else TaskSettings(name="caption").prompt
    cands = candidates(settings, folder.vision)
    t_start = time.monotonic()
    progress(
        f"{len(cands)} settings on {folder.name} ({settings.model.backend}), budget {budget_s:.0f} s; accuracy: "
        + (f"{len(cases)} cases from the model's manifest" if cases else "n/a (no manifest with eval cases)")
    )
    per: list[float] = []
    for c in cands:
        spent = time.monotonic() - t_start
        estimate = statistics.median(per) if per else 0.0
        if c.dimension != "baseline" and spent + estimate > budget_s:
            c.skipped = f"budget ({spent:.0f} of {budget_s:.0f} s spent)"
            continue
        progress(
            f"{c.dimension}: providers {c.providers}, threads {c.threads or 'default'}, "
            f"num_crops {c.num_crops}, max_edge {c.max_edge}"
        )
        t0 = time.monotonic()
        try:
            measure(settings, c, runs, cases, prompt, folder.vision)
        except Exception as err:  # one setting that cannot load (a provider missing) is a row, not the end
            c.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        per.append(time.monotonic() - t0)
    chosen, why = choose(cands, job_s)
    return {
        "edge_version": __version__,
        "model": folder.name,
        "backend": settings.model.backend,
        "cpus": os.cpu_count(),
        "budget_s": budget_s,
        "spent_s": round(time.monotonic() - t_start, 1),
        "accuracy": "measured" if cases else "n/a",
        "candidates": [c.row() for c in cands],
        "chosen": {
            "providers": chosen.providers,
            "threads": chosen.threads,
            "num_crops": chosen.num_crops,
            "max_edge": chosen.max_edge,
        },
        "why": why,
    }


# --------------------------------------------------------------------------- output


def render(report: dict[str, Any]) -> str:
    head = [
        f"edge bench --choose {report['edge_version']}: {report['model']} ({report['backend']}), "
        f"{report['cpus']} CPUs, {report['spent_s']:.0f} of {report['budget_s']:.0f} s",
        "",
        "| | varies | providers | threads | num_crops | max_edge | image tokens | ttft ms | decode tok/s [95 % CI] | job s | accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for c in report["candidates"]:
        if c["job_s"] is None:
            result = f"| {c['error'] or 'skipped: ' + str(c['skipped'])} | | | | |"
        else:
            ci = c["decode_ci95"]
            dec = "n/a" if c["decode_tok_s"] is None else f"{c['decode_tok_s']:.1f}"
            dec += f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else ""
            acc = "n/a" if c["accuracy"] is None else f"{c['accuracy']:.2f}"
            result = f"| {c['image_tokens']} | {c['ttft_ms']:.0f} | {dec} | {c['job_s']:.2f} | {acc} |"
        rows.append(
            f"| {'**chosen**' if c['chosen'] else ''} | {c['dimension']} | {','.join(c['providers'])} | "
            f"{c['threads'] or 'default'} | {c['num_crops']} | {c['max_edge'] or '-'} " + result
        )
    tail = ["", *(f"- {w}" for w in report["why"])]
    if report.get("dropin"):
        tail.append(f"\nwritten: {report['dropin']} (edge config show names it as the origin of these keys)")
    return "\n".join(head + rows + tail)


def dropin_text(report: dict[str, Any]) -> str:
    ch = report["chosen"]
    model: dict[str, Any] = {"providers": ch["providers"], "num_crops": ch["num_crops"]}
    if ch["threads"]:
        model["threads"] = ch["threads"]
    lines = [
        f"# Written by `edge bench --choose` (edge {report['edge_version']}) on "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}, model {report['model']}.",
        "# Merged after the config file, before credentials, EDGE_* and --set; delete it to undo.",
        *(f"#   {w}" for w in report["why"]),
        "",
        "[model]",
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in model.items()]  # strings and lists: JSON is TOML here
    if ch["max_edge"] is not None:
        lines += ["", "[camera]", f"max_edge = {int(ch['max_edge'])}"]
    return "\n".join(lines) + "\n"


def write_dropin(loaded: LoadedSettings, report: dict[str, Any], out: Path | None) -> Path:
    """Write the drop-in, then load the settings with it: a drop-in the daemon would refuse is removed."""
    path = out or dropin_dir(loaded.config_file) / DROPIN_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(dropin_text(report), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        raise BenchError(
            f"cannot write the drop-in {path}: {err.strerror} (choose another with --out)"
        ) from None
    if out is None or path.parent == dropin_dir(loaded.config_file):
        try:
            load_settings(config=loaded.config_file)
        except ConfigError as err:
            path.unlink(missing_ok=True)
            raise BenchError(f"the drop-in {path} was not accepted, removed: {err}") from None
    return path


def choose_command(
    loaded: LoadedSettings, as_json: bool, budget_s: float, out: Path | None, job_s: float | None = None
) -> int:
    if budget_s <= 0:
        raise BenchError("--budget-s must be positive")
    report = run_choose(loaded.settings, budget_s, job_s)
    report["dropin"] = str(write_dropin(loaded, report, out))
    print(json.dumps(report) if as_json else render(report))
    return 0
