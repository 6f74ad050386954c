"""The shipped unit verifies, scores <= 2.0 exposure, matches the watchdog defaults; edge.env loads;
`edge service unit` prints it for this install.

The unit, its README and the env example are written once, in the checkout's top-level systemd/;
edge/assets/systemd is a symlink to it, so they are package data from a checkout and from a wheel."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from edge.assets import package_file
from edge.cli import service
from edge.cli.main import main
from edge.config.settings import WatchdogSettings
from edge.config.sources import ENV_RESERVED, load_settings
from tests.helpers.model_sections import local

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = package_file("assets/systemd")
UNIT = SYSTEMD / "edge.service"
SHIPPED = ["edge.service", "edge.env", "README.md"]
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (apt-get install systemd)"
)


def _service() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def _bytes(value: str) -> float:
    m = re.fullmatch(r"(\d+)([KMG])?", value)
    assert m, value
    return float(m.group(1)) * {"K": 2**10, "M": 2**20, "G": 2**30, None: 1}[m.group(2)]


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    assert m, value
    return float(m.group(1)) * (60 if m.group(2) == "min" else 1)


@needs_analyze
def test_unit_verifies(tmp_path: Path) -> None:
    # verify insists that ExecStart's program exists: point it at this interpreter, change nothing else
    text = UNIT.read_text()
    assert "ExecStart=/opt/edge/venv/bin/edge run" in text
    unit = tmp_path / "edge.service"
    unit.write_text(text.replace("/opt/edge/venv/bin/edge", sys.executable))
    assert ANALYZE is not None  # needs_analyze
    proc = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "edge.service" not in proc.stderr  # no warning about our unit either


@needs_analyze
def test_security_exposure_at_most_2() -> None:
    assert ANALYZE is not None  # needs_analyze
    proc = subprocess.run(
        [ANALYZE, "security", "--offline=yes", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    m = re.search(r"Overall exposure level for edge\.service: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout[-2000:] + proc.stderr
    assert float(m.group(1)) <= 2.0


def test_unit_fits_the_watchdog_and_process_model() -> None:
    svc = _service()
    defaults = WatchdogSettings()
    assert svc["Type"] == ["notify"] and svc["NotifyAccess"] == ["main"]
    profiles = [
        tomllib.loads(p.read_text()).get("watchdog", {})
        for p in package_file("config/profiles").glob("*.toml")
    ]
    assert profiles
    longest = max([defaults.total_s] + [w.get("total_s", 0) for w in profiles])
    assert _seconds(svc["TimeoutStopSec"][0]) > longest  # a running job may finish or hit its deadline
    memory_max = svc["MemoryMax"][0]
    if memory_max.endswith("%"):  # a share of RAM: profiles size max_rss_mb to their board
        assert 80 <= float(memory_max[:-1]) < 100
    else:
        biggest_worker = max([defaults.max_rss_mb] + [w.get("max_rss_mb", 0) for w in profiles])
        assert _bytes(memory_max) > (biggest_worker + 500) * 2**20  # recycling comes first
    assert _seconds(svc["WatchdogSec"][0]) > 0
    assert svc["KillMode"] == ["mixed"]  # SIGTERM to the daemon only; it stops its worker itself
    assert svc["OOMPolicy"] == ["continue"]  # an OOM-killed worker is the supervisor's to restart
    assert svc["Restart"] == ["on-failure"] and svc["RestartPreventExitStatus"] == ["2"]
    # a credential name, not a path: a missing file must not fail the start (anonymous brokers)
    assert svc["LoadCredential"] == ["mqtt_password:edge.mqtt_password"]
    assert svc["DynamicUser"] == ["yes"] and svc["StateDirectory"] == ["edge"]
    # only groups every Debian system has (base-passwd): a missing one fails the start (216/GROUP)
    assert set(svc["SupplementaryGroups"][0].split()) == {"video", "dialout"}
    assert svc["DevicePolicy"] == ["closed"]
    devices = " ".join(svc["DeviceAllow"])
    for group in ("video4linux", "ttyUSB", "ttyACM", "drm", "accel"):
        assert f"char-{group}" in devices
    assert "AF_INET" in svc["RestrictAddressFamilies"][0]  # it must reach the broker


def test_env_example_is_valid_settings(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    for line in (SYSTEMD / "edge.env").read_text().splitlines():
        m = re.fullmatch(r"#?(EDGE_[A-Z0-9_]+)=(.*)", line.strip())
        if m:
            env[m.group(1)] = m.group(2)
    assert len(env) >= 10
    settings_env = {k: v for k, v in env.items() if k not in ENV_RESERVED}
    config = tmp_path / "edge.toml"
    config.write_text("")
    loaded = load_settings(config=config, environ=settings_env)  # every example key is a real setting
    assert loaded.settings.mqtt.port == int(env["EDGE_MQTT__PORT"])
    assert local(loaded.settings.model).providers == ["qnn", "cpu"]
    assert loaded.origin(("watchdog", "total_s")) == "env EDGE_WATCHDOG__TOTAL_S"
    assert set(env) - set(settings_env) <= ENV_RESERVED


def test_systemd_is_the_one_source_of_the_packaged_unit() -> None:
    """Editing systemd/edge.service is editing what `edge service unit` prints: one file, not two."""
    assert sorted(p.name for p in (ROOT / "systemd").iterdir()) == sorted(SHIPPED)
    assert SYSTEMD.is_symlink() and SYSTEMD.resolve() == (ROOT / "systemd").resolve()


def _unit_lines(text: str) -> list[str]:
    adapted = ("ExecStart=", "Documentation=", "SupplementaryGroups=", "# to the install it runs from")
    return [line for line in text.splitlines() if not line.startswith(adapted)]


def test_service_unit_runs_this_installs_edge(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service", "unit"]) == 0
    text = capsys.readouterr().out
    script = Path(sys.executable).parent / "edge"  # the dev venv's console script
    assert f"ExecStart={script} run --config /etc/edge/edge.toml\n" in text
    assert f"Documentation=file://{SYSTEMD / 'README.md'}\n" in text
    assert _unit_lines(text) == _unit_lines(UNIT.read_text())  # nothing else changes
    assert f"# to the install it runs from (here: {script}).\n" in text  # not the shipped /opt path


@pytest.mark.parametrize("render", [True, False])
def test_service_unit_adds_render_only_where_the_group_exists(
    monkeypatch: pytest.MonkeyPatch, render: bool
) -> None:
    monkeypatch.setattr(service, "_group_exists", lambda name: render and name == "render")
    groups = re.search(r"^SupplementaryGroups=(.*)$", service.unit_text(), re.M)
    assert groups and groups.group(1).split() == ["video", "dialout", *(["render"] if render else [])]


def test_a_venv_python_resolving_under_home_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyenv, uv and conda venvs: bin/python links into the home directory, hidden by ProtectHome."""
    (tmp_path / "bin").mkdir()
    python = tmp_path / "bin" / "python"
    python.symlink_to("/root/.pyenv/versions/3.11.7/bin/python3.11")
    script = tmp_path / "bin" / "edge"
    script.write_text(f"#!{python}\nimport edge.cli.main\n")
    monkeypatch.setattr(sys, "base_prefix", "/home/pi/.local/share/uv/python/cpython-3.11")
    found = service.sandbox_problems([str(script)])
    assert (
        "the interpreter (resolved) /root/.pyenv/versions/3.11.7/bin/python3.11 is out of the service's "
        "reach: the unit's ProtectHome=yes hides /root"
    ) in found
    assert any(line.startswith("the Python installation /home/pi/") for line in found), found
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    system = service.sandbox_problems(["/usr/bin/python3", "-m", "edge.cli"])
    assert not [line for line in system if "interpreter" in line or "Python installation" in line], system


def test_service_unit_without_a_script_runs_the_module(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "py 3%" / "python"))
    assert service.edge_command() == [str(tmp_path / "py 3%" / "python"), "-m", "edge.cli"]
    text = service.unit_text()
    # quoted for systemd's word splitting, % doubled against specifier expansion
    assert f"ExecStart='{tmp_path}/py 3%%/python' -m edge.cli run --config /etc/edge/edge.toml" in text


def test_service_env_prints_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service", "env"]) == 0
    assert capsys.readouterr().out == (SYSTEMD / "edge.env").read_text()


@pytest.mark.parametrize(
    ("program", "hidden"),
    [
        ("/opt/edge/venv/bin/edge", None),
        ("/home/pi/venv/bin/edge", "ProtectHome=yes hides /home"),
        ("/root/venv/bin/edge", "ProtectHome=yes hides /root"),
        ("/tmp/x/bin/edge", "PrivateTmp=yes hides /tmp"),
        ("/homework/bin/edge", None),
    ],
)
def test_sandbox_hidden_install_is_named(program: str, hidden: str | None) -> None:
    assert service.hidden_by_sandbox(program) == hidden


@needs_analyze
def test_generated_unit_verifies(tmp_path: Path) -> None:
    unit = tmp_path / "edge.service"
    unit.write_text(service.unit_text())
    assert ANALYZE is not None  # needs_analyze
    proc = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "edge.service" not in proc.stderr
