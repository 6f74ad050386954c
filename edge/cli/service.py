"""`edge service unit|env`: the shipped systemd unit with ExecStart set for this install, and the
example environment file, printed from the package data (edge/assets/systemd).

The unit is the shipped one, changed in a few lines only: ExecStart= runs the `edge` script of the
environment this command runs from (the venv's bin/edge; `python -m edge.cli` when there is no
script), Documentation= points at the README installed beside it, and SupplementaryGroups= gains
`render` where this machine has that group. Everything else, the hardening included, stays as
tested in tests/unit/test_systemd_unit.py.

The sandbox check follows every path the service needs to start, not only the script: a venv's
python is a symlink, and pyenv, uv and conda put the interpreter it resolves to under the home
directory, which ProtectHome= hides (the start then fails with 203/EXEC and nothing else says why).
"""

from __future__ import annotations

import grp
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
    text = text.replace("(as shipped: a venv in /opt/edge/venv)", f"(here: {program.replace('%%', '%')})")
    readme = shipped("README.md").as_uri().replace("%", "%%")
    text = re.sub(r"^Documentation=.*$", f"Documentation={readme}", text, count=1, flags=re.M)
    if _group_exists("render"):
        text = re.sub(
            r"^SupplementaryGroups=(.*)$", r"SupplementaryGroups=\1 render", text, count=1, flags=re.M
        )
    return text


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def hidden_by_sandbox(program: str) -> str | None:
    """The unit setting that hides `program` from the service, if any."""
    path = os.path.abspath(program)
    for setting, roots in HIDDEN.items():
        for root in roots:
            if path == root or path.startswith(root + "/"):
                return f"{setting} hides {root}"
    return None


def _interpreter(script: str) -> str | None:
    """The program named on a script's #! line (None for a binary or a script without one)."""
    try:
        with open(script, "rb") as fh:
            first = fh.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    return words[0] if words else None


def needed_paths(command: list[str]) -> list[tuple[str, str]]:
    """(what, path) for everything the service must reach to start `command`: the program, the
    interpreter it names and the file that interpreter resolves to, the base installation behind a
    venv, and the installed `edge` package (an editable install lives in its checkout)."""
    program = command[0]
    interpreter = program if len(command) > 1 else (_interpreter(program) or program)
    found: list[tuple[str, str]] = [("program", os.path.abspath(program))]
    if interpreter != program:
        found.append(("interpreter", os.path.abspath(interpreter)))
    found.append(("interpreter (resolved)", os.path.realpath(interpreter)))
    found.append(("Python installation", os.path.realpath(sys.base_prefix)))
    import edge

    found.append(("edge package", os.path.realpath(os.path.dirname(edge.__file__))))
    seen: set[str] = set()
    unique = []
    for what, path in found:
        if path not in seen:
            seen.add(path)
            unique.append((what, path))
    return unique


def sandbox_problems(command: list[str]) -> list[str]:
    """One line per path the unit's sandbox hides from the service."""
    out = []
    for what, path in needed_paths(command):
        why = hidden_by_sandbox(path)
        if why:
            out.append(f"the {what} {path} is out of the service's reach: the unit's {why}")
    return out


def service_command(what: str) -> int:
    if what == "env":
        sys.stdout.write(shipped("edge.env").read_text(encoding="utf-8"))
        return 0
    command = edge_command()
    sys.stdout.write(unit_text(command))
    found = sandbox_problems(command)
    for line in found:
        print(f"edge: warning: {line}", file=sys.stderr)
    if found:
        print(
            f"edge: warning: the service cannot start {command[0]} (it would fail with 203/EXEC); "
            "install edge in a venv under /opt made by a Python outside /home and /root "
            "(e.g. /usr/bin/python3 -m venv /opt/edge/venv) and run this command from there",
            file=sys.stderr,
        )
    return 0
