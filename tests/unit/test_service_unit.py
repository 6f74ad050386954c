"""Reading edge.service the way systemd would for the keys doctor uses, and the mode-bit rules."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.cli.service_unit import (
    ANOTHER_USER,
    DYNAMIC_UID_RANGE,
    Identity,
    UnitError,
    blocker,
    find_unit,
    mode_allows,
    service_identity,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_no_unit(tmp_path: Path) -> None:
    assert find_unit((tmp_path / "etc", tmp_path / "lib")) is None


def test_first_dir_wins_and_dropins_apply_in_name_order(tmp_path: Path) -> None:
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    write(lib / "edge.service", "[Service]\nUser=vendor\n")
    write(
        etc / "edge.service",
        "[Unit]\nUser=not-a-service-key\n[Service]\n# comment\nUser=edge\n"
        "ExecStart=-/opt/edge/venv/bin/edge \\\n  run --config /etc/edge/edge.toml\n"
        "SupplementaryGroups=video\nStateDirectory=edge edge/models\n",
    )
    write(lib / "edge.service.d" / "20-groups.conf", "[Service]\nSupplementaryGroups=dialout\n")
    write(etc / "edge.service.d" / "10-user.conf", "[Service]\nUser=\nDynamicUser=yes\nProtectHome=yes\n")
    unit = find_unit((etc, lib))
    assert unit is not None
    assert unit.path == etc / "edge.service"
    assert [d.name for d in unit.dropins] == ["10-user.conf", "20-groups.conf"]
    assert unit.user is None  # reset by the empty assignment
    assert unit.dynamic_user
    assert unit.supplementary_groups == ("video", "dialout")
    assert unit.state_path == Path("/var/lib/edge")
    assert unit.protect_home == "yes"
    assert unit.executable == "/opt/edge/venv/bin/edge"
    assert unit.exec_start[1:] == ("run", "--config", "/etc/edge/edge.toml")


def test_identities(tmp_path: Path) -> None:
    unit = find_unit((write(tmp_path / "u" / "edge.service", "[Service]\nExecStart=/bin/true\n").parent,))
    assert unit is not None and service_identity(unit).is_root
    dynamic = find_unit((write(tmp_path / "d" / "edge.service", "[Service]\nDynamicUser=on\n").parent,))
    assert dynamic is not None
    who = service_identity(dynamic)
    assert who.uid in DYNAMIC_UID_RANGE and who.gid == who.uid
    nobody = find_unit((write(tmp_path / "n" / "edge.service", "[Service]\nUser=nobody\n").parent,))
    assert nobody is not None and service_identity(nobody).uid == 65534
    missing = find_unit((write(tmp_path / "m" / "edge.service", "[Service]\nUser=no-such-user-x\n").parent,))
    assert missing is not None
    with pytest.raises(UnitError, match="no-such-user-x"):
        service_identity(missing)


@pytest.mark.parametrize(
    ("mode", "who", "allowed"),
    [
        (0o600, Identity("owner", 1000, 1000, frozenset({1000})), True),
        (0o600, Identity("group member", 1001, 50, frozenset({1000})), False),
        (0o640, Identity("group member", 1001, 50, frozenset({1000})), True),
        (0o640, ANOTHER_USER, False),
        (0o604, ANOTHER_USER, True),
        (0o000, Identity("root", 0, 0, frozenset({0})), True),
    ],
)
def test_mode_allows_read(tmp_path: Path, mode: int, who: Identity, allowed: bool) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    f = tmp_path / "f"
    f.write_text("x")
    os.chown(f, 1000, 1000)
    f.chmod(mode)
    assert mode_allows(f.stat(), who, 4) is allowed


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A world-traversable temp dir (pytest's own are 0700, which would block before ours count)."""
    base = Path(tempfile.mkdtemp(prefix="edge-unit-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base)


def test_blocker_names_the_directory_first(open_dir: Path) -> None:
    d = open_dir / "models"
    d.mkdir()
    f = d / "w.onnx.data"
    f.write_text("x")
    f.chmod(0o600)
    d.chmod(0o700)
    assert (blocker(f, ANOTHER_USER) or "").startswith(f"directory {d} (mode 0700")
    d.chmod(0o755)
    assert (blocker(f, ANOTHER_USER) or "").startswith("w.onnx.data (mode 0600")
    f.chmod(0o644)
    assert blocker(f, ANOTHER_USER) is None
