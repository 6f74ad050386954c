"""Board and accelerator detection for `edge devices`: what this machine is, what it can run on, and
which device profile to start from.

Everything is read from files under a root directory (default "/"), never from commands, so a test
can build a fake /proc, /sys and /dev for each board in a temp dir, and detection costs nothing on a
Pi. Which providers a backend can use is the one question files cannot answer honestly: that is
found by loading a model (edge.cli.provider_probe), in child processes.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from edge.assets import package_file
from edge.cli.provider_probe import ProviderProbe, probe_providers
from edge.cli.sdk_probe import probe_sdks
from edge.config.settings import LocalModelSettings, Settings

log = logging.getLogger(__name__)

# The tiny committed model each backend is probed with when no model of that backend is configured:
# the test fixture in a source checkout, else the model shipped in the package (an installed wheel
# has no tests/; there is no packaged OpenVINO model yet, so the report then asks for model.path).
REPO_FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "models"
PROBE_FIXTURES = {"ort-genai": "ort-phi3-fp32", "openvino": "ov-phi3"}
PACKAGED_PROBE_MODELS = {"ort-genai": "assets/models/demo-ort"}
# Providers worth trying per backend on Linux (dml is Windows-only).
CANDIDATE_PROVIDERS = {"ort-genai": ["cpu", "cuda", "OpenVINO", "QNN"], "openvino": ["CPU", "GPU", "NPU"]}
PROFILE_BACKEND = {
    "rpi5": "ort-genai",
    "jetson-orin": "ort-genai",
    "intel-core-ultra-npu": "openvino",
    "qualcomm-qcs": "ort-genai",
    "x86-cpu": "ort-genai",
}
NOTABLE_FLAGS = (
    # x86: the int4/int8 kernels' fast paths
    "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
    # arm64: NEON, dot product, int8 matrix multiply, SVE, bf16, fp16
    "asimd", "asimddp", "i8mm", "sve", "sve2", "bf16", "fphp", "asimdhp",
)  # fmt: skip
ARM_PARTS = {  # (CPU implementer, CPU part) from /proc/cpuinfo
    ("0x41", "0xd03"): "Cortex-A53", ("0x41", "0xd05"): "Cortex-A55", ("0x41", "0xd08"): "Cortex-A72",
    ("0x41", "0xd0b"): "Cortex-A76", ("0x41", "0xd0c"): "Neoverse-N1", ("0x41", "0xd0d"): "Cortex-A77",
    ("0x41", "0xd41"): "Cortex-A78", ("0x41", "0xd42"): "Cortex-A78AE", ("0x41", "0xd44"): "Cortex-X1",
    ("0x41", "0xd46"): "Cortex-A510", ("0x41", "0xd47"): "Cortex-A710", ("0x41", "0xd48"): "Cortex-X2",
    ("0x41", "0xd4d"): "Cortex-A715", ("0x51", "0x804"): "Kryo 4xx Gold", ("0x51", "0x805"): "Kryo 4xx Silver",
}  # fmt: skip
SERIAL_GLOBS = ("ttyUSB*", "ttyACM*", "ttyAMA*", "ttyTHS*", "ttyHS*")
QNN_LIB_DIRS = (
    "usr/lib",
    "usr/lib/aarch64-linux-gnu",
    "usr/local/lib",
    "lib",
    "opt/qcom/aistack/qairt/*/lib/*",
)


@dataclass(frozen=True)
class Board:
    kind: str  # rpi | jetson | qualcomm | intel-core-ultra | x86 | arm | unknown
    model: str  # device-tree model or CPU model
    arch: str  # x86_64 | aarch64 | unknown
    cpu: str
    cores: int
    flags: tuple[str, ...]
    ram_mb: int | None
    l4t: str | None = None  # Jetson Linux release, e.g. "R36.3.0"


@dataclass(frozen=True)
class Accelerator:
    kind: str  # intel-npu | intel-gpu | amd-gpu | nvidia-gpu | nvidia-tegra | qualcomm-dsp | qnn-library | accel
    path: str
    detail: str  # driver, version, library path


@dataclass(frozen=True)
class Camera:
    path: str
    name: str
    driver: str


@dataclass(frozen=True)
class SerialPort:
    path: str
    description: str


@dataclass(frozen=True)
class BackendReport:
    name: str
    installed: bool
    detail: str  # why not installed, or the model the providers were probed with
    providers: tuple[ProviderProbe, ...] = ()


@dataclass(frozen=True)
class DeviceReport:
    board: Board
    accelerators: tuple[Accelerator, ...]
    cameras: tuple[Camera, ...]
    serial_ports: tuple[SerialPort, ...]
    backends: tuple[BackendReport, ...]
    suggested_profile: str
    reason: str


# --------------------------------------------------------------------------- files


def _read(root: Path, rel: str) -> str:
    try:
        return (root / rel).read_text(encoding="utf-8", errors="replace").replace("\x00", "").strip()
    except OSError:
        return ""


def _glob(root: Path, pattern: str) -> list[Path]:
    def natural(p: Path) -> list[object]:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]

    return sorted((Path(p) for p in glob.glob(os.path.join(glob.escape(str(root)), pattern))), key=natural)


def _driver(device_dir: Path) -> str:
    """The kernel driver bound to a sysfs device: the name its `driver` link points to."""
    try:
        return os.path.basename(os.readlink(device_dir / "driver"))
    except OSError:
        return ""


def _shown(root: Path, path: Path) -> str:
    """A path as it would be on the board (without the fake root)."""
    return "/" + str(path.relative_to(root)) if root != Path("/") else str(path)


# --------------------------------------------------------------------------- detection


def _cpuinfo(text: str) -> tuple[str, str, int, tuple[str, ...], str]:
    """(arch, cpu model, cores, notable flags, board model line) from /proc/cpuinfo."""
    fields: dict[str, str] = {}
    cores = 0
    parts: list[tuple[str, str]] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "processor":
            cores += 1
        elif key == "cpu part":
            parts.append((fields.get("cpu implementer", ""), value))
        fields.setdefault(key, value)
        if key == "cpu implementer":
            fields[key] = value
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    notable = tuple(f for f in NOTABLE_FLAGS if f in flags)
    if "vendor_id" in fields or "flags" in fields:
        arch, cpu = "x86_64", fields.get("model name", "x86-64 CPU")
    elif "features" in fields or "cpu implementer" in fields:
        arch = "aarch64"
        names = [ARM_PARTS.get(p, f"part {p[1]}") for p in dict.fromkeys(parts)]
        cpu = " + ".join(names) if names else fields.get("hardware", "ARM CPU")
    else:
        arch, cpu = "unknown", fields.get("model name", "unknown CPU")
    return arch, cpu, cores, notable, fields.get("model", "")


def detect_board(root: Path) -> Board:
    dt_model = _read(root, "proc/device-tree/model") or _read(root, "sys/firmware/devicetree/base/model")
    arch, cpu, cores, flags, cpuinfo_model = _cpuinfo(_read(root, "proc/cpuinfo"))
    # x86 "model" in cpuinfo is a number; PCs name themselves in DMI instead
    dmi = " ".join(
        filter(
            None, (_read(root, "sys/class/dmi/id/sys_vendor"), _read(root, "sys/class/dmi/id/product_name"))
        )
    )
    model = dt_model or (cpuinfo_model if arch == "aarch64" else dmi)
    mem = re.search(r"^MemTotal:\s+(\d+)\s+kB", _read(root, "proc/meminfo"), re.M)
    ram_mb = int(mem.group(1)) // 1024 if mem else None
    tegra = _read(root, "etc/nv_tegra_release")
    l4t = None
    if tegra:
        m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", tegra)
        l4t = f"R{m.group(1)}.{m.group(2)}" if m else tegra.splitlines()[0][:40]
    low = model.lower()
    if tegra or "jetson" in low or "nvidia" in low:
        kind = "jetson"
    elif "raspberry pi" in low:
        kind = "rpi"
    elif "qualcomm" in low or re.search(r"\bqcs\d+|\bqcm\d+|\bsa8\d+", low):
        kind = "qualcomm"
    elif arch == "x86_64" and "core(tm) ultra" in cpu.lower():
        kind = "intel-core-ultra"
    elif arch == "x86_64":
        kind = "x86"
    elif arch == "aarch64":
        kind = "arm"
    else:
        kind = "unknown"
    return Board(kind, model or cpu, arch, cpu, cores, flags, ram_mb, l4t)


def detect_accelerators(root: Path) -> tuple[Accelerator, ...]:
    found: list[Accelerator] = []
    for dev in _glob(root, "dev/accel/accel*"):
        driver = _driver(root / "sys/class/accel" / dev.name / "device")
        kind = {"intel_vpu": "intel-npu", "amdxdna": "amd-npu"}.get(driver, "accel")
        found.append(Accelerator(kind, _shown(root, dev), f"driver {driver or 'unknown'}"))
    for render in _glob(root, "sys/class/drm/renderD*"):
        driver = _driver(render / "device")
        gpu = {"i915": "intel-gpu", "xe": "intel-gpu", "amdgpu": "amd-gpu"}.get(driver)
        if gpu:  # vc4/v3d (Pi), tegra, msm: display or unusable for these runtimes
            found.append(Accelerator(gpu, f"/dev/dri/{render.name}", f"driver {driver}"))
    gpus = [p for p in _glob(root, "dev/nvidia*") if re.fullmatch(r"nvidia\d+", p.name)]
    if gpus:
        version = _read(root, "proc/driver/nvidia/version").splitlines()
        detail = version[0][:120] if version else "driver version unknown"
        found += [Accelerator("nvidia-gpu", _shown(root, p), detail) for p in gpus]
    tegra = _glob(root, "dev/nvhost-*") + _glob(root, "dev/nvgpu")
    if tegra:
        names = ", ".join(p.name for p in tegra[:4]) + (" ..." if len(tegra) > 4 else "")
        found.append(Accelerator("nvidia-tegra", _shown(root, tegra[0].parent), names))
    for dev in _glob(root, "dev/fastrpc-*"):
        found.append(Accelerator("qualcomm-dsp", _shown(root, dev), "FastRPC (Hexagon DSP/NPU)"))
    for lib in _qnn_libraries(root):
        found.append(Accelerator("qnn-library", lib, "QNN HTP backend library"))
    return tuple(found)


def _qnn_libraries(root: Path) -> list[str]:
    dirs = [d for pattern in QNN_LIB_DIRS for d in _glob(root, pattern)]
    if root == Path("/"):
        sdk = os.environ.get("QNN_SDK_ROOT")
        if sdk:
            dirs += [Path(p) for p in glob.glob(os.path.join(sdk, "lib", "*"))]
        spec = importlib.util.find_spec("onnxruntime")  # locates, does not import
        if spec is not None and spec.submodule_search_locations:
            dirs += [Path(p) / "capi" for p in spec.submodule_search_locations]
    libs = [d / "libQnnHtp.so" for d in dirs if (d / "libQnnHtp.so").is_file()]
    return list(dict.fromkeys(_shown(root, lib) if root != Path("/") else str(lib) for lib in libs))


def detect_cameras(root: Path) -> tuple[Camera, ...]:
    cameras = []
    for dev in _glob(root, "dev/video*"):
        if not re.fullmatch(r"video\d+", dev.name):
            continue
        sysdir = root / "sys/class/video4linux" / dev.name
        cameras.append(
            Camera(
                _shown(root, dev),
                _read(root, f"sys/class/video4linux/{dev.name}/name"),
                _driver(sysdir / "device"),
            )
        )
    return tuple(cameras)


def detect_serial_ports(root: Path) -> tuple[SerialPort, ...]:
    ports: dict[str, str] = {}
    if root == Path("/"):
        from serial.tools import list_ports

        for info in list_ports.comports():
            desc = info.description or ""
            ports[info.device] = "" if desc == "n/a" else desc
    for pattern in SERIAL_GLOBS:
        for dev in _glob(root, f"dev/{pattern}"):
            ports.setdefault(_shown(root, dev), "")
    for link in _glob(root, "dev/serial/by-id/*"):
        ports[_shown(root, link)] = "stable link"
    return tuple(SerialPort(path, desc) for path, desc in ports.items())


# --------------------------------------------------------------------------- backends


def _installed(timeout_s: float) -> dict[str, bool | str]:
    """Each backend's SDK imported in a child of its own: a runtime that crashes on import (a wheel
    for another CPU, a missing CPU feature) is that backend's line in the table, not the end of it."""
    from edge.inference.registry import BACKENDS

    return probe_sdks({name: module for name, (module, _func, _extra) in BACKENDS.items()}, timeout_s)


def detect_backends(settings: Settings | None, timeout_s: float = 60.0) -> tuple[BackendReport, ...]:
    reports = []
    for name, installed in _installed(timeout_s).items():
        if installed is not True:
            reports.append(BackendReport(name, False, str(installed)))
            continue
        if name not in PROBE_FIXTURES:  # a remote endpoint has no local providers to load
            reports.append(
                BackendReport(name, True, "remote endpoint: `edge doctor` checks the configured one")
            )
            continue
        model, providers = _probe_plan(name, settings)
        if model is None:
            reports.append(BackendReport(name, True, "no model to probe providers with (set model.path)"))
            continue
        probes = probe_providers(name, model, providers, timeout_s)
        reports.append(BackendReport(name, True, f"providers probed with {model}", probes))
    return tuple(reports)


def _probe_plan(backend: str, settings: Settings | None) -> tuple[Path | None, list[str]]:
    """The configured model with its configured providers when it is this backend's, else the tiny
    fixture with every candidate (loading a real model once per provider can take minutes)."""
    for section in (settings.model, settings.text_model) if settings else ():
        if (
            isinstance(section, LocalModelSettings)
            and section.backend == backend
            and section.path
            and section.path.is_dir()
        ):
            return section.path, list(section.providers)
    candidates = [REPO_FIXTURES / PROBE_FIXTURES[backend]]
    if backend in PACKAGED_PROBE_MODELS:
        candidates.append(package_file(PACKAGED_PROBE_MODELS[backend]))
    model = next((c for c in candidates if c.is_dir()), None)
    return model, list(CANDIDATE_PROVIDERS[backend])


# --------------------------------------------------------------------------- suggestion and report


def suggest_profile(board: Board, accelerators: tuple[Accelerator, ...]) -> tuple[str, str]:
    kinds = {a.kind for a in accelerators}
    if board.kind == "jetson":
        note = "" if "orin" in board.model.lower() else " (not an Orin: the closest profile)"
        return "jetson-orin", f"NVIDIA Jetson board{note}"
    if board.kind == "rpi":
        note = "" if "raspberry pi 5" in board.model.lower() else " (not a Pi 5: the closest profile)"
        return "rpi5", f"Raspberry Pi{note}"
    if board.kind == "qualcomm" or "qualcomm-dsp" in kinds:
        return "qualcomm-qcs", "Qualcomm SoC" + (" with a FastRPC DSP" if "qualcomm-dsp" in kinds else "")
    if "intel-npu" in kinds or board.kind == "intel-core-ultra":
        has = "an Intel NPU" if "intel-npu" in kinds else "an Intel Core Ultra CPU (NPU driver not loaded)"
        return "intel-core-ultra-npu", f"{has}"
    if board.kind == "x86":
        return "x86-cpu", "x86-64 CPU without a supported accelerator"
    if board.kind == "arm":
        return "rpi5", "generic ARM board: rpi5 is the CPU-only ARM profile"
    return "x86-cpu", "unknown board: start from the CPU profile"


def detect(root: str | Path = "/", settings: Settings | None = None, probe: bool = True) -> DeviceReport:
    """Everything `edge devices` shows. probe=False skips the backends (tests with fake roots)."""
    root = Path(root)
    board = detect_board(root)
    accelerators = detect_accelerators(root)
    backends = detect_backends(settings) if probe else ()
    profile, reason = suggest_profile(board, accelerators)
    backend = next((b for b in backends if b.name == PROFILE_BACKEND.get(profile)), None)
    if backend is not None and not backend.installed:
        reason += f"; its backend {backend.name} is not installed"
    return DeviceReport(
        board, accelerators, detect_cameras(root), detect_serial_ports(root), backends, profile, reason
    )


def to_json(report: DeviceReport) -> str:
    return json.dumps(dataclasses.asdict(report), indent=2)


def render_table(report: DeviceReport) -> str:
    b = report.board
    ram = f"{b.ram_mb} MB" if b.ram_mb is not None else "unknown"
    lines = [
        f"board         {b.model} ({b.kind})" + (f", L4T {b.l4t}" if b.l4t else ""),
        f"cpu           {b.cpu} x{b.cores}, {b.arch}" + (f", {' '.join(b.flags)}" if b.flags else ""),
        f"ram           {ram}",
    ]

    def section(title: str, rows: list[tuple[str, ...]]) -> None:
        if not rows:
            lines.append(f"{title:<13} none")
            return
        lines.append(title)
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)] + [r[-1]]
            lines.append("  " + "  ".join(cells).rstrip())

    section("accelerators", [(a.kind, a.path, a.detail) for a in report.accelerators])
    section("cameras", [(c.path, c.name or "?", c.driver) for c in report.cameras])
    section("serial ports", [(p.path, p.description) for p in report.serial_ports])
    if report.backends:
        lines.append("backends")
        for be in report.backends:
            state = "installed" if be.installed else "not installed"
            lines.append(f"  {be.name:<10} {state}: {be.detail}")
            for pr in be.providers:
                detail = pr.detail if len(pr.detail) <= 100 else pr.detail[:99] + "..."
                lines.append(f"    {pr.provider:<9} {'ok' if pr.ok else 'no':<3} {detail}")
    lines.append(f"suggested profile: {report.suggested_profile} ({report.reason})")
    return "\n".join(lines) + "\n"


def devices_command(settings: Settings | None, as_json: bool) -> int:
    """`edge devices [--json]`: prints the report; 0 unless detection itself is impossible."""
    report = detect("/", settings)
    sys.stdout.write(to_json(report) + "\n" if as_json else render_table(report))
    return 0
