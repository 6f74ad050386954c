"""The boards' own userland: edge installed from this checkout's wheel into an arm64 Debian 12
rootfs and run there under qemu-user (tools/arm64_rig.py), checked as a board owner would check it
with `[opencv,ort]`: the demo caption of a drawn scene, `edge devices` (also with a runtime that
segfaults on import), `edge doctor`, `edge config check --profile rpi5`. OpenVINO GenAI and the
GStreamer path over Debian's OpenCV are `make arm64-full` (too slow cold for every CI run). The
rootfs and the venvs are cached under ${EDGE_TEST_CACHE:-/var/cache/edge-tests}.

Skips only where the machine cannot emulate arm64 at all (no root, no binfmt_misc, no mmdebstrap);
`make test` (tools/test_deps.sh) installs qemu-user-static, binfmt-support and mmdebstrap, so on CI it runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools.arm64_rig import SETS, cache_root, missing_prerequisites

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _mounts_under(path: Path) -> list[str]:
    """Mount points of THIS namespace at or below path (the rig must leave none behind)."""
    text = Path("/proc/self/mountinfo").read_text()
    points = [line.split()[4] for line in text.splitlines()]
    return [p for p in points if p == str(path) or p.startswith(f"{path}/")]


@pytest.mark.timeout(3000)
def test_edge_on_arm64_debian_bookworm(tmp_path: Path) -> None:
    reason = missing_prerequisites()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "steps.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "arm64_rig.py"),
            "--suite",
            "bookworm",
            "--set",
            "ci",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=2900,
    )
    print(proc.stdout[-6000:])  # the step table with its emulation times, shown with -s or on failure
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    doc = json.loads(out.read_text())
    steps = {s["name"]: s for s in doc["steps"]}
    assert doc["ok"] and all(s["ok"] for s in doc["steps"])
    assert "aarch64 3.11" in steps["python in the rootfs"]["detail"]
    wanted = [
        "edge caption --profile demo (picture)",
        "edge devices",
        "edge devices (x86 cpuinfo: onnxruntime crashes)",
    ]
    if "gst" in SETS["ci"]:
        wanted.append("GStreamer path: the picture through a gst: pipeline")
    if "openvino" in SETS["ci"]:
        wanted.append("edge caption --profile demo-openvino (picture)")
    assert set(wanted) <= set(steps), sorted(steps)
    assert _mounts_under(cache_root()) == []
