"""`edge doctor` against real pieces: the fixture model loaded by the real runtime in a child process,
the testsrc camera and real OpenCV, real mosquitto brokers (plain, password, TLS), a real SQLite
outbox, pty serial ports, and reads really attempted as the service user (tests run as root, which
can read anything, so the service-user check drops to that user in a forked child)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from edge.cli.doctor.checks import CheckResult
from edge.cli.doctor.command import Host, run_doctor
from edge.mqtt.outbox import Outbox
from edge.mqtt.outbox_records import OutboxMessage
from tests.plugins.models import model_dir
from tests.plugins.mosquitto import USERS, Broker, TlsFiles
from tests.plugins.ptys import PtyLink

REPO = Path(__file__).resolve().parents[2]
ORDER = [
    "config",
    "opencv",
    "model folder",
    "model permissions",
    "model load",
    "camera",
    "broker",
    "outbox",
    "serial",
    "power",
    "systemd unit",
]
DATA = "phi-3.5-v-instruct-text.onnx.data"
# mosquitto answers a bad password with "not authorized" (135) under MQTT 5, 134 or 135 elsewhere
REFUSED = re.compile(r"refused the connection: .+ \(code 13[45]\)")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("EDGE_") or name in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"):
            monkeypatch.delenv(name)


def write_config(path: Path, broker: Broker, **sections: dict[str, Any]) -> Path:
    doc: dict[str, Any] = {
        "device_id": "doc-01",
        "model": {"path": str(model_dir("ort-phi3v-fp32")), "providers": ["cpu"]},
        "camera": {"source": "testsrc", "width": 320, "height": 240},
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "outbox_path": str(path.parent / "state" / "outbox.sqlite"),
        },
    }
    for key, values in sections.items():
        doc.setdefault(key, {}).update(values)
    path.write_text(tomli_w.dumps(doc))
    return path


def host(tmp_path: Path) -> Host:
    units = tmp_path / "units"
    units.mkdir(exist_ok=True)
    return Host(
        unit_dirs=(units,),
        systemd_marker=tmp_path / "not-booted-with-systemd",
        camera_timeout_s=5.0,
        broker_timeout_s=5.0,
        load_timeout_s=60.0,
    )


def doctor(config: Path, tmp_path: Path, *overrides: str) -> dict[str, CheckResult]:
    results = run_doctor(config, None, list(overrides), host=host(tmp_path))
    assert [r.name for r in results] == ORDER
    return {r.name: r for r in results}


def run_cli(config: Path) -> tuple[int, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "doctor", "--config", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    return proc.returncode, proc.stdout.splitlines()


def parse(lines: list[str]) -> dict[str, tuple[str, str]]:
    """{check: (status, rest)} from `status  check: detail` lines."""
    out = {}
    for line in lines:
        status, _, rest = line.partition("  ")
        name, _, detail = rest.strip().partition(": ")
        out[name] = (status.strip(), detail)
    return out


@pytest.fixture
def shared_model() -> Iterator[Path]:
    """A copy of the fixture model in a world-traversable dir (pytest's tmp dirs are 0700, which
    would block any service user before the file modes even count)."""
    base = Path(tempfile.mkdtemp(prefix="edge-doctor-", dir="/tmp"))
    try:
        base.chmod(0o755)
        folder = base / "model"
        shutil.copytree(model_dir("ort-phi3v-fp32"), folder)
        folder.chmod(0o755)
        for f in folder.iterdir():
            f.chmod(0o644)
        yield folder
    finally:
        shutil.rmtree(base)


def install_unit(tmp_path: Path, *service_lines: str) -> Path:
    unit = tmp_path / "units" / "edge.service"
    unit.parent.mkdir(exist_ok=True)
    body = "\n".join(service_lines)
    unit.write_text(
        f"[Unit]\nDescription=edge\n\n[Service]\nType=notify\nExecStart={sys.executable} -m edge.cli run\n"
        f"{body}\n\n[Install]\nWantedBy=multi-user.target\n"
    )
    return unit


# --------------------------------------------------------------------------- the whole command


def test_working_setup_all_ok_as_a_subprocess(tmp_path: Path, mosquitto: Broker) -> None:
    config = write_config(tmp_path / "edge.toml", mosquitto)
    rc, lines = run_cli(config)
    checks = parse(lines)
    assert list(checks) == ORDER, lines
    assert rc == 0, lines
    assert {status for status, _ in checks.values()} <= {"ok", "warn", "skip"}
    for name in ("config", "model folder", "model load", "camera", "broker", "outbox"):
        assert checks[name][0] == "ok", lines
    assert "on cpu" in checks["model load"][1]
    assert checks["serial"][0] == "skip"
    # the outbox did not exist before: doctor removed what opening it created, lock file included
    assert not (tmp_path / "state").exists()


def test_wrong_password_fails_as_a_subprocess(tmp_path: Path, mosquitto_auth: Broker) -> None:
    config = write_config(
        tmp_path / "edge.toml", mosquitto_auth, mqtt={"username": "edge", "password": "wrong"}
    )
    rc, lines = run_cli(config)
    checks = parse(lines)
    assert rc == 1, lines
    status, detail = checks["broker"]
    assert status == "fail"
    assert REFUSED.search(detail), detail
    assert [name for name, (s, _) in checks.items() if s == "fail"] == ["broker"]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_broker_credentials(tmp_path: Path, mosquitto_auth: Broker, protocol: str) -> None:
    config = write_config(tmp_path / "edge.toml", mosquitto_auth, mqtt={"protocol": protocol})
    good = doctor(config, tmp_path, "mqtt.username=edge", f"mqtt.password={USERS['edge']}")
    assert good["broker"].status == "ok", good["broker"].line()
    bad = doctor(config, tmp_path, "mqtt.username=edge", "mqtt.password=nope")
    assert bad["broker"].status == "fail"
    assert REFUSED.search(bad["broker"].detail), bad["broker"].detail
    assert bad["broker"].fix and "mqtt.password" in bad["broker"].fix
    anonymous = doctor(config, tmp_path)
    assert anonymous["broker"].status == "fail"
    assert REFUSED.search(anonymous["broker"].detail), anonymous["broker"].detail


def test_tls_with_the_wrong_ca_and_without_tls(
    tmp_path: Path, mosquitto_tls: Broker, tls_files: TlsFiles
) -> None:
    config = write_config(tmp_path / "edge.toml", mosquitto_tls)
    ok = doctor(config, tmp_path, f'mqtt.tls.ca="{tls_files.ca}"')
    assert ok["broker"].status == "ok", ok["broker"].line()
    wrong_ca = doctor(config, tmp_path, f'mqtt.tls.ca="{tls_files.other_ca}"')
    assert wrong_ca["broker"].status == "fail"
    assert "certificate verify failed" in wrong_ca["broker"].detail
    assert wrong_ca["broker"].fix and "mqtt.tls.ca" in wrong_ca["broker"].fix
    plain = doctor(config, tmp_path)
    assert plain["broker"].status == "fail", plain["broker"].line()


def test_invalid_config_fails_and_skips_what_needs_settings(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('[mqtt]\nhots = "broker.lan"\n')
    results = doctor(config, tmp_path)
    assert results["config"].status == "fail"
    assert "mqtt.hots" in results["config"].detail
    for name in ORDER[1:-1]:
        assert results[name].status == "skip", results[name].line()
    assert results["systemd unit"].status == "skip"  # still checked: it needs no settings


# --------------------------------------------------------------------------- model


def test_missing_model_file(tmp_path: Path, mosquitto: Broker) -> None:
    folder = tmp_path / "model"
    shutil.copytree(model_dir("ort-phi3v-fp32"), folder)
    (folder / DATA).unlink()
    config = write_config(tmp_path / "edge.toml", mosquitto, model={"path": str(folder)})
    results = doctor(config, tmp_path)
    assert results["model folder"].status == "fail"
    assert DATA in results["model folder"].detail
    assert results["model permissions"].status == "skip"
    assert results["model load"].status == "skip"
    assert results["camera"].status == results["broker"].status == "ok"


def test_no_provider_loads(tmp_path: Path, mosquitto: Broker) -> None:
    config = write_config(tmp_path / "edge.toml", mosquitto, model={"providers": ["nosuchprovider"]})
    results = doctor(config, tmp_path)
    assert results["model load"].status == "fail"
    assert "nosuchprovider" in results["model load"].detail


@pytest.mark.parametrize(
    "service", [["User=nobody"], ["DynamicUser=yes", "StateDirectory=edge"]], ids=["user", "dynamic"]
)
def test_weights_unreadable_by_the_service_user(
    tmp_path: Path, mosquitto: Broker, shared_model: Path, service: list[str]
) -> None:
    config = write_config(tmp_path / "edge.toml", mosquitto, model={"path": str(shared_model)})
    install_unit(tmp_path, *service)
    readable = doctor(config, tmp_path)
    assert readable["model permissions"].status == "ok", readable["model permissions"].line()
    assert readable["systemd unit"].status == "ok", readable["systemd unit"].line()

    (shared_model / DATA).chmod(0o600)  # what onnx writes, owned by root after a copy as root
    results = doctor(config, tmp_path)
    check = results["model permissions"]
    assert check.status == "fail", check.line()
    assert DATA in check.detail and "0600" in check.detail
    assert check.fix and "chmod" in check.fix
    # doctor itself (root) can still load it: only the service user is locked out
    assert results["model load"].status == "ok"


def test_model_dir_not_traversable_by_the_service_user(
    tmp_path: Path, mosquitto: Broker, shared_model: Path
) -> None:
    config = write_config(tmp_path / "edge.toml", mosquitto, model={"path": str(shared_model)})
    install_unit(tmp_path, "User=nobody")
    shared_model.chmod(0o700)
    check = doctor(config, tmp_path)["model permissions"]
    assert check.status == "fail"
    assert f"directory {shared_model} (mode 0700" in check.detail


def test_weights_unreadable_to_others_without_a_unit_is_a_warning(
    tmp_path: Path, mosquitto: Broker, shared_model: Path
) -> None:
    config = write_config(tmp_path / "edge.toml", mosquitto, model={"path": str(shared_model)})
    (shared_model / DATA).chmod(0o600)
    results = run_doctor(config, None, [], host=host(tmp_path))
    check = {r.name: r for r in results}["model permissions"]
    assert check.status == "warn"
    assert DATA in check.detail
    assert not any(r.status == "fail" for r in results), [r.line() for r in results]


def test_unit_user_that_does_not_exist(tmp_path: Path, mosquitto: Broker) -> None:
    config = write_config(tmp_path / "edge.toml", mosquitto)
    install_unit(tmp_path, "User=edge-no-such-user")
    results = doctor(config, tmp_path)
    assert results["model permissions"].status == "fail"
    assert results["systemd unit"].status == "fail"
    assert "edge-no-such-user" in results["systemd unit"].detail


# --------------------------------------------------------------------------- camera, outbox, serial


@pytest.mark.parametrize("source", ["/dev/video9", "missing.mp4"])
def test_no_camera(tmp_path: Path, mosquitto: Broker, source: str) -> None:
    path = source if source.startswith("/") else str(tmp_path / source)
    config = write_config(tmp_path / "edge.toml", mosquitto, camera={"source": path})
    results = doctor(config, tmp_path)
    assert results["camera"].status == "fail", results["camera"].line()
    assert results["camera"].fix
    assert [r.name for r in results.values() if r.status == "fail"] == ["camera"]


def test_outbox_existing_busy_and_unwritable(tmp_path: Path, mosquitto: Broker) -> None:
    config = write_config(tmp_path / "edge.toml", mosquitto)
    path = tmp_path / "state" / "outbox.sqlite"
    with Outbox(path, 1 << 20) as outbox:
        outbox.enqueue(OutboxMessage(msg_id="m1", kind="event", topic="edge/doc-01/event", payload=b"{}"))
        busy = doctor(config, tmp_path)["outbox"]
    assert busy.status == "ok" and "running" in busy.detail
    existing = doctor(config, tmp_path)["outbox"]
    assert existing.status == "ok" and "1 queued" in existing.detail
    with Outbox(path, 1 << 20) as outbox:  # doctor left no lock behind and kept the message
        assert outbox.depth() == 1
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = doctor(config, tmp_path, f'mqtt.outbox_path="{blocker}/outbox.sqlite"')["outbox"]
    assert unwritable.status == "fail", unwritable.line()


def test_serial_ports(tmp_path: Path, mosquitto: Broker) -> None:
    link = PtyLink(tmp_path / "ttyGNSS")
    try:
        config = write_config(tmp_path / "edge.toml", mosquitto, serial={"gnss_port": link.path})
        assert doctor(config, tmp_path)["serial"].status == "ok"
        missing = doctor(config, tmp_path, f'serial.sink_port="{tmp_path}/ttyNOPE"')["serial"]
        assert missing.status == "fail"
        assert "ttyNOPE" in missing.detail
    finally:
        link.close()
