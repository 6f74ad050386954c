"""A real OpenAI-compatible server for the http backend's tests: Hugging Face `transformers serve`.

The rig is its own venv (CPU torch 2.13.0 from the machine's wheel folder, pinned transformers[serving],
pillow) plus two tiny random-weight models built from the demo model's tokenizer: `tiny-phi3` (text only)
and `tiny-llava` (16 image tokens per picture). Built once and cached under
${EDGE_TEST_CACHE:-/var/cache/edge-tests}/openai-server-<hash>/, the hash over this folder's recipe and
the tokenizer, so a changed recipe builds a new one. The build runs in a temporary folder renamed into
place (readers never see half a rig) under a file lock (two racing processes build it once); the venv is
only ever run as `venv/bin/python -m ...`, so renaming it does not break it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
TOKENIZER = REPO / "edge" / "assets" / "models" / "demo-ort"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
RECIPE = ("requirements.txt", "make_models.py")
BUILD_STEPS = (
    "venv; pip torch==2.13.0; pip -r requirements.txt; make_models.py"  # hashed: change it with _build
)
TRANSFORMERS_VERSION = "5.25.0"


def cache_root() -> Path:
    return Path(os.environ.get("EDGE_TEST_CACHE") or "/var/cache/edge-tests")


def recipe_hash() -> str:
    h = hashlib.sha256(sys.version.split()[0].encode() + BUILD_STEPS.encode())
    for name in RECIPE:
        h.update((HERE / name).read_bytes())
    for name in TOKENIZER_FILES:
        h.update((TOKENIZER / name).read_bytes())
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class Rig:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "venv" / "bin" / "python"

    @property
    def text_model(self) -> Path:
        return self.root / "models" / "tiny-phi3"

    @property
    def vision_model(self) -> Path:
        return self.root / "models" / "tiny-llava"


def _run(cmd: list[str], log: Path, **kw: object) -> None:
    with log.open("a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"rig build step failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


def _build(tmp: Path) -> None:
    log = tmp / "build.log"
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], log)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # torch first and alone, pinned: anything else asking for torch would pull a multi-GB CUDA build.
    _run([*pip, "torch==2.13.0"], log)
    _run([*pip, "-r", str(HERE / "requirements.txt")], log)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    _run([str(venv / "bin" / "python"), str(HERE / "make_models.py"), str(TOKENIZER), str(tmp / "models")],
         log, env=env)  # fmt: skip
    (tmp / "recipe.json").write_text(json.dumps({"hash": recipe_hash(), "built_at": time.time()}))


def ensure_rig() -> Rig:
    """The cached rig, built first when missing (minutes, cold)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"openai-server-{recipe_hash()}"
    if (final / "recipe.json").is_file():
        return Rig(final)
    with open(root / f"{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "recipe.json").is_file():  # another process built it while we waited
            return Rig(final)
        tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=root))
        try:
            _build(tmp)
            if final.exists():  # a leftover without recipe.json: never complete
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return Rig(final)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One running `transformers serve`, pinned to one model (its id is the model folder's path)."""

    proc: subprocess.Popen[bytes]
    port: int
    model: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)  # a test may have left it stopped
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)


def start_server(
    rig: Rig, model: Path, log: Path, port: int | None = None, timeout_s: float = 180.0
) -> Server:
    """Start the server on 127.0.0.1 and wait until GET /v1/models lists the model."""
    port = port or free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")  # log lines at once
    cmd = [str(rig.python), "-m", "transformers.cli.transformers", "serve", str(model),
           "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--enable-log-requests"]  # fmt: skip
    out = log.open("ab")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    out.close()
    server = Server(proc, port, str(model), log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited {proc.returncode}:\n{server.log_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/models", timeout=5) as resp:
                if str(model) in resp.read().decode():
                    return server
        except OSError:
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(
        f"transformers serve did not list {model} within {timeout_s:.0f} s:\n{server.log_text()[-3000:]}"
    )


@contextlib.contextmanager
def serving(rig: Rig, model: Path, log: Path) -> Iterator[Server]:
    server = start_server(rig, model, log)
    try:
        yield server
    finally:
        server.stop()
