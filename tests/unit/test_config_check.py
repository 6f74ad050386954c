"""`config check` and `doctor` refuse settings that cannot work here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.capture.base import CameraConfigError
from edge.capture.factory import check_source
from edge.cli.doctor.checks import check_model_folder
from edge.cli.doctor.command import Host, run_doctor
from edge.config.settings import CameraSettings, OrtGenAIModelSettings

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "models"
VISION = MODELS / "ort-phi3v-fp32"
TEXT = MODELS / "ort-phi3-fp32"


def check(tmp_path: Path, toml: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "edge.toml"
    cfg.write_text(toml)
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "config", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin"},
        timeout=60,
        cwd=str(REPO),
    )


def test_a_working_setup_passes(tmp_path: Path) -> None:
    res = check(tmp_path, f'[model]\npath = "{VISION}"\n[camera]\nsource = "testsrc"\n')
    assert res.returncode == 0, res.stderr


def test_a_text_only_model_for_image_tasks_is_refused_naming_the_key(tmp_path: Path) -> None:
    res = check(tmp_path, f'[model]\npath = "{TEXT}"\n')
    assert res.returncode == 2, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert "model.path" in line and "text-only" in line and "caption" in line, line
    # as [text_model] the same folder is right
    ok = check(tmp_path, f'[model]\npath = "{VISION}"\n[text_model]\npath = "{TEXT}"\n')
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("model", ["", 'path = "/nonexistent/phi-3.5-v"'])
def test_a_missing_model_path_is_refused(tmp_path: Path, model: str) -> None:
    res = check(tmp_path, f"[model]\n{model}\n")
    assert res.returncode == 2, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert "model.path" in line and ("not set" in line or "does not exist" in line), line


def test_an_openvino_backend_on_an_ort_folder_is_refused(tmp_path: Path) -> None:
    res = check(tmp_path, f'[model]\npath = "{VISION}"\nbackend = "openvino"\n')
    assert res.returncode == 2 and "ONNX Runtime GenAI" in res.stderr, res.stderr


@pytest.mark.parametrize(
    ("source", "words"),
    [("/dev/video97", "no such device"), ("97", "no such device"), ("/tmp/vidoe-typo.mp4", "no such file")],
)
def test_a_missing_device_and_a_typod_file_are_the_same_kind_of_error(
    tmp_path: Path, source: str, words: str
) -> None:
    device = source.startswith("/dev") or source.isdigit()
    if device and (not sys.platform.startswith("linux") or Path("/dev/video97").exists()):
        pytest.skip("needs Linux without /dev/video97")
    value = source if source.isdigit() else f'"{source}"'
    res = check(tmp_path, f'[model]\npath = "{VISION}"\n[camera]\nsource = {value}\n')
    assert res.returncode == 2, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert "camera.source" in line and words in line, line
    with pytest.raises(CameraConfigError, match=words):
        check_source(CameraSettings(source=int(source) if source.isdigit() else source))


def test_doctor_fails_a_text_only_model_for_image_tasks() -> None:
    result, folder = check_model_folder("model folder", OrtGenAIModelSettings(path=TEXT), "test", ["caption"])
    assert result.status == "fail" and folder is None and "text-only" in result.detail
    result, folder = check_model_folder("text model folder", OrtGenAIModelSettings(path=TEXT), "test")
    assert result.status == "ok" and folder is not None


def test_doctor_wires_the_image_tasks_in(tmp_path: Path) -> None:
    host = Host(unit_dirs=(tmp_path,), systemd_marker=tmp_path / "none", broker_timeout_s=1.0)
    overrides = [f'model.path="{TEXT}"', "mqtt.port=9", f'mqtt.outbox_path="{tmp_path / "o.db"}"']
    results = run_doctor(None, None, overrides, host=host)
    by_name = {r.name: r for r in results}
    assert by_name["model folder"].status == "fail", by_name["model folder"]
    assert "text-only" in by_name["model folder"].detail


# --------------------------------------------------------------------------- what `edge run` refuses

PROFILES = sorted(p.stem for p in (REPO / "edge" / "config" / "profiles").glob("*.toml"))


def edge(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin", "PYTHONPATH": str(REPO)},
        timeout=timeout,
        cwd=str(cwd),
    )


@pytest.mark.parametrize("model", ["", 'path = "/nonexistent/phi-3.5-v"'])
def test_run_refuses_a_model_that_is_not_there_as_check_does(tmp_path: Path, model: str) -> None:
    """Not READY and a retry loop forever: exit 2 at once, so systemd's RestartPreventExitStatus=2
    leaves the unit failed. The line is the one `config check` prints."""
    cfg = tmp_path / "edge.toml"
    cfg.write_text(f'[model]\n{model}\n[camera]\nsource = "testsrc"\n[mqtt]\nport = 9\n')
    run = edge(tmp_path, "run", "--config", str(cfg))
    check = edge(tmp_path, "config", "check", "--config", str(cfg))
    assert (run.returncode, check.returncode) == (2, 2), run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("edge: config error: model.path") and line in check.stderr.splitlines()


def test_run_without_a_config_file_or_a_profile_is_a_config_error(tmp_path: Path) -> None:
    """A bare `edge run` would run on defaults: a test pattern, and whatever broker is at :1883."""
    if Path("/etc/edge/edge.toml").exists():
        pytest.skip("this machine has /etc/edge/edge.toml: `edge run` reads it")
    run = edge(tmp_path, "run")
    check = edge(tmp_path, "config", "check")
    offline = edge(tmp_path, "config", "check", "--offline")
    assert (run.returncode, check.returncode, offline.returncode) == (2, 2, 2), run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert "no config file and no profile" in line and "--config" in line and "--profile" in line
    assert check.stderr.strip().splitlines() == [line] == offline.stderr.strip().splitlines()


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_checks_offline(tmp_path: Path, profile: str) -> None:
    """A board's config checked on a laptop or in CI: no look at this machine's /dev or /opt."""
    res = edge(tmp_path, "config", "check", "--offline", "--profile", profile)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"ok: no config file; profile {profile}"


def test_offline_keeps_the_host_checks_out_and_the_schema_in(tmp_path: Path) -> None:
    on_board = edge(tmp_path, "config", "check", "--profile", "rpi5")
    if on_board.returncode == 0:
        pytest.skip("this machine has the rpi5 profile's model and camera")
    assert on_board.returncode == 2 and "model.path" in on_board.stderr  # the host checks stay
    cfg = tmp_path / "edge.toml"
    cfg.write_text('[model]\n[camera]\nsource = "/dev/video97"\n')
    res = edge(tmp_path, "config", "check", "--offline", "--config", str(cfg))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "edge: config error: model.path: not set: point it at a model folder"
    ]
    cfg.write_text(f'[model]\npath = "{VISION}"\nno_such_key = 1\n')
    res = edge(tmp_path, "config", "check", "--offline", "--config", str(cfg))
    assert res.returncode == 2 and "no_such_key" in res.stderr, res.stderr
