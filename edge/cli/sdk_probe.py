"""Whether each backend's SDK imports, asked in child processes so that a native crash is an answer.

A runtime's import can kill the process that tries it: a wheel built for another CPU, a missing CPU
feature, a broken driver library (onnxruntime dies with SIGSEGV in its CPU detection when it sees a
/proc/cpuinfo it does not understand). `edge devices` must still print its table then, with that
backend's line saying what happened, so the imports run in one child per backend, all at once, each
with a time limit.

Protocol: `python -m edge.cli.sdk_probe MODULE` imports MODULE (a backend module of
edge.inference.registry), calls its sdk_available() and prints one JSON line:
{"installed": true} or {"installed": "why not"}.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO


def probe_sdks(modules: dict[str, str], timeout_s: float = 60.0) -> dict[str, bool | str]:
    """backend name -> True, or why its SDK cannot be used here; never raises, whatever the child does.

    `modules` maps each backend name to its module in edge.inference; the children run at once."""
    answers: dict[str, bool | str] = {}
    with contextlib.ExitStack() as stack:
        running: dict[str, tuple[subprocess.Popen[str], IO[bytes]]] = {}
        for name, module in modules.items():
            err: IO[bytes] = stack.enter_context(tempfile.TemporaryFile())
            cmd = [sys.executable, "-m", "edge.cli.sdk_probe", module]
            try:
                proc = subprocess.Popen(
                    cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True
                )
            except OSError as exc:
                answers[name] = f"could not start the SDK probe: {exc}"
                continue
            running[name] = (proc, err)
        deadline = time.monotonic() + timeout_s
        for name, (proc, err) in running.items():
            try:
                out, _ = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                answers[name] = f"importing its SDK did not finish within {timeout_s:.0f} s"
                continue
            err.seek(0)
            answers[name] = _answer(proc.returncode, out, err.read().decode("utf-8", "replace"))
    return {name: answers[name] for name in modules}


def _answer(code: int, out: str, err: str) -> bool | str:
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            try:
                installed = json.loads(line)["installed"]
            except (ValueError, KeyError, TypeError):
                break
            if installed is True or isinstance(installed, str):
                return installed
            break
    tail = _last_line(err)
    if code < 0:
        try:
            sig = signal.Signals(-code).name
        except ValueError:
            sig = f"signal {-code}"
        why = f"importing its SDK crashed the process ({sig}, exit {code})"
    else:
        why = f"the SDK probe exited {code} without an answer"
    return why + (f": {tail}" if tail else "")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


# --------------------------------------------------------------------------- child process


def _child(module: str) -> int:
    import importlib

    from edge.core.errors import BackendUnavailable

    try:
        mod = importlib.import_module(module)
        check = getattr(mod, "sdk_available", None)
        installed: bool | str = True if check is None else check()
    except BackendUnavailable as err:
        installed = str(err)
    except ImportError as err:  # the backend module itself is missing from this install
        installed = f"backend module missing: {err}"
    except Exception as err:  # an SDK that raises something else on import is still an answer
        installed = f"importing its SDK failed: {type(err).__name__}: {err}"[:300]
    print(json.dumps({"installed": installed}), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m edge.cli.sdk_probe MODULE", file=sys.stderr)
        sys.exit(2)
    sys.exit(_child(sys.argv[1]))
