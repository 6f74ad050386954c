"""A Debian 12 rootfs booted with `systemd-nspawn --boot`: a real PID-1 systemd to install the
service in, as a board owner would.

The rootfs is built once with mmdebstrap and cached under
${EDGE_TEST_CACHE:-/var/cache/edge-tests}/nspawn-bookworm/<recipe hash>/ (built in a temporary
folder, then renamed: a half-built rootfs is never used, and two processes racing both end up with
one). Each boot runs on an overlayfs over the cached rootfs, so a test never changes the cache.
pip inside gets the host's pip configuration, CA certificates (this machine's egress goes through
its own CA) and a persistent pip cache beside the rootfs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECIPE: dict[str, Any] = {
    "suite": "bookworm",
    "variant": "minbase",
    "include": ["systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "ca-certificates", "mosquitto"],
}
DEFAULT_MIRRORS = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
]
# pip's configuration on the host: copied or bound in so that pip inside behaves as pip outside.
PIP_FILES = [Path("/etc/pip.conf"), Path("/etc/xdg/pip/pip.conf"), Path("/etc/xdg/pip/constraints.txt")]
PIP_DIRS = [Path("/opt/wheels"), Path("/opt/pypi"), Path("/opt/pypi-more")]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def cache_root() -> Path:
    return Path(os.environ.get("EDGE_TEST_CACHE", "/var/cache/edge-tests")) / "nspawn-bookworm"


def recipe_key() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:16]


def missing_tools() -> str | None:
    """Why this machine cannot run the rig, or None."""
    if os.geteuid() != 0:
        return "systemd-nspawn --boot needs root"
    for tool in ("systemd-nspawn", "mmdebstrap", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install systemd-container mmdebstrap)"
    return None


def host_mirrors() -> list[str]:
    """The host's own Debian mirrors as one-line `deb` entries (both .list and deb822 .sources)."""
    lines: list[str] = []
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if f.is_file():
            lines += [ln.strip() for ln in f.read_text().splitlines() if ln.strip().startswith("deb ")]
    for f in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", f.read_text()):
            fields = dict(
                (k.strip().lower(), v.strip())
                for k, _, v in (ln.partition(":") for ln in stanza.splitlines() if not ln.startswith("#"))
            )
            if "deb" not in fields.get("types", "").split():
                continue
            for uri in fields.get("uris", "").split():
                for suite in fields.get("suites", "").split():
                    lines.append(f"deb {uri} {suite} main")
    wanted = [ln for ln in lines if "debian" in ln and RECIPE["suite"] in ln]
    return wanted or DEFAULT_MIRRORS


def rootfs() -> Path:
    """The cached rootfs for this recipe, built when missing."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / recipe_key()
    if (final / "rootfs" / "usr" / "lib" / "systemd" / "systemd").exists():
        return final / "rootfs"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a waiter then finds it built
        if not (final / "rootfs" / "usr" / "lib" / "systemd" / "systemd").exists():
            tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
            try:
                subprocess.run(
                    [
                        "mmdebstrap",
                        "--mode=root",
                        f"--variant={RECIPE['variant']}",
                        "--include=" + ",".join(RECIPE["include"]),
                        "--quiet",
                        str(RECIPE["suite"]),
                        str(tmp / "rootfs"),
                        *host_mirrors(),
                    ],
                    check=True,
                    stdin=subprocess.DEVNULL,
                )
                (tmp / "recipe.json").write_text(json.dumps(RECIPE, indent=1))
                if final.exists():  # an older, broken attempt under the same key
                    shutil.rmtree(final)
                os.rename(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            for old in root.iterdir():  # rootfs of other recipes: ~300 MB each
                if old.is_dir() and old.name != final.name and not old.name.startswith("."):
                    shutil.rmtree(old, ignore_errors=True)
    return final / "rootfs"


@dataclass
class Container:
    """One booted container; `sh` runs a command inside as root with a login-like environment."""

    nspawn: subprocess.Popen[bytes]
    pid1: int
    root: Path  # the merged overlay, the container's / seen from the host
    log: Path

    def sh(
        self, command: str, *, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        env = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8"}
        env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
        res = subprocess.run(
            ["nsenter", "-t", str(self.pid1), "-a", "env", "-i", *(f"{k}={v}" for k, v in env.items())]
            + ["sh", "-c", f"cd /root && {command}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"in the container: {command!r} exited {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
            )
        return res

    def show(self, unit: str, prop: str) -> str:
        return self.sh(f"systemctl show -P {prop} {unit}").stdout.strip()

    def wait(self, what: str, predicate, timeout: float = 120, interval: float = 1.0):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)


def _pid1(nspawn: subprocess.Popen[bytes]) -> int | None:
    for child in Path(f"/proc/{nspawn.pid}/task").glob("*/children"):
        for pid in child.read_text().split():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
    return None


@contextlib.contextmanager
def booted(lower: Path, workdir: Path) -> Iterator[Container]:
    """Boot `lower` (read-only: changes go to an overlay under `workdir`) until multi-user.target."""
    run = cache_root() / f".run-{uuid.uuid4().hex[:8]}"  # same filesystem as the cache: overlayfs needs it
    upper, work, merged = run / "upper", run / "work", run / "merged"
    for d in (upper, work, merged):
        d.mkdir(parents=True)
    subprocess.run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={lower},upperdir={upper},workdir={work}",
            str(merged),
        ],
        check=True,
    )
    nspawn = None
    try:
        for f in PIP_FILES:
            if f.is_file():
                (merged / f.relative_to("/")).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, merged / f.relative_to("/"))
        for crt in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            shutil.copy2(crt, merged / "usr/local/share/ca-certificates" / crt.name)
        pip_cache = cache_root() / "pip-cache"
        pip_cache.mkdir(exist_ok=True)
        binds = [f"--bind={pip_cache}:/root/.cache/pip"]
        binds += [f"--bind-ro={d}" for d in PIP_DIRS if d.is_dir()]
        log = workdir / "nspawn-console.log"
        machine = f"edge-test-{os.getpid()}"
        with log.open("wb") as out:
            nspawn = subprocess.Popen(
                [
                    "systemd-nspawn",
                    "-D",
                    str(merged),
                    "--boot",
                    "--register=no",
                    "--keep-unit",
                    "-M",
                    machine,
                    *binds,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        pid1 = None
        while pid1 is None:
            if nspawn.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"systemd-nspawn did not start a systemd: {log.read_text()[-3000:]}")
            time.sleep(0.5)
            pid1 = _pid1(nspawn)
        box = Container(nspawn=nspawn, pid1=pid1, root=merged, log=log)
        box.wait(
            "the container to reach multi-user.target",
            lambda: (
                box.sh("systemctl is-system-running", check=False).stdout.strip() in ("running", "degraded")
            ),
            timeout=180,
        )
        box.sh("update-ca-certificates >/dev/null")
        yield box
    finally:
        if nspawn is not None and nspawn.poll() is None:
            nspawn.send_signal(signal.SIGTERM)  # a clean shutdown of the container's systemd
            try:
                nspawn.wait(90)
            except subprocess.TimeoutExpired:
                nspawn.kill()
                nspawn.wait(30)
        subprocess.run(["umount", "-l", str(merged)], check=False)
        shutil.rmtree(run, ignore_errors=True)
