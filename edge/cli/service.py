"""`edge service unit|env`: the shipped systemd unit with ExecStart set for this install, and the
example environment file, printed from the package data (edge/assets/systemd).

The unit is the shipped one, changed in two lines only: ExecStart= runs the `edge` script of the
environment this command runs from (the venv's bin/edge; `python -m edge.cli` when there is no
script), and Documentation= points at the README installed beside it. Everything else, the
hardening included, stays as tested in tests/unit/test_systemd_unit.py.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import sysconfig
from pathlib import Path

from edge.assets import package_file

SHIPPED_PROGRAM = "/opt/edge/venv/bin/edge"
# Where the unit's sandbox hides files: a program there cannot be started by the service.
HIDDEN = {
    "ProtectHome=yes": ("/home", "/root", "/run/user"),
    "PrivateTmp=yes": ("/tmp", "/var/tmp"),
}


def shipped(name: str) -> Path:
    """edge.service, edge.env or README.md as installed with the package."""
    return package_file(f"assets/systemd/{name}")


def edge_command() -> list[str]:
    """How systemd starts the `edge` of this install: the console script beside this interpreter
    (a venv's bin/edge), else this interpreter with `-m edge.cli`. Symlinks are kept: a venv's
    python links to the base interpreter, which does not see the venv's packages."""
    candidates = [Path(sysconfig.get_path("scripts")) / "edge", Path(sys.executable).parent / "edge"]
    for script in candidates:
        if script.is_file() and os.access(script, os.X_OK):
            return [os.path.abspath(script)]
    return [os.path.abspath(sys.executable), "-m", "edge.cli"]


def _systemd_quote(word: str) -> str:
    # systemd splits ExecStart= like a shell (quotes) and expands %-specifiers: escape both.
    return shlex.quote(word).replace("%", "%%")


def unit_text(command: list[str] | None = None) -> str:
    """The shipped unit with ExecStart= running `command` (default: this install's edge)."""
    command = command or edge_command()
    text = shipped("edge.service").read_text(encoding="utf-8")
    program = " ".join(_systemd_quote(w) for w in command)
    text, n = re.subn(rf"^ExecStart={re.escape(SHIPPED_PROGRAM)} ", f"ExecStart={program} ", text, flags=re.M)
    if n != 1:
        raise RuntimeError(f"{shipped('edge.service')}: no ExecStart={SHIPPED_PROGRAM} line to adapt")
    readme = shipped("README.md").as_uri().replace("%", "%%")
    return re.sub(r"^Documentation=.*$", f"Documentation={readme}", text, count=1, flags=re.M)


def hidden_by_sandbox(program: str) -> str | None:
    """The unit setting that hides `program` from the service, if any."""
    path = os.path.abspath(program)
    for setting, roots in HIDDEN.items():
        for root in roots:
            if path == root or path.startswith(root + "/"):
                return f"{setting} hides {root}"
    return None


def service_command(what: str) -> int:
    if what == "env":
        sys.stdout.write(shipped("edge.env").read_text(encoding="utf-8"))
        return 0
    command = edge_command()
    sys.stdout.write(unit_text(command))
    why = hidden_by_sandbox(command[0])
    if why:
        print(
            f"edge: warning: the service cannot start {command[0]}: the unit's {why}; "
            "install edge in a venv under /opt (e.g. /opt/edge/venv) and run this command from there",
            file=sys.stderr,
        )
    return 0
