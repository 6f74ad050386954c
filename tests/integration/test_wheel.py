"""The wheel as a user gets it: built from the sources, installed into a fresh venv outside the
checkout, run from another directory. Every profile checks, the demo publishes a result to a real
broker, and the systemd unit comes from the install.

Offline and fast: the wheel is built with the dev venv's setuptools (--no-build-isolation) from a
copy of the sources (the build writes build/ and *.egg-info beside them), and the fresh venv gets
the heavy dependencies (pydantic, paho, OpenCV, ONNX Runtime GenAI) from the dev venv through a
.pth path line, so only the wheel itself is installed. A .pth path line does not run the dev venv's
own .pth files, so its editable install of the checkout stays out; every test asserts that `edge`
is imported from the wheel's install.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.plugins.mosquitto import Collector

REPO = Path(__file__).resolve().parents[2]
PROFILES = sorted(p.stem for p in (REPO / "devices").glob("*.toml"))
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "edge")
ANALYZE = shutil.which("systemd-analyze")


@dataclass(frozen=True)
class Install:
    wheel: Path
    venv: Path
    site: Path  # the fresh venv's site-packages, where the wheel went
    cwd: Path  # a directory with no checkout in it
    env: dict[str, str]

    @property
    def edge(self) -> Path:
        return self.venv / "bin" / "edge"

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.edge), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _check(cmd: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Install:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    dist = root / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _check(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(src)]
    )
    [wheel] = dist.glob("*.whl")

    venv = root / "venv"
    _check([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "PYTHON", "VIRTUAL_ENV"))}
    site = Path(
        subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.strip()
    )
    dev = sysconfig.get_paths()
    (site / "dev-venv-dependencies.pth").write_text(
        "\n".join(sorted({dev["purelib"], dev["platlib"]})) + "\n"
    )
    # --ignore-installed: never uninstall anything pip sees on the dev venv's path
    _check(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
        env=env,
    )
    cwd = root / "elsewhere"
    cwd.mkdir()
    return Install(wheel=wheel, venv=venv, site=site, cwd=cwd, env=env)


def test_wheel_holds_the_package_data_and_license(installed: Install) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for profile in PROFILES:
        assert f"edge/config/profiles/{profile}.toml" in names
    for name in ("edge.service", "edge.env", "README.md"):
        assert f"edge/assets/systemd/{name}" in names
    assert "edge/assets/models/demo-ort/genai_config.json" in names
    assert "edge/assets/models/demo-ov/openvino_language_model.xml" in names
    assert "edge/assets/models/manifest.json" in names  # `edge bench --choose`'s accuracy cases
    assert "edge/assets/models/eval/scene0.jpg" in names
    assert "edge/inference/bare_loop.py" in names  # `edge bench`'s overhead baseline, run by its path
    [dist_info] = {n.split("/")[0] for n in names if ".dist-info/" in n}
    assert dist_info.startswith("edge_vlm_agent-")
    assert f"{dist_info}/licenses/LICENSE" in names
    metadata = zipfile.ZipFile(installed.wheel).read(f"{dist_info}/METADATA").decode()
    assert "Name: edge-vlm-agent\n" in metadata and "License-Expression: Apache-2.0\n" in metadata
    assert not any(n.startswith(("tests/", "devices/", "systemd/", "benchmarks/")) for n in names)


def test_edge_is_imported_from_the_install_not_the_checkout(installed: Install) -> None:
    proc = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", "import edge; print(edge.__file__)"],
        cwd=installed.cwd,
        env=installed.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(proc.stdout.strip()) == installed.site / "edge" / "__init__.py"
    assert installed.edge.is_file()


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_checks_from_the_install(installed: Install, profile: str) -> None:
    # `config check` also asks whether the model folder and camera exist on this machine: a board
    # profile's do not here, so they are pointed at the checkout's stand-ins.
    here: list[str] = []
    if not profile.startswith("demo"):
        text = (REPO / "devices" / f"{profile}.toml").read_text(encoding="utf-8")
        stand_in = "ov-phi3v" if 'backend = "openvino"' in text else "ort-phi3v-fp32"
        model = REPO / "tests" / "fixtures" / "models" / stand_in
        here = ["--set", f'model.path="{model}"', "--set", 'camera.source="testsrc"']
    res = installed.run("config", "check", "--profile", profile, *here)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"ok: no config file; profile {profile}"
    shown = installed.run("config", "show", "--profile", profile).stdout
    assert f"profile {installed.site / 'edge' / 'config' / 'profiles' / profile}.toml" in shown


def test_demo_runs_from_the_install_and_publishes_a_result(installed: Install, mosquitto) -> None:
    model = installed.site / "edge" / "assets" / "models" / "demo-ort"
    shown = installed.run("config", "show", "--profile", "demo").stdout
    assert f'path = "{model}"' in shown  # the packaged demo model, not the checkout's fixture
    sub = Collector(mosquitto, "#").start()
    log = installed.cwd / "demo.log"
    args = [
        "run",
        "--profile",
        "demo",
        "--set",
        "device_id=wheel",
        "--set",
        f"mqtt.host={mosquitto.host}",
        "--set",
        f"mqtt.port={mosquitto.port}",
        "--set",
        f"mqtt.outbox_path={installed.cwd / 'outbox.sqlite'}",
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(installed.edge), *args],
            cwd=installed.cwd,
            env=installed.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        got = sub.wait_for(
            lambda ms: any(m.topic.startswith("edge/wheel/") and m.topic.endswith("/result") for m in ms),
            timeout=60,
            what="a result from the installed demo",
        )
    except AssertionError as err:
        raise AssertionError(f"{err}\n{log.read_text(errors='replace')[-3000:]}") from None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        sub.stop()
    result = next(m for m in got if m.topic.endswith("/result")).json()
    assert (result["device"], result["task"], result["model"]["backend"]) == ("wheel", "caption", "ort-genai")
    assert rc == 0, log.read_text(errors="replace")[-3000:]


def test_unit_comes_from_the_install(installed: Install, tmp_path: Path) -> None:
    res = installed.run("service", "unit")
    assert res.returncode == 0, res.stderr
    assert f"ExecStart={installed.edge} run --config /etc/edge/edge.toml\n" in res.stdout
    readme = installed.site / "edge" / "assets" / "systemd" / "README.md"
    assert f"Documentation=file://{readme}\n" in res.stdout and readme.is_file()
    if str(installed.edge).startswith("/tmp/"):  # where pytest puts tmp_path unless told otherwise
        assert "PrivateTmp=yes hides /tmp" in res.stderr
    env = installed.run("service", "env")
    assert env.returncode == 0 and "EDGE_MQTT__PORT" in env.stdout
    if ANALYZE:
        unit = tmp_path / "edge.service"
        unit.write_text(res.stdout)
        proc = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "edge.service" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_view_runs_from_the_install(
    installed: Install, mosquitto, engine: str, request: pytest.FixtureRequest
) -> None:
    """`edge view` from the wheel: SQLite needs nothing more, PostgreSQL the [view] extra (psycopg)."""
    import json
    import time
    import urllib.request

    from tests.plugins.mosquitto import free_port

    store = (
        str(installed.cwd / f"view-{engine}.db")
        if engine == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    port = free_port()
    args = ["view", "--set", f"mqtt.host={mosquitto.host}", "--set", f"mqtt.port={mosquitto.port}",
            "--store", store, "--listen", f"127.0.0.1:{port}"]  # fmt: skip
    log = installed.cwd / f"view-{engine}.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(installed.edge), *args], cwd=installed.cwd, env=installed.env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    pub = Collector(mosquitto, "none/#").start()
    try:
        deadline = time.monotonic() + 60
        body = ""
        while time.monotonic() < deadline and proc.poll() is None:
            pub.publish("edge/wheelcam/status", "online", retain=True)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    body = r.read().decode()
                if 'data-device="wheelcam"' in body:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert 'data-device="wheelcam"' in body, log.read_text(errors="replace")[-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert json.loads(r.read())["connected"] is True
    finally:
        pub.stop()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text(errors="replace")[-3000:]


def test_bench_finds_its_bare_baseline_in_the_install(installed: Install) -> None:
    """`edge bench` measures the overhead on an installed board: the bare loop ships in the wheel
    and starts from the install (it imports no edge code and answers its --help)."""
    py = installed.venv / "bin" / "python"
    code = "from edge.cli.bench.measure import BARE_SCRIPT; print(BARE_SCRIPT)"
    out = subprocess.run([str(py), "-c", code], cwd=installed.cwd, env=installed.env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.strip()  # fmt: skip
    script = Path(out)
    assert script.is_file() and installed.site in script.parents, out
    helped = subprocess.run([str(py), str(script), "--help"], cwd=installed.cwd, env=installed.env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert helped.returncode == 0 and "--backend" in helped.stdout, helped.stderr[-2000:]
