"""Which execution providers can actually load a model, found by loading it in a child process.

The runtimes' own availability probes lie (ORT GenAI says OpenVINO and QNN are available on the CPU
wheel), so the only honest answer is a load. A provider may also crash the process (a driver that
segfaults, a DSP library that aborts) or hang (a first NPU compilation): the loads run in a child
process, one provider after another, each with its own timeout, and a crash or timeout costs only
that provider's answer: the next ones run in a fresh child.

Protocol: `python -m edge.cli.provider_probe BACKEND MODEL_DIR PROVIDER...` prints one JSON line per
provider, in order: {"provider": ..., "ok": bool, "detail": str, "load_ms": float | null}.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_NO_PROVIDER = re.compile(r"^no provider could load .*? \((?P<reasons>.*)\)$", re.S)


@dataclass(frozen=True)
class ProviderProbe:
    provider: str
    ok: bool
    detail: str  # why not, or what loaded ("loaded in 27 ms")
    load_ms: float | None = None


def probe_providers(
    backend: str, model: Path, providers: list[str], timeout_s: float = 60.0
) -> tuple[ProviderProbe, ...]:
    """Load `model` with `backend` on each provider alone, in a child process; never raises."""
    results: list[ProviderProbe] = []
    remaining = list(providers)
    while remaining:
        done, remaining = _run_child(backend, model, remaining, timeout_s)
        results += done
    return tuple(results)


def _run_child(
    backend: str, model: Path, providers: list[str], timeout_s: float
) -> tuple[list[ProviderProbe], list[str]]:
    """Probe providers in one child until it finishes, crashes or one provider times out; returns
    (answers, providers still to probe)."""
    cmd = [sys.executable, "-m", "edge.cli.provider_probe", backend, str(model), *providers]
    done: list[ProviderProbe] = []
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True)
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_pump, args=(proc, lines), name="provider-probe", daemon=True)
        reader.start()
        try:
            for index, provider in enumerate(providers):
                try:
                    line = lines.get(timeout=timeout_s)
                except queue.Empty:
                    log.warning("provider probe %s/%s timed out after %.0fs", backend, provider, timeout_s)
                    done.append(
                        ProviderProbe(provider, False, f"load did not finish within {timeout_s:.0f} s")
                    )
                    return done, providers[index + 1 :]
                if line is None:  # the child died before answering for this provider
                    code = proc.wait()
                    err.seek(0)
                    tail = _last_line(err.read().decode("utf-8", "replace"))
                    why = f"crashed the process (exit {code})" + (f": {tail}" if tail else "")
                    done.append(ProviderProbe(provider, False, why))
                    return done, providers[index + 1 :]
                done.append(_parse(provider, line))
            return done, []
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            reader.join(timeout=5.0)


def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            lines.put(line)
    lines.put(None)


def _parse(provider: str, line: str) -> ProviderProbe:
    try:
        doc = json.loads(line)
        return ProviderProbe(provider, bool(doc["ok"]), str(doc["detail"]), doc.get("load_ms"))
    except (ValueError, KeyError, TypeError) as err:
        return ProviderProbe(provider, False, f"unreadable probe answer: {err}")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def _reason(provider: str, message: str) -> str:
    """ProviderError says 'no provider could load X (cuda: why)'; the table wants just 'why'."""
    match = _NO_PROVIDER.match(message.strip())
    if match:
        reasons = match.group("reasons")
        prefix = f"{provider}: "
        return reasons[len(prefix) :] if reasons.lower().startswith(prefix.lower()) else reasons
    return message.strip().splitlines()[0] if message.strip() else "failed"


# --------------------------------------------------------------------------- child process


def _child(backend: str, model: str, providers: list[str]) -> int:
    from edge.config.settings import model_settings
    from edge.core.errors import EdgeError
    from edge.inference.registry import load_backend

    for provider in providers:
        t0 = time.perf_counter()
        try:
            section = model_settings(path=model, backend=backend, providers=[provider])
            loaded = load_backend(section)
        except EdgeError as err:
            answer = {"provider": provider, "ok": False, "detail": _reason(provider, str(err))[:300]}
        except Exception as err:  # a runtime bug is still an answer about this provider
            answer = {"provider": provider, "ok": False, "detail": f"{type(err).__name__}: {err}"[:300]}
        else:
            ms = round((time.perf_counter() - t0) * 1000.0, 1)
            used = loaded.info.provider
            loaded.close()
            if used.lower() == provider.lower():
                answer = {"provider": provider, "ok": True, "detail": f"loaded in {ms:.0f} ms", "load_ms": ms}
            else:
                answer = {"provider": provider, "ok": False, "detail": f"the runtime used {used} instead"}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(name)s: %(message)s")
    if len(sys.argv) < 4:
        print("usage: python -m edge.cli.provider_probe BACKEND MODEL_DIR PROVIDER...", file=sys.stderr)
        sys.exit(2)
    sys.exit(_child(sys.argv[1], sys.argv[2], sys.argv[3:]))
