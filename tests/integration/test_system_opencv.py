"""The board install as the README gives it: a `--system-site-packages` venv over Debian's
python3-opencv (4.6, GStreamer, numpy 1.x), edge installed from its wheel with the [ort] extra and
without [opencv], running a `gst:` camera end to end.

Offline: the wheel is built from the sources with the dev venv's setuptools; pip resolves its
dependencies (no --no-deps) against what is already installed: Debian's numpy and cv2, and the dev
venv's other distributions, linked into one folder that a .pth line adds, with numpy and
opencv-python-headless left out. A requirement only PyPI could satisfy (the OpenCV wheel, numpy 2)
fails the install, as it would pull numpy 2 on a board. Skips, naming the packages, where Debian's
python3-opencv with GStreamer is not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

from tests.integration.test_wheel import SOURCES

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "models"
SYSTEM_PYTHON = "/usr/bin/python3"
APT = "python3-opencv python3-venv gstreamer1.0-tools gstreamer1.0-plugins-base"
GST = (
    "gst:videotestsrc pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1 ! videoconvert ! appsink"
)
LEFT_OUT = {"numpy", "opencv-python-headless", "opencv-python", "edge-vlm-agent"}

pytestmark = pytest.mark.slow


def _system_opencv_missing() -> str | None:
    if not Path(SYSTEM_PYTHON).exists():
        return f"no {SYSTEM_PYTHON}"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import cv2, numpy, ensurepip; print(cv2.getBuildInformation())"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"Debian's python3-opencv is not installed: apt-get install -y {APT}"
    if not re.search(r"GStreamer:\s+YES", probe.stdout):
        return "the system OpenCV has no GStreamer"
    if shutil.which("gst-inspect-1.0") is None:
        return f"gst-inspect-1.0 missing: apt-get install -y {APT}"
    return None


def _closure(names: list[str]) -> set[str]:
    """The dev venv's distributions these need, recursively (markers for extras ignored)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = re.split(r"[\s<>=!~;\[(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if name in seen or name in LEFT_OUT:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        todo += [r for r in dist.requires or [] if "extra ==" not in r]
    return seen


def _link_distributions(names: set[str], into: Path) -> None:
    into.mkdir()
    for name in names:
        dist = metadata.distribution(name)
        site = Path(str(dist.locate_file("")))
        for file in dist.files or []:
            top = file.parts[0]
            if top.startswith("..") or top.endswith(".pth") or top == "__pycache__":
                continue
            if not (into / top).exists():
                (into / top).symlink_to(site / top)


def _run(cmd: list[str], env: dict[str, str], timeout: float = 180, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def board_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    reason = _system_opencv_missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("board")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "PYTHON", "VIRTUAL_ENV", "PIP_"))
    }
    src = root / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(root), str(src)],
        env,
    )
    [wheel] = root.glob("*.whl")

    venv = root / "venv"
    _run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(venv)], env)
    py = str(venv / "bin" / "python")
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env).strip())
    deps = root / "deps"
    wanted = [str(r) for r in metadata.requires("edge-vlm-agent") or [] if "extra ==" not in r]
    wanted += ["onnxruntime-genai", "onnxruntime"]  # the [ort] extra
    _link_distributions(_closure(wanted), deps)
    (site / "dev-venv-dependencies.pth").write_text(f"{deps}\n")
    # The README's board command, offline: pip must find every requirement already satisfied.
    _run(
        [py, "-m", "pip", "install", "-q", "--no-index", "--disable-pip-version-check", f"{wheel}[ort]"], env
    )
    cwd = root / "elsewhere"
    cwd.mkdir()
    return venv, env, cwd


def test_board_install_keeps_the_system_numpy_and_opencv(
    board_venv: tuple[Path, dict[str, str], Path],
) -> None:
    venv, env, cwd = board_venv
    out = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import numpy, cv2, edge; print(numpy.__version__, cv2.__file__, edge.__file__)",
        ],
        env,
        cwd=cwd,
    )
    numpy_version, cv2_file, edge_file = out.split()
    assert numpy_version.startswith("1."), out
    assert cv2_file.startswith("/usr/lib/python3/dist-packages/"), out
    assert edge_file.startswith(str(venv)), out


def test_gst_camera_end_to_end_on_the_system_opencv(board_venv: tuple[Path, dict[str, str], Path]) -> None:
    venv, env, cwd = board_venv
    environ = {**env, "EDGE_CAMERA__SOURCE": GST, "EDGE_CAMERA__STALL_S": "5"}
    res = subprocess.run(
        [
            str(venv / "bin" / "edge"),
            "caption",
            "--camera",
            "--json",
            "--set",
            f"model.path={MODELS / 'ort-phi3v-fp32'}",
            "--set",
            "model.max_new_tokens=4",
            "--set",
            "model.num_crops=1",
        ],
        capture_output=True,
        text=True,
        env=environ,
        timeout=180,
        cwd=cwd,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert '"camera"' in res.stdout and '"image_tokens": 313' in res.stdout.replace(":313", ": 313")
    # Opening the pipeline printed nothing of OpenCV's or GStreamer's own
    for noise in ("[ WARN", "GStreamer warning", "GStreamer-CRITICAL", "GLib-GObject"):
        assert noise not in res.stderr, res.stderr[-2000:]


def test_missing_element_is_one_line_at_once(board_venv: tuple[Path, dict[str, str], Path]) -> None:
    venv, env, cwd = board_venv
    environ = {**env, "EDGE_CAMERA__SOURCE": "gst:nosuchelement ! videoconvert ! appsink"}
    res = subprocess.run(
        [
            str(venv / "bin" / "edge"),
            "caption",
            "--camera",
            "--set",
            f"model.path={MODELS / 'ort-phi3v-fp32'}",
        ],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        cwd=cwd,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        "edge: error: camera source 'gst:nosuchelement ! videoconvert ! appsink': GStreamer has no "
        "element nosuchelement (`gst-inspect-1.0 nosuchelement` says so too)"
    ]


def test_numpy_2_beside_the_system_opencv_is_named(
    board_venv: tuple[Path, dict[str, str], Path], tmp_path: Path
) -> None:
    """What a venv gets when something pulls numpy 2 in: run and doctor say so, one line each."""
    venv, env, cwd = board_venv
    shadow = tmp_path / "numpy2"
    shadow.mkdir()
    dev = Path(sysconfig.get_paths()["purelib"])
    for name in ("numpy", "numpy.libs"):
        if (dev / name).exists():
            (shadow / name).symlink_to(dev / name)
    environ = {**env, "PYTHONPATH": str(shadow), "EDGE_CAMERA__SOURCE": GST}
    run = subprocess.run(
        [
            str(venv / "bin" / "edge"),
            "run",
            "--profile",
            "x86-cpu",
            "--set",
            f"model.path={MODELS / 'ort-phi3v-fp32'}",
        ],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        cwd=cwd,
    )
    assert run.returncode == 1, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("edge: error: OpenCV (cv2) cannot be imported with numpy 2."), run.stderr[-2000:]
    assert run.stderr.strip().splitlines() == [last], run.stderr[-2000:]  # numpy's page is not repeated
    doctor = subprocess.run(
        [str(venv / "bin" / "edge"), "doctor", "--set", f"model.path={MODELS / 'ort-phi3v-fp32'}"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        cwd=cwd,
    )
    lines = {line.split(":", 1)[0].split()[-1]: line for line in doctor.stdout.splitlines() if ":" in line}
    assert lines["opencv"].startswith("fail  opencv: OpenCV (cv2) cannot be imported with numpy 2."), (
        doctor.stdout
    )
    assert lines["load"].startswith("skip"), doctor.stdout
    assert "Traceback" not in doctor.stderr, doctor.stderr[-2000:]


_HANG = """
import threading, time
import edge.capture.gst as gst
import edge.capture.grabber as grabber
from edge.capture import Grabber
from edge.config.settings import CameraSettings
gst.missing_tools = lambda: "pretend gst-inspect-1.0 is missing"  # reach the native hang itself
grabber.open_timeout_s = lambda settings: 0.3
grabber.RETIRE_GRACE_S = 0.1
before = threading.active_count()
g = Grabber(CameraSettings(source="gst:nosuchelement ! videoconvert ! appsink", reconnect_s=0.2), backoff_initial_s=0.05)
g.start()
counts = []
for _ in range(6):
    time.sleep(0.5)
    counts.append(threading.active_count() - before)
s = g.stats()
print(max(counts), s.state, s.abandoned, s.reconnects, flush=True)
"""


def test_a_pipeline_that_never_prerolls_keeps_the_thread_count_flat(
    board_venv: tuple[Path, dict[str, str], Path],
) -> None:
    """The real native hang (OpenCV 4.6 + GStreamer, `nosuchelement ! videoconvert ! appsink`) with
    the registry check bypassed: the grabber keeps one stuck reader, not one per retry."""
    venv, env, cwd = board_venv
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", _HANG],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=cwd,
    )
    # the stuck native thread may keep the interpreter from exiting cleanly: judge the printed line
    threads, state, abandoned, reconnects = proc.stdout.split()
    assert int(threads) <= 2 and state == "lost" and abandoned == "1" and reconnects == "0", proc.stdout
