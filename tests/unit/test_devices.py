"""Board detection from fake /proc, /sys and /dev trees, one per board type; provider probing in
child processes; and one real run of `edge devices --json` on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli.devices import DeviceReport, detect, render_table, to_json
from edge.cli.provider_probe import probe_providers
from edge.config.settings import Settings

REPO = Path(__file__).resolve().parents[2]


class FakeRoot:
    def __init__(self, root: Path) -> None:
        self.root = root

    def file(self, rel: str, text: str = "") -> FakeRoot:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return self

    def link(self, rel: str, target: str) -> FakeRoot:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
        return self

    def driver(self, sys_device_dir: str, driver: str) -> FakeRoot:
        return self.link(f"{sys_device_dir}/driver", f"../../../../bus/platform/drivers/{driver}")

    def video(self, n: int, name: str, driver: str) -> FakeRoot:
        self.file(f"dev/video{n}").file(f"sys/class/video4linux/video{n}/name", name + "\n")
        return self.driver(f"sys/class/video4linux/video{n}/device", driver)

    def arm_cpus(
        self, parts: list[str], features: str, implementer: str = "0x41", model: str = ""
    ) -> FakeRoot:
        blocks = [
            f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: {implementer}\n"
            f"CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: {part}\nCPU revision\t: 1\n"
            for i, part in enumerate(parts)
        ]
        tail = f"\nRevision\t: d04170\nModel\t\t: {model}\n" if model else ""
        return self.file("proc/cpuinfo", "\n".join(blocks) + tail)

    def x86_cpus(self, count: int, model_name: str, flags: str) -> FakeRoot:
        blocks = [
            f"processor\t: {i}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 170\n"
            f"model name\t: {model_name}\nflags\t\t: {flags}\n"
            for i in range(count)
        ]
        return self.file("proc/cpuinfo", "\n".join(blocks))

    def ram(self, kb: int) -> FakeRoot:
        return self.file("proc/meminfo", f"MemTotal:       {kb} kB\nMemFree:         1234 kB\n")


@pytest.fixture
def fake(tmp_path: Path) -> FakeRoot:
    return FakeRoot(tmp_path)


def kinds(report: DeviceReport) -> list[str]:
    return [a.kind for a in report.accelerators]


def test_raspberry_pi_5(fake: FakeRoot) -> None:
    model = "Raspberry Pi 5 Model B Rev 1.0"
    fake.file("proc/device-tree/model", model + "\x00").ram(8245236)
    fake.arm_cpus(
        ["0xd0b"] * 4, "fp asimd evtstrm aes crc32 atomics fphp asimdhp asimdrdm lrcpc asimddp", model=model
    )
    for n in range(4):
        fake.video(n, "rp1-cfe", "rp1-cfe")
    fake.video(8, "USB Camera: USB Camera", "uvcvideo")
    fake.file("dev/ttyAMA0").file("dev/ttyAMA10").file("dev/ttyS0")
    fake.driver("sys/class/drm/renderD128/device", "v3d")  # the Pi's GPU: not an inference target
    report = detect(fake.root, probe=False)
    board = report.board
    assert (board.kind, board.model, board.arch, board.cores) == ("rpi", model, "aarch64", 4)
    assert board.cpu == "Cortex-A76"
    assert {"asimd", "asimddp"} <= set(board.flags) and "i8mm" not in board.flags
    assert board.ram_mb == 8245236 // 1024
    assert report.accelerators == ()
    assert [c.path for c in report.cameras] == [f"/dev/video{n}" for n in (0, 1, 2, 3, 8)]
    assert report.cameras[-1].name == "USB Camera: USB Camera" and report.cameras[-1].driver == "uvcvideo"
    assert [p.path for p in report.serial_ports] == ["/dev/ttyAMA0", "/dev/ttyAMA10"]
    assert report.suggested_profile == "rpi5"


def test_raspberry_pi_4_gets_the_pi_profile_with_a_note(fake: FakeRoot) -> None:
    fake.file("proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.5\x00").arm_cpus(
        ["0xd08"] * 4, "fp asimd"
    )
    report = detect(fake.root, probe=False)
    assert report.suggested_profile == "rpi5" and "not a Pi 5" in report.reason
    assert report.board.cpu == "Cortex-A72"


def test_jetson_orin(fake: FakeRoot) -> None:
    fake.file("proc/device-tree/model", "NVIDIA Jetson AGX Orin Developer Kit\x00").ram(32 * 1024 * 1024)
    fake.file(
        "etc/nv_tegra_release",
        "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May 6 2024\n",
    )
    fake.arm_cpus(["0xd42"] * 12, "fp asimd atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp")
    fake.file("dev/nvhost-ctrl").file("dev/nvhost-ctrl-gpu").file("dev/nvmap").file("dev/ttyTHS1")
    fake.video(0, "vi-output, imx219 9-0010", "tegra-camrtc-capture-vi")
    report = detect(fake.root, probe=False)
    assert (report.board.kind, report.board.l4t, report.board.cores) == ("jetson", "R36.3.0", 12)
    assert report.board.cpu == "Cortex-A78AE"
    assert kinds(report) == ["nvidia-tegra"]
    assert "nvhost-ctrl" in report.accelerators[0].detail
    assert [p.path for p in report.serial_ports] == ["/dev/ttyTHS1"]
    assert report.suggested_profile == "jetson-orin" and "not an Orin" not in report.reason


def test_intel_core_ultra_with_npu(fake: FakeRoot) -> None:
    fake.x86_cpus(4, "Intel(R) Core(TM) Ultra 7 155H", "fpu sse2 avx avx2 fma f16c avx_vnni").ram(32_000_000)
    fake.file("sys/class/dmi/id/sys_vendor", "Dell Inc.\n").file(
        "sys/class/dmi/id/product_name", "XPS 14 9440\n"
    )
    fake.file("dev/accel/accel0").driver("sys/class/accel/accel0/device", "intel_vpu")
    fake.file("dev/dri/renderD128").driver("sys/class/drm/renderD128/device", "i915")
    fake.video(0, "Integrated_Webcam_HD: Integrate", "uvcvideo")
    report = detect(fake.root, probe=False)
    assert (report.board.kind, report.board.model) == ("intel-core-ultra", "Dell Inc. XPS 14 9440")
    assert report.board.cpu == "Intel(R) Core(TM) Ultra 7 155H"
    assert {"avx2", "avx_vnni"} <= set(report.board.flags) and "avx512f" not in report.board.flags
    assert kinds(report) == ["intel-npu", "intel-gpu"]
    assert report.accelerators[0].path == "/dev/accel/accel0"
    assert report.accelerators[0].detail == "driver intel_vpu"
    assert report.suggested_profile == "intel-core-ultra-npu"
    assert "NPU driver not loaded" not in report.reason


def test_intel_core_ultra_without_npu_driver(fake: FakeRoot) -> None:
    fake.x86_cpus(2, "Intel(R) Core(TM) Ultra 5 125U", "avx2")
    report = detect(fake.root, probe=False)
    assert report.suggested_profile == "intel-core-ultra-npu"
    assert "NPU driver not loaded" in report.reason


def test_qualcomm_qcs6490(fake: FakeRoot) -> None:
    fake.file("proc/device-tree/model", "Qualcomm Technologies, Inc. Robotics RB3gen2\x00").ram(6_000_000)
    fake.arm_cpus(["0xd05"] * 4 + ["0xd41"] * 4, "fp asimd atomics asimddp lrcpc")
    fake.file("dev/fastrpc-cdsp").file("dev/fastrpc-adsp").file("usr/lib/libQnnHtp.so")
    fake.file("dev/ttyHS1").file("dev/ttyUSB0")
    report = detect(fake.root, probe=False)
    assert report.board.kind == "qualcomm"
    assert report.board.cpu == "Cortex-A55 + Cortex-A78" and report.board.cores == 8
    assert kinds(report) == ["qualcomm-dsp", "qualcomm-dsp", "qnn-library"]
    assert report.accelerators[-1].path == "/usr/lib/libQnnHtp.so"
    assert [p.path for p in report.serial_ports] == ["/dev/ttyUSB0", "/dev/ttyHS1"]
    assert report.suggested_profile == "qualcomm-qcs"


def test_plain_x86_with_usb_serial_and_a_discrete_nvidia_card(fake: FakeRoot) -> None:
    flags = "fpu sse2 avx avx2 fma f16c avx512f avx512_vnni"
    fake.x86_cpus(8, "Intel(R) Xeon(R) E-2388G CPU @ 3.20GHz", flags).ram(16_000_000)
    fake.file("dev/nvidia0").file("dev/nvidiactl").file("dev/nvidia-uvm")
    fake.file("proc/driver/nvidia/version", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14\n")
    fake.file("dev/ttyACM0").link("dev/serial/by-id/usb-u-blox_GNSS_receiver-if00", "../../ttyACM0")
    report = detect(fake.root, probe=False)
    assert (report.board.kind, report.board.cores, report.board.arch) == ("x86", 8, "x86_64")
    assert kinds(report) == ["nvidia-gpu"]
    assert "550.54.14" in report.accelerators[0].detail
    assert [(p.path, p.description) for p in report.serial_ports] == [
        ("/dev/ttyACM0", ""),
        ("/dev/serial/by-id/usb-u-blox_GNSS_receiver-if00", "stable link"),
    ]
    assert report.cameras == ()
    assert report.suggested_profile == "x86-cpu"


def test_unknown_arm_board_and_empty_root(fake: FakeRoot, tmp_path: Path) -> None:
    fake.arm_cpus(["0xd03"] * 4, "fp asimd")
    report = detect(fake.root, probe=False)
    assert (report.board.kind, report.suggested_profile) == ("arm", "rpi5")
    empty = detect(tmp_path / "nothing", probe=False)
    assert (empty.board.kind, empty.board.cores, empty.board.ram_mb) == ("unknown", 0, None)


def test_table_and_json_render_every_section(fake: FakeRoot) -> None:
    fake.x86_cpus(4, "Intel(R) Core(TM) Ultra 7 155H", "avx2").ram(16_000_000)
    fake.file("dev/accel/accel0").driver("sys/class/accel/accel0/device", "intel_vpu")
    fake.video(0, "Webcam", "uvcvideo").file("dev/ttyUSB0")
    report = detect(fake.root, probe=False)
    table = render_table(report)
    for expected in ("intel-npu", "/dev/accel/accel0", "/dev/video0", "/dev/ttyUSB0", "intel-core-ultra-npu"):
        assert expected in table
    doc = json.loads(to_json(report))
    assert doc["board"]["cores"] == 4
    assert doc["accelerators"][0]["kind"] == "intel-npu"
    assert doc["cameras"][0] == {"path": "/dev/video0", "name": "Webcam", "driver": "uvcvideo"}
    assert doc["suggested_profile"] == "intel-core-ultra-npu"


FAKE_CHILD = """\
import json, os, signal, sys
providers = sys.argv[sys.argv.index("edge.cli.provider_probe") + 3:]
for p in providers:
    if p == "boom":
        os.kill(os.getpid(), signal.SIGSEGV)
    if p == "hang":
        import time; time.sleep(60)
    print(json.dumps({"provider": p, "ok": True, "detail": "loaded"}), flush=True)
"""


def test_a_crashing_or_hanging_provider_costs_only_its_own_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child is a real process that dies by SIGSEGV or hangs; the parent goes on in a new child."""
    script = tmp_path / "fake_python.py"
    script.write_text(FAKE_CHILD)
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(wrapper))
    probes = probe_providers("ort-genai", tmp_path, ["cpu", "boom", "cuda", "hang", "QNN"], timeout_s=2.0)
    assert [(p.provider, p.ok) for p in probes] == [
        ("cpu", True),
        ("boom", False),
        ("cuda", True),
        ("hang", False),
        ("QNN", True),
    ]
    assert "crashed the process (exit -11)" in probes[1].detail
    assert "did not finish within 2 s" in probes[3].detail


def test_edge_devices_json_on_this_machine() -> None:
    """The real thing: this machine's CPU, both installed backends, the providers that load here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "devices", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    doc = json.loads(out.stdout)
    assert doc["board"]["arch"] in ("x86_64", "aarch64")
    assert doc["board"]["cores"] >= 1 and doc["board"]["ram_mb"] > 0
    backends = {b["name"]: b for b in doc["backends"]}
    assert set(backends) == {"ort-genai", "openvino", "http"}
    # a remote endpoint has no local providers: listed as installed, nothing probed
    assert backends["http"]["installed"] and not backends["http"]["providers"]
    loadable = {
        name: sorted(p["provider"] for p in b["providers"] if p["ok"]) for name, b in backends.items()
    }
    assert "cpu" in loadable["ort-genai"]
    assert "CPU" in loadable["openvino"]
    # and what cannot load here says so instead of vanishing
    assert any(not p["ok"] and p["detail"] for p in backends["ort-genai"]["providers"])
    assert doc["suggested_profile"] in ("x86-cpu", "intel-core-ultra-npu", "rpi5")


def test_a_configured_model_is_probed_with_its_configured_providers(fake: FakeRoot) -> None:
    model = REPO / "tests" / "fixtures" / "models" / "ort-phi3v-fp32"
    settings = Settings.model_validate({"model": {"path": str(model), "providers": ["cpu", "cuda"]}})
    report = detect(fake.root, settings=settings, probe=True)
    ort = next(b for b in report.backends if b.name == "ort-genai")
    assert str(model) in ort.detail
    assert [(p.provider, p.ok) for p in ort.providers] == [("cpu", True), ("cuda", False)]
    assert ort.providers[0].load_ms is not None and ort.providers[0].load_ms > 0


def test_probe_model_outside_a_checkout_is_the_packaged_demo(monkeypatch, tmp_path) -> None:
    """An installed wheel has no tests/fixtures: ORT GenAI is probed with the shipped demo model."""
    from edge.assets import package_file
    from edge.cli import devices

    assert devices._probe_plan("ort-genai", None)[0] == devices.REPO_FIXTURES / "ort-phi3-fp32"
    monkeypatch.setattr(devices, "REPO_FIXTURES", tmp_path / "no-checkout")
    assert devices._probe_plan("ort-genai", None)[0] == package_file("assets/models/demo-ort")
    assert devices._probe_plan("openvino", None)[0] is None
