"""A board's userland on this x86 machine: an arm64 Debian rootfs run through qemu-user + binfmt_misc,
with edge installed in it from the checkout's wheel and checked as a board owner would check it.

    python tools/arm64_rig.py [--suite bookworm|trixie] [--set ci|full] [--json FILE]

What it does, each step timed (times are under EMULATION on this machine, not a board figure):
1. builds or reuses the rootfs: `mmdebstrap --arch=arm64` from Debian's packages (Python, venv, pip,
   Debian's python3-opencv with GStreamer), cached under
   ${EDGE_TEST_CACHE:-/var/cache/edge-tests}/arm64-SUITE/rootfs-HASH, rebuilt when missing or when the
   recipe below changes; built in a temp folder and renamed, under a lock (two runs never race);
2. builds the wheel from this checkout on the host, installs it into venvs inside the rootfs
   (PyPI's aarch64 wheels only); a venv is cached keyed by the wheel's requirements and its extras,
   and a warm run reinstalls just the wheel;
3. runs `edge` inside, each command in its own private mount namespace (`unshare -m`): the mounts
   (proc, a read-only sys, a few device nodes, the pip cache) vanish with the namespace whatever
   happens, and are unmounted lazily on the way out too.

Facts of the rig (not of a board), both found the hard way:
- qemu-user (7.2) shows the HOST's x86 /proc/cpuinfo to arm64 programs; onnxruntime's cpuinfo init
  then dereferences NULL and `import onnxruntime` dies with SIGSEGV. Every command therefore sees a
  Raspberry Pi 5 cpuinfo (Cortex-A76 x2) bind-mounted over /proc/cpuinfo and runs with
  QEMU_CPU=cortex-a76 (a Pi 5's features: no SVE, i8mm, bf16; qemu's default CPU emulates SVE, and
  slowly). One check runs with the host's cpuinfo on purpose: onnxruntime crashing on import is a
  native crash of a runtime, which `edge devices` must report as a line of its table.
- pip inside needs the host's pip configuration (/etc/pip.conf, /etc/xdg/pip/) and the host's CA
  bundle (HTTPS goes through this machine's egress CA): copied in before every command.

Needs root, qemu-user-static + binfmt-support (aarch64 registered) and mmdebstrap. Exit 0 when every
check passed; the last lines are a table of steps and their times.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "edge")
MIRRORS = {  # suite -> the apt source lines the rootfs is built from (Debian's own mirrors)
    "bookworm": [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ],
    "trixie": [
        "deb http://deb.debian.org/debian trixie main",
        "deb http://deb.debian.org/debian trixie-updates main",
        "deb http://deb.debian.org/debian-security trixie-security main",
    ],
}
PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
# The README's GStreamer path: Debian's OpenCV (with GStreamer) and numpy under a
# --system-site-packages venv. About 300 packages more, slow to unpack under emulation: installed into
# the cached rootfs on first use (the `gst` checks), not in the base every run needs.
GST_PACKAGES = "python3-opencv gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good"
# A Raspberry Pi 5's /proc/cpuinfo (2 cores, to match what this VM's /sys says is possible).
CPUINFO = (
    "".join(
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
        "atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
        "CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n"
        for i in range(2)
    )
    + "Revision\t: c04170\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"
)
QEMU_CPU = "cortex-a76"
RECIPE_VERSION = "1"  # bump to force a rebuild when the build steps below change
# Device nodes a Python program needs; bound one by one (never the host's whole /dev).
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
VENV_BASE = "/opt/edge"
# The demo world's test picture: its caption is what the demo model must say.
SCENE = (("circle", "red", "left"), ("square", "blue", "right"))
SCENE_SEED = 7  # placement, size and color jitter of the drawing: fixed, so every run draws the same
GST_TESTSRC = "gst:videotestsrc num-buffers=50 ! video/x-raw,width=320,height=240,framerate=10/1 ! videoconvert ! appsink"
GST_PICTURE = (
    "gst:filesrc location=/root/scene.jpg ! jpegdec ! videoconvert ! imagefreeze num-buffers=50 "
    "! video/x-raw,framerate=10/1 ! appsink"
)


def cache_root() -> Path:
    return Path(os.environ.get("EDGE_TEST_CACHE") or "/var/cache/edge-tests")


def missing_prerequisites() -> str | None:
    """Why this machine cannot run the rig (None when it can): only causes outside the project."""
    if os.geteuid() != 0:
        return "the arm64 rig needs root (chroot, mount namespaces)"
    binfmt = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not binfmt.exists():
        return "no binfmt_misc entry for aarch64: apt-get install qemu-user-static binfmt-support"
    if not binfmt.read_text().startswith("enabled"):
        return "binfmt_misc qemu-aarch64 is disabled (update-binfmts --enable qemu-aarch64)"
    for tool in ("mmdebstrap", "unshare", "chroot"):
        if shutil.which(tool) is None:
            return f"{tool} is missing: apt-get install mmdebstrap"
    return None


# --------------------------------------------------------------------------- steps and timing


@dataclass
class Step:
    name: str
    seconds: float
    ok: bool
    detail: str = ""


@dataclass
class Report:
    suite: str
    steps: list[Step] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        """Times a step; the body may append a detail line; an exception marks it failed and propagates."""
        detail: list[str] = []
        print(f"[arm64-rig {self.suite}] {name} ...", flush=True)
        t0 = time.monotonic()
        try:
            yield detail
        except BaseException as err:
            self.steps.append(Step(name, time.monotonic() - t0, False, f"{err}".splitlines()[0][:200]))
            raise
        self.steps.append(Step(name, time.monotonic() - t0, True, " ".join(detail)))

    def table(self) -> str:
        lines = [
            f"arm64 rig, Debian {self.suite} under qemu-user on this x86 machine "
            "(times are EMULATION figures, not a board's):"
        ]
        for s in self.steps:
            lines.append(f"  {'ok  ' if s.ok else 'FAIL'} {s.seconds:7.1f} s  {s.name}  {s.detail}".rstrip())
        return "\n".join(lines)


class CheckFailed(AssertionError):
    pass


def expect(cond: bool, what: str, output: str) -> None:
    if not cond:
        raise CheckFailed(f"{what}\n--- output ---\n{output[-4000:]}")


# --------------------------------------------------------------------------- the rootfs


def recipe_hash(suite: str) -> str:
    doc = json.dumps([RECIPE_VERSION, suite, MIRRORS[suite], PACKAGES], sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One rig run per suite at a time: the cache (rootfs and venvs) is shared and written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_rootfs(suite: str, report: Report) -> Path:
    """The cached rootfs for this suite and recipe, built when missing (caller holds the lock)."""
    base = cache_root() / f"arm64-{suite}"
    want = base / f"rootfs-{recipe_hash(suite)}"
    with report.step(f"rootfs {suite}") as detail:
        if want.is_dir():
            detail.append(f"cached {want}")
            return want
        for stale in base.glob("build-*"):  # a build that was killed (we hold the lock: none runs)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix="build-", dir=base))
        try:
            target = tmp / "root"
            # mmdebstrap mounts proc/sys/dev inside the target while it installs: in a private mount
            # namespace, so none of that can outlive it even if it is killed.
            cmd = [
                "unshare", "-m", "--propagation", "private",
                "nice", "-n", "10",
                "mmdebstrap", "--mode=root", "--arch=arm64", "--variant=minbase", "--quiet",
                "--aptopt=Acquire::Retries \"3\"",
                f"--include={PACKAGES}",
                suite, str(target), *MIRRORS[suite],
            ]  # fmt: skip
            proc = run_group(cmd)
            if proc.returncode != 0:
                raise RuntimeError(f"mmdebstrap failed (exit {proc.returncode}): {proc.stderr[-3000:]}")
            (target / "etc/cpuinfo-rpi5.txt").write_text(CPUINFO)
            (target / "root/.cache/pip").mkdir(parents=True, exist_ok=True)
            os.rename(target, want)  # atomic: a rootfs is there whole or not at all
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for old in base.glob("rootfs-*"):  # an older recipe's rootfs (nothing is mounted there:
            if old != want:  # every mount lives in a namespace that died with its command)
                shutil.rmtree(old, ignore_errors=True)
        detail.append(f"built {want}")
    return want


def copy_host_config(root: Path) -> None:
    """The host's pip configuration and CA bundle, refreshed before every command."""
    for src in [Path("/etc/pip.conf"), *Path("/etc/xdg/pip").glob("*")]:
        if src.is_file():
            dst = root / src.relative_to("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.is_file():
        shutil.copy2(bundle, root / "etc/ssl/certs/ca-certificates.crt")
    shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")


def chroot_script(root: Path, pip_cache: Path, command: str, pi_cpuinfo: bool = True) -> str:
    """The shell run inside `unshare -m`: mounts, the command in the chroot, lazy unmounts on exit."""
    r = shlex.quote(str(root))
    mounts = [
        f"mount -t proc proc {r}/proc",
        f"mount --bind /sys {r}/sys && mount -o remount,bind,ro {r}/sys",
        f"mount -t tmpfs -o mode=755,nosuid tmpfs {r}/dev",
        f"mkdir -p {r}/dev/shm {r}/dev/pts && mount -t tmpfs -o nosuid,nodev tmpfs {r}/dev/shm",
        f"ln -s /proc/self/fd {r}/dev/fd",
        f"ln -s /proc/self/fd/0 {r}/dev/stdin",
        f"ln -s /proc/self/fd/1 {r}/dev/stdout",
        f"ln -s /proc/self/fd/2 {r}/dev/stderr",
        *(f"touch {r}/dev/{n} && mount --bind /dev/{n} {r}/dev/{n}" for n in DEV_NODES),
        f"mount --bind {shlex.quote(str(pip_cache))} {r}/root/.cache/pip",
    ]
    env = [
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/root",
        "LANG=C.UTF-8",
        "PIP_DEFAULT_TIMEOUT=180",
        "PIP_DISABLE_PIP_VERSION_CHECK=1",
        "DEBIAN_FRONTEND=noninteractive",
        f"QEMU_CPU={QEMU_CPU}",  # also for the crash check: qemu's default CPU emulates SVE, slowly
    ]
    if pi_cpuinfo:
        mounts.append(f"mount --bind {r}/etc/cpuinfo-rpi5.txt {r}/proc/cpuinfo")
    unmount = f"umount -l {r}/proc/cpuinfo {r}/root/.cache/pip {r}/dev {r}/sys {r}/proc 2>/dev/null"
    return "\n".join(
        [
            "set -e",
            f"trap '{unmount}' EXIT",
            *mounts,
            "set +e",
            f"nice -n 10 chroot {r} /usr/bin/env -i {' '.join(env)} /bin/sh -c {shlex.quote('cd / && ' + command)}",
        ]
    )


@dataclass(frozen=True)
class Rig:
    suite: str
    root: Path
    pip_cache: Path

    def run(
        self, command: str, timeout: float = 900, pi_cpuinfo: bool = True, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        copy_host_config(self.root)
        script = chroot_script(self.root, self.pip_cache, command, pi_cpuinfo)
        proc = run_group(["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", script], timeout)
        if check and proc.returncode != 0:
            raise CheckFailed(
                f"`{command}` exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}\n"
                f"--- stderr ---\n{proc.stderr[-3000:]}"
            )
        return proc


# --------------------------------------------------------------------------- the wheel and venvs


def build_wheel(into: Path) -> Path:
    src = into / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(into),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = into.glob("*.whl")
    return wheel


def wheel_requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    return sorted(
        line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")
    )


def ensure_venv(rig: Rig, report: Report, name: str, wheel: Path, extras: str, system_site: bool) -> str:
    """A venv in the rootfs with the wheel[extras]: its dependencies installed once per dependency set
    (a marker file says the install finished), the wheel itself reinstalled on every run."""
    key = hashlib.sha256(json.dumps([wheel_requirements(wheel), extras, system_site]).encode()).hexdigest()[
        :12
    ]
    venv = f"{VENV_BASE}/{name}-{key}"
    marker = f"{venv}/.complete"
    inside = f"/root/{wheel.name}"
    shutil.copy2(wheel, rig.root / inside.lstrip("/"))
    with report.step(f"venv {name} [{extras}]") as detail:
        if (rig.root / marker.lstrip("/")).exists():
            rig.run(f"{venv}/bin/pip install -q --no-deps --force-reinstall {inside}")
            detail.append("cached deps; wheel reinstalled")
        else:
            for old in (rig.root / VENV_BASE.lstrip("/")).glob(f"{name}-*"):
                shutil.rmtree(old, ignore_errors=True)
            flag = " --system-site-packages" if system_site else ""
            rig.run(
                f"python3 -m venv{flag} {venv} && {venv}/bin/pip install -q '{inside}[{extras}]' "
                f"&& touch {marker}"
            )
            detail.append("installed from PyPI (aarch64 wheels)")
    return venv


# --------------------------------------------------------------------------- the checks


def draw_scene(path: Path) -> str:
    """The demo world's picture on the host; returns the caption the demo model must give."""
    import numpy as np

    from edge.capture import demo_world as scenes
    from edge.imaging.opencv import cv2

    scene = scenes.Scene(tuple(scenes.Shape(*s) for s in SCENE))
    img = scenes.draw(scene, np.random.default_rng(SCENE_SEED), overlay=False, jpeg=False)
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    path.write_bytes(jpg.tobytes())
    return scenes.caption(scene)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def mosquitto() -> Iterator[int]:
    """A broker of the rig's own on a free port (the chroot shares the host's network)."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    proc = subprocess.Popen([exe, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def check_ort(rig: Rig, report: Report, wheel: Path, caption: str, port: int) -> None:
    venv = ensure_venv(rig, report, "ort", wheel, "opencv,ort", system_site=False)
    edge = f"{venv}/bin/edge"
    with report.step("edge caption --profile demo (picture)") as detail:
        out = rig.run(f"{edge} caption --profile demo /root/scene.jpg").stdout.strip()
        expect(out == caption, f"the demo caption is {out!r}, not {caption!r}", out)
        detail.append(repr(out))
    with report.step("edge devices") as detail:
        proc = rig.run(f"{edge} devices")
        out = proc.stdout
        expect("Raspberry Pi 5" in out and "Cortex-A76" in out, "board not seen as a Pi 5", out)
        expect(re.search(r"ort-genai\s+installed", out) is not None, "ort-genai not installed", out)
        expect(re.search(r"^\s+cpu\s+ok\s", out, re.M) is not None, "ORT GenAI cpu does not load", out)
        expect("suggested profile: rpi5" in out, "rpi5 not suggested", out)
        detail.append("Pi 5, ort-genai cpu loads, suggests rpi5")
    with report.step("edge devices (x86 cpuinfo: onnxruntime crashes)") as detail:
        proc = rig.run(f"{edge} devices", pi_cpuinfo=False, check=False)
        out = proc.stdout + proc.stderr
        expect(proc.returncode == 0, f"edge devices exited {proc.returncode} when the runtime crashed", out)
        expect(
            re.search(r"ort-genai\s+not installed: .*crashed", proc.stdout) is not None,
            "the crash is not a line of the table",
            out,
        )
        detail.append(next(ln.strip() for ln in proc.stdout.splitlines() if "ort-genai" in ln)[:90])
    with report.step("edge doctor --profile demo") as detail:
        proc = rig.run(f"{edge} doctor --profile demo --set mqtt.port={port}", check=False)
        out = proc.stdout + proc.stderr
        expect(proc.returncode == 0, f"edge doctor exited {proc.returncode}", out)
        detail.append(f"exit 0, {sum(1 for ln in proc.stdout.splitlines() if ' ok ' in f' {ln} ')} ok lines")
    with report.step("edge config check --profile rpi5") as detail:
        offline = "--offline" in rig.run(f"{edge} config check --help").stdout
        flag = " --offline" if offline else ""
        proc = rig.run(f"{edge} config check --profile rpi5{flag}", check=False)
        out = proc.stdout + proc.stderr
        # No board here: the profile's camera (picamera2) and its model folder (/opt/models/...) are
        # missing in the rootfs, and the check must say so by name (a config error: exit 2) rather
        # than pass or crash. With --offline (no board files asked for) it must pass.
        if offline:
            expect(proc.returncode == 0, f"config check --offline exited {proc.returncode}", out)
        else:
            expect(proc.returncode == 2, f"config check exited {proc.returncode}, not 2", out)
            expect("model.path" in out, "the missing model folder is not named", out)
            expect("picamera2" in out, "the missing picamera2 is not named", out)
        expect("Traceback" not in out, "config check crashed", out)
        detail.append(f"exit {proc.returncode}{' (offline)' if offline else ' (board files missing, named)'}")


def ensure_gst_packages(rig: Rig, report: Report) -> None:
    """Debian's python3-opencv and GStreamer in the cached rootfs, once per package list."""
    key = hashlib.sha256(GST_PACKAGES.encode()).hexdigest()[:12]
    marker = rig.root / f"var/lib/edge-rig/gst-{key}.done"
    with report.step("apt: python3-opencv + GStreamer in the rootfs") as detail:
        if marker.exists():
            detail.append("cached")
            return
        rig.run(
            f"apt-get update -qq && apt-get install -y -qq --no-install-recommends {GST_PACKAGES} >/dev/null"
        )
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(GST_PACKAGES + "\n")
        detail.append("installed")


def check_gst(rig: Rig, report: Report, wheel: Path, caption: str) -> None:
    ensure_gst_packages(rig, report)
    venv = ensure_venv(rig, report, "gst", wheel, "ort", system_site=True)
    edge = f"{venv}/bin/edge"
    with report.step("GStreamer path: Debian numpy and cv2 kept") as detail:
        out = rig.run(
            f"{venv}/bin/python -c 'import numpy, cv2; print(numpy.__version__, cv2.__version__, cv2.__file__)'"
        ).stdout
        numpy_version, cv2_version, cv2_file = out.split()
        expect(cv2_file.startswith("/usr/lib/python3/dist-packages/"), "cv2 is not Debian's", out)
        expect(
            "opencv" not in rig.run(f"{venv}/bin/pip list --local 2>/dev/null").stdout.lower(),
            "PyPI OpenCV was installed",
            out,
        )
        detail.append(f"numpy {numpy_version}, OpenCV {cv2_version} (Debian)")
    common = "--set camera.stall_s=30"
    with report.step("GStreamer path: gst:videotestsrc captions") as detail:
        out = rig.run(
            f"{edge} caption --profile demo --camera {common} --set camera.source={shlex.quote(json.dumps(GST_TESTSRC))}"
        ).stdout
        said = out.strip().splitlines()[-1] if out.strip() else ""
        expect(bool(said), "no caption from the videotestsrc camera", out)
        detail.append(repr(said)[:60])
    with report.step("GStreamer path: the picture through a gst: pipeline") as detail:
        out = rig.run(
            f"{edge} caption --profile demo --camera {common} --set camera.source={shlex.quote(json.dumps(GST_PICTURE))}"
        ).stdout
        said = out.strip().splitlines()[-1] if out.strip() else ""
        expect(said == caption, f"the gst camera's caption is {said!r}, not {caption!r}", out)
        detail.append(repr(said))


def check_openvino(rig: Rig, report: Report, wheel: Path, caption: str, port: int) -> None:
    venv = ensure_venv(rig, report, "ov", wheel, "opencv,openvino", system_site=False)
    edge = f"{venv}/bin/edge"
    with report.step("edge doctor --profile demo-openvino") as detail:
        proc = rig.run(f"{edge} doctor --profile demo-openvino --set mqtt.port={port}", check=False)
        expect(proc.returncode == 0, f"edge doctor exited {proc.returncode}", proc.stdout + proc.stderr)
        detail.append("exit 0")
    with report.step("edge caption --profile demo-openvino (picture)") as detail:
        out = rig.run(f"{edge} caption --profile demo-openvino /root/scene.jpg").stdout.strip()
        expect(out == caption, f"the OpenVINO demo caption is {out!r}, not {caption!r}", out)
        detail.append(repr(out))


# ci: every CI run (cold: the base rootfs and one venv); full (`make arm64-full`): + OpenVINO, GStreamer.
SETS: dict[str, tuple[str, ...]] = {"ci": ("ort",), "full": ("ort", "openvino", "gst")}


def run_rig(suite: str, which: tuple[str, ...], report: Report) -> None:
    base = cache_root() / f"arm64-{suite}"
    with locked(base / ".lock"):
        root = ensure_rootfs(suite, report)
        pip_cache = base / "pip-cache"
        pip_cache.mkdir(parents=True, exist_ok=True)
        rig = Rig(suite, root, pip_cache)
        with report.step("python in the rootfs") as detail:
            detail.append(
                rig.run(
                    "python3 -c 'import platform, sys; print(platform.machine(), sys.version.split()[0], platform.libc_ver()[1])'"
                ).stdout.strip()
            )
        with tempfile.TemporaryDirectory() as tmp, mosquitto() as port:
            with report.step("wheel and picture (host)") as detail:
                wheel = build_wheel(Path(tmp))
                caption = draw_scene(rig.root / "root/scene.jpg")
                detail.append(wheel.name)
            checks: dict[str, Callable[[], None]] = {
                "ort": lambda: check_ort(rig, report, wheel, caption, port),
                "gst": lambda: check_gst(rig, report, wheel, caption),
                "openvino": lambda: check_openvino(rig, report, wheel, caption, port),
            }
            for name in which:
                checks[name]()


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_group(cmd: list[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """subprocess.run in a process group of its own, the whole group killed if we are interrupted
    or time out (mmdebstrap's and chroot's children would otherwise run on)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", choices=sorted(MIRRORS), default="bookworm")
    ap.add_argument("--set", dest="which", choices=sorted(SETS), default="full")
    ap.add_argument("--only", help="comma-separated checks: ort,gst,openvino (default: the set's)")
    ap.add_argument("--json", type=Path, help="write the steps and their times here")
    args = ap.parse_args(argv)
    reason = missing_prerequisites()
    if reason:
        print(f"arm64 rig cannot run here: {reason}", file=sys.stderr)
        return 3
    which = tuple(args.only.split(",")) if args.only else SETS[args.which]
    report = Report(args.suite)
    # SIGTERM (a CI timeout, a kill) unwinds like Ctrl-C: the temp build folder is removed, the
    # lock released; the mounts need nothing, they die with their namespaces.
    signal.signal(signal.SIGTERM, _interrupted)
    t0 = time.monotonic()
    failed: BaseException | None = None
    try:
        run_rig(args.suite, which, report)
    except Exception as err:  # a failed check or a broken rig: either way the table is printed
        failed = err
    print(report.table())
    print(f"  total {time.monotonic() - t0:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"suite": args.suite, "ok": failed is None, "steps": [vars(s) for s in report.steps]},
                indent=2,
            )
        )
    if failed is not None:
        print(f"arm64 rig FAILED: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
