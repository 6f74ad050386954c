"""A pseudo-terminal that can be unplugged and plugged back, for the serial tests.

The code under test opens a stable path (a symlink in the test's tmp dir, like a udev
/dev/serial/by-id link) with pyserial; the test holds the master end. Closing the master makes the
reader's next read fail (pyserial raises SerialException) exactly as a pulled USB adapter does. A pty
cannot be reopened once its master is closed, so `replug()` makes a new pair and repoints the link.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable
from pathlib import Path


class PtyLink:
    def __init__(self, link: Path) -> None:
        self.link = link
        self.master: int | None = None
        self.plug()

    @property
    def path(self) -> str:
        return str(self.link)

    def plug(self) -> None:
        master, slave = os.openpty()
        name = os.ttyname(slave)
        os.close(slave)  # the reader opens it by name; the pty lives as long as the master
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(name)
        os.replace(tmp, self.link)  # atomic: the path never points nowhere while plugged
        self.master = master

    def unplug(self, remove_link: bool = False) -> None:
        if self.master is not None:
            os.close(self.master)
            self.master = None
        if remove_link:
            self.link.unlink(missing_ok=True)

    def replug(self) -> None:
        self.unplug()
        self.plug()

    def write(self, data: bytes) -> None:
        assert self.master is not None, "unplugged"
        view = memoryview(data)
        while view:
            n = os.write(self.master, view)
            view = view[n:]

    def read_lines(self, count: int, timeout: float = 5.0) -> list[bytes]:
        """Read until `count` complete lines arrived (or time out: returns what came)."""
        assert self.master is not None, "unplugged"
        buf = b""
        deadline = time.monotonic() + timeout
        while buf.count(b"\n") < count and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                buf += os.read(self.master, 4096)
        return buf.splitlines(keepends=True)

    def close(self) -> None:
        self.unplug(remove_link=True)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll until predicate() is true; generous timeouts, never a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
