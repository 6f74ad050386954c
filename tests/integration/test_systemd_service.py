"""The service as a board owner installs it: systemd/README.md's install block, line by line, in a
Debian 12 container booted with `systemd-nspawn --boot` (a real PID-1 systemd 252), with the wheel
built from this checkout.

One boot serves every check (module-scoped fixture); the checks run in file order on the one
service. The only change to the unit is a test drop-in that shortens WatchdogSec= (so that pings
are seen within seconds) and RestartSec= (so that a restart loop would show within the test).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import __version__
from tests.helpers import nspawn
from tests.plugins.models import model_dir

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
README = REPO / "systemd" / "README.md"
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "edge")
MODEL = "/opt/edge/models/phi3v-tiny"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The container shares the host's network: its broker takes a free port, not the host's own 1883.
BROKER_PORT = _free_port()
TEST_DROPIN = "[Service]\nWatchdogSec=20s\nRestartSec=2s\n"
PASSWORD_STEP = "only if the broker needs a password"


def install_steps() -> list[tuple[str, list[str]]]:
    """The README's install block as (step comment, command lines); `journalctl -f` (which follows
    the log forever) is left out."""
    text = README.read_text()
    block = re.search(r"## Install\n.*?```sh\n(.*?)```", text, re.S)
    assert block, f"{README}: no ```sh block under ## Install"
    steps: list[tuple[str, list[str]]] = []
    for line in block.group(1).splitlines():
        if re.match(r"# \d+\. ", line):
            steps.append((line, []))
        elif line.startswith("#") or not line.strip():
            continue
        elif not line.startswith("journalctl -u edge -f"):
            assert steps, f"{README}: a command before the first numbered step: {line}"
            steps[-1][1].append(line)
    return steps


def script(with_password: bool) -> str:
    lines = ["set -ex", 'sudo() { "$@"; }']  # root already; sudo is not in a minimal rootfs
    for title, commands in install_steps():
        if PASSWORD_STEP in title and not with_password:
            continue
        lines += commands
    return "\n".join(lines) + "\n"


MY_EDGE_TOML = f"""\
device_id = "nspawn"

[camera]
source = "testsrc"
width = 320
height = 240
fps = 5

[gate]
min_interval_s = 1

[model]
path = "{MODEL}"
backend = "ort-genai"
providers = ["cpu"]
num_crops = 1
max_new_tokens = 8

[[tasks]]
name = "caption"
kind = "caption"
trigger = "interval"
interval_s = 1

[watchdog]
first_token_s = 5
token_s = 3
generation_s = 8
total_s = 12
backoff_initial_s = 0.2
backoff_max_s = 1

[mqtt]
host = "127.0.0.1"
port = {BROKER_PORT}
"""


def build_wheel(work: Path) -> Path:
    src = work / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(
        [
            *pip,
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(work / "dist"),
            str(src),
        ],
        check=True,
    )
    [wheel] = (work / "dist").glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[nspawn.Container]:
    why = nspawn.missing_tools()
    if why:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("nspawn")
    wheel = build_wheel(work)
    lower = nspawn.rootfs()
    with nspawn.booted(lower, work) as container:
        home = container.root / "root"
        shutil.copy2(wheel, home / wheel.name)
        (home / "my-edge.toml").write_text(MY_EDGE_TOML)
        model = container.root / MODEL.lstrip("/")
        shutil.copytree(model_dir("ort-phi3v-fp32"), model)
        for f in [model, *model.rglob("*")]:  # as root's umask 077 or onnx's 0600 leave it
            f.chmod(0o700 if f.is_dir() else 0o600)
        conf = container.root / "etc/mosquitto/conf.d/edge-test.conf"
        conf.write_text(f"listener {BROKER_PORT} 127.0.0.1\nallow_anonymous true\n")
        container.sh("systemctl restart mosquitto")
        dropin = container.root / "etc/systemd/system/edge.service.d/50-test.conf"
        dropin.parent.mkdir(parents=True)
        dropin.write_text(TEST_DROPIN)
        yield container


def _active(box: nspawn.Container) -> str:
    return box.show("edge", "ActiveState")


def _worker(box: nspawn.Container) -> int | None:
    """The inference worker: the main process's child started by multiprocessing's spawn (the other
    child is multiprocessing's resource tracker)."""
    main = box.show("edge", "MainPID")
    out = box.sh(
        f"for p in $(cat /proc/{main}/task/*/children 2>/dev/null); do "
        f"tr '\\0' ' ' < /proc/$p/cmdline | grep -q spawn_main && echo $p; done; true"
    ).stdout.split()
    return int(out[0]) if out else None


def test_the_readme_block_names_this_wheel() -> None:
    joined = "\n".join(c for _, cs in install_steps() for c in cs)
    assert f"edge_vlm_agent-{__version__}-py3-none-any.whl[opencv,ort]" in joined
    assert "install -m 0644 my-edge.toml /etc/edge/edge.toml" in joined  # the dynamic user reads it


@pytest.mark.timeout(900)
def test_readme_install_without_a_password_starts_and_is_ready(box: nspawn.Container) -> None:
    """An anonymous broker: step 4 skipped, no credential file, and the service still starts."""
    res = box.sh(
        f"cat > /root/install.sh <<'EOF'\n{script(with_password=False)}EOF\nsh /root/install.sh",
        timeout=780,
        check=False,
    )
    if res.returncode != 0:
        status = box.sh(
            "systemctl status edge --no-pager -l; journalctl -u edge --no-pager -o cat", check=False
        )
        raise AssertionError(f"the README block failed:\n{res.stderr[-3000:]}\n{status.stdout[-3000:]}")
    assert "systemctl" in res.stderr  # the block ran to its last step
    box.wait(
        "edge.service active (READY=1 received)",
        lambda: _active(box) in ("active", "failed") and _active(box),
        timeout=180,
    )
    journal = box.sh("journalctl -u edge --no-pager -o cat").stdout
    assert _active(box) == "active", journal[-3000:]
    assert box.show("edge", "Type") == "notify"
    assert box.sh("test -e /etc/credstore/edge.mqtt_password", check=False).returncode != 0


@pytest.mark.timeout(200)
def test_watchdog_pings_arrive(box: nspawn.Container) -> None:
    first = box.wait(
        "a first WATCHDOG=1", lambda: int(box.show("edge", "WatchdogTimestampMonotonic") or 0), 120
    )
    box.wait(
        "a second WATCHDOG=1",
        lambda: int(box.show("edge", "WatchdogTimestampMonotonic") or 0) > first,
        timeout=120,
    )
    assert _active(box) == "active"


@pytest.mark.timeout(200)
def test_a_stalled_worker_is_restarted_inside_the_service(box: nspawn.Container) -> None:
    main = box.show("edge", "MainPID")
    restarts = box.show("edge", "NRestarts")
    worker = box.wait("the inference worker", lambda: _worker(box), 60)
    box.sh(f"kill -STOP {worker}")
    box.wait(
        "a new worker",
        lambda: (w := _worker(box)) is not None and w != worker,
        timeout=150,
    )
    assert box.show("edge", "MainPID") == main and box.show("edge", "NRestarts") == restarts
    assert _active(box) == "active"


@pytest.mark.timeout(300)
def test_the_password_step_gives_the_service_its_credential(box: nspawn.Container) -> None:
    """The broker now wants a user and password; step 4 of the README gives the service the
    password (and my-edge.toml names the user)."""
    box.sh(
        "mosquitto_passwd -b -c /etc/mosquitto/edge.passwd edge s3cret && chmod 0644 /etc/mosquitto/edge.passwd"
        f" && printf 'listener {BROKER_PORT} 127.0.0.1\\nallow_anonymous false\\npassword_file /etc/mosquitto/edge.passwd\\n'"
        " > /etc/mosquitto/conf.d/edge-test.conf && systemctl restart mosquitto"
    )
    [(_, commands)] = [(t, c) for t, c in install_steps() if PASSWORD_STEP in t]
    box.sh('sudo() { "$@"; }\n' + "\n".join(commands))
    box.sh("""echo 'username = "edge"' >> /etc/edge/edge.toml""")  # [mqtt] is the file's last table
    box.sh("systemctl restart edge", timeout=240)
    box.wait("edge.service active again", lambda: _active(box) == "active", 120)
    assert box.sh("cat /run/credentials/edge.service/mqtt_password").stdout == "s3cret"
    box.wait(
        "the broker to see user edge connect",
        lambda: (
            "u'edge'"
            in box.sh(
                "journalctl -u mosquitto --no-pager -o cat; cat /var/log/mosquitto/*.log 2>/dev/null"
            ).stdout
        ),
        60,
    )


@pytest.mark.timeout(600)
def test_systemctl_stop_finishes_within_its_timeout(box: nspawn.Container) -> None:
    box.sh("systemctl stop edge", timeout=540)
    assert _active(box) == "inactive"
    assert box.show("edge", "Result") == "success"  # "timeout" when SIGKILL had to end it


@pytest.mark.timeout(200)
def test_a_missing_model_fails_with_status_2_and_is_not_restarted(box: nspawn.Container) -> None:
    box.sh("echo EDGE_MODEL__PATH=/opt/edge/models/not-there > /etc/edge/edge.env")
    try:
        box.sh("systemctl start edge", check=False)
        box.wait("edge.service failed", lambda: _active(box) == "failed", 120)
        assert box.show("edge", "ExecMainStatus") == "2"
        restarts = box.show("edge", "NRestarts")
        time.sleep(8)  # RestartSec=2s in the test drop-in: a restart loop would have begun by now
        assert _active(box) == "failed" and box.show("edge", "NRestarts") == restarts
        journal = box.sh("journalctl -u edge --no-pager -o cat").stdout
        assert "model folder /opt/edge/models/not-there does not exist" in journal
    finally:
        box.sh("rm -f /etc/edge/edge.env && systemctl reset-failed edge", check=False)
