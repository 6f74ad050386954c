"""The installed systemd unit as `edge doctor` sees it, and whether the service's user can read a file.

The trap this exists for: onnx writes external weights (`*.onnx.data`) mode 0600, so a model folder
copied by root loads fine in every manual test and then fails under systemd, where the service runs
as `User=edge` or a `DynamicUser=` that owns nothing. Whether a file is readable depends on who
reads it, so the unit is parsed for the identity it runs as; when doctor runs as root the reads are
then really attempted under that identity (a forked child that drops to its uid, gid and groups:
ACLs and every directory on the way count), and otherwise judged from the mode bits.

Only the few keys doctor needs are read: no specifier expansion, no templated units.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import shlex
import stat
from dataclasses import dataclass, field
from pathlib import Path

UNIT_NAME = "edge.service"
# Search order as systemd's: admin overrides, runtime units, then vendor units.
UNIT_DIRS = (
    Path("/etc/systemd/system"),
    Path("/run/systemd/system"),
    Path("/lib/systemd/system"),
    Path("/usr/lib/systemd/system"),
)
# systemd allocates DynamicUser= ids from this range (systemd.exec(5)).
DYNAMIC_UID_RANGE = range(61184, 65520)
_TRUE = {"1", "yes", "true", "on"}


class UnitError(Exception):
    """The unit names an identity that cannot exist here (e.g. User= of a user never created)."""


@dataclass(frozen=True)
class ServiceUnit:
    """The [Service] settings of the installed unit that decide what the daemon can reach."""

    path: Path
    dropins: tuple[Path, ...] = ()
    user: str | None = None
    group: str | None = None
    dynamic_user: bool = False
    supplementary_groups: tuple[str, ...] = ()
    state_directory: str | None = None  # first StateDirectory= entry, relative to /var/lib
    protect_home: str = "no"
    exec_start: tuple[str, ...] = ()

    @property
    def executable(self) -> str | None:
        """ExecStart='s program, without systemd's prefixes (-, @, :, +, !)."""
        if not self.exec_start:
            return None
        return self.exec_start[0].lstrip("-@:+!") or None

    @property
    def state_path(self) -> Path | None:
        return Path("/var/lib") / self.state_directory if self.state_directory else None


@dataclass(frozen=True)
class Identity:
    """Who reads: a uid with its groups, or `uid=None` for 'some other user' (owner of nothing)."""

    label: str
    uid: int | None
    gid: int | None
    groups: frozenset[int] = field(default_factory=frozenset)

    @property
    def is_root(self) -> bool:
        return self.uid == 0


ANOTHER_USER = Identity("another user", None, None)


def find_unit(dirs: tuple[Path, ...] = UNIT_DIRS) -> ServiceUnit | None:
    """Parse the first edge.service found in `dirs`, with every edge.service.d/*.conf drop-in."""
    main = next((d / UNIT_NAME for d in dirs if (d / UNIT_NAME).is_file()), None)
    if main is None:
        return None
    # Drop-ins apply in file-name order whichever directory they are in; an earlier dir wins a tie.
    dropins: dict[str, Path] = {}
    for d in dirs:
        for conf in sorted((d / f"{UNIT_NAME}.d").glob("*.conf")):
            dropins.setdefault(conf.name, conf)
    ordered = tuple(dropins[name] for name in sorted(dropins))
    values: dict[str, list[str]] = {}
    for f in (main, *ordered):
        _parse_service_section(f.read_text(errors="replace"), values)

    def last(key: str) -> str | None:
        v = values.get(key)
        return v[-1] if v else None

    state = (last("StateDirectory") or "").split()
    return ServiceUnit(
        path=main,
        dropins=ordered,
        user=last("User") or None,
        group=last("Group") or None,
        dynamic_user=(last("DynamicUser") or "no").lower() in _TRUE,
        supplementary_groups=tuple(g for v in values.get("SupplementaryGroups", []) for g in v.split()),
        state_directory=state[0] if state else None,
        protect_home=(last("ProtectHome") or "no").lower(),
        exec_start=tuple(_split(last("ExecStart") or "")),
    )


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def _parse_service_section(text: str, values: dict[str, list[str]]) -> None:
    """Collect [Service] assignments; an empty assignment resets the list, as systemd does."""
    section = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Service" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if value:
            values.setdefault(key, []).append(value)
        else:
            values[key] = []


def _group_id(name: str) -> int:
    try:
        return int(name) if name.isdigit() else grp.getgrnam(name).gr_gid
    except KeyError:
        raise UnitError(f"group {name!r} does not exist") from None


def service_identity(unit: ServiceUnit) -> Identity:
    """The uid and groups the unit's process gets. Raises UnitError when it cannot exist here."""
    extra = frozenset(_group_id(g) for g in unit.supplementary_groups)
    if unit.dynamic_user:
        uid = next((u for u in reversed(DYNAMIC_UID_RANGE) if not _uid_exists(u)), None)
        gid = _group_id(unit.group) if unit.group else uid
        return Identity("a DynamicUser", uid, gid, extra | ({gid} if gid is not None else set()))
    if not unit.user or unit.user in ("root", "0"):
        return Identity("root", 0, 0, frozenset({0}))
    try:
        pw = pwd.getpwuid(int(unit.user)) if unit.user.isdigit() else pwd.getpwnam(unit.user)
    except KeyError:
        raise UnitError(f"User={unit.user} does not exist on this system") from None
    gid = _group_id(unit.group) if unit.group else pw.pw_gid
    # systemd initialises the user's own supplementary groups, then adds SupplementaryGroups=.
    member = frozenset(g.gr_gid for g in grp.getgrall() if pw.pw_name in g.gr_mem)
    return Identity(f"user {pw.pw_name} (uid {pw.pw_uid})", pw.pw_uid, gid, member | extra | {gid})


def _uid_exists(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


# --------------------------------------------------------------------------- readability


def mode_allows(st: os.stat_result, who: Identity, bit: int) -> bool:
    """Whether the permission bits (r=4, w=2, x=1) grant `bit` to `who` (ACLs not considered)."""
    if who.is_root:
        return True
    mode = stat.S_IMODE(st.st_mode)
    if who.uid is not None and st.st_uid == who.uid:
        return bool(mode & (bit << 6))
    if st.st_gid in who.groups:
        return bool(mode & (bit << 3))
    return bool(mode & bit)


def blocker(path: Path, who: Identity) -> str | None:
    """The first directory on the way or the file itself whose mode bits deny `who`, described."""
    path = Path(os.path.abspath(path))
    for d in reversed(path.parents):
        st = d.stat()
        if not mode_allows(st, who, 1):
            return f"directory {d} (mode {stat.S_IMODE(st.st_mode):04o}, owner {_owner(st)})"
    st = path.stat()
    if not mode_allows(st, who, 4):
        return f"{path.name} (mode {stat.S_IMODE(st.st_mode):04o}, owner {_owner(st)})"
    return None


def _owner(st: os.stat_result) -> str:
    try:
        return pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        return str(st.st_uid)


def unreadable(paths: list[Path], who: Identity) -> tuple[list[str], str]:
    """(what `who` cannot read, each described; how that was found: 'tried as uid N' or 'mode bits').

    As root with a concrete uid the reads are attempted for real under that identity; otherwise the
    mode bits decide (which cannot see ACLs)."""
    if who.is_root:
        return [], "root reads everything"
    if who.uid is not None and who.gid is not None and os.geteuid() == 0 and hasattr(os, "fork"):
        failed = _try_reads_as(paths, who)
        if failed is not None:
            out = []
            for path, code in failed:
                why = blocker(path, who) or f"{path.name} ({os.strerror(code)}: an ACL or security module)"
                out.append(why)
            return out, f"tried as uid {who.uid}"
    return [b for p in paths if (b := blocker(p, who))], "judged by mode bits"


def _try_reads_as(paths: list[Path], who: Identity) -> list[tuple[Path, int]] | None:
    """Open and read one byte of each path in a forked child running as `who`; None if the child
    could not become `who`. The child only makes system calls, so forking a threaded parent is safe."""
    assert who.uid is not None and who.gid is not None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no Python-level cleanup, no locks, just syscalls and _exit
        code = 3
        try:
            os.close(r)
            os.setgroups(sorted(who.groups))
            os.setgid(who.gid)
            os.setuid(who.uid)
            for i, p in enumerate(paths):
                try:
                    fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        os.read(fd, 1)
                    finally:
                        os.close(fd)
                except OSError as err:
                    os.write(w, f"{i} {err.errno or errno.EACCES}\n".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        report = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return None
    failed = []
    for line in report.splitlines():
        index, errnum = line.split()
        failed.append((paths[int(index)], int(errnum)))
    return failed
