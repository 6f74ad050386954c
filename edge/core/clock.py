"""Is the wall clock synchronised? A Raspberry Pi has no real-time clock: it boots with the time of
its last shutdown (or 1970) and steps when NTP syncs, so a `captured_at` taken before that is not
to be trusted. The kernel knows: adjtimex(2) returns TIME_ERROR while the clock is unsynchronised
(what `timedatectl` shows as "System clock synchronized: no"). Stdlib only; imports nothing of edge.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
import time

TIME_ERROR = 5
_CACHE_S = 10.0
_lock = threading.Lock()
_cached: tuple[float, bool | None] | None = None


def _adjtimex() -> int | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    buf = ctypes.create_string_buffer(512)  # struct timex (208 bytes on 64-bit), modes = 0: read only
    rc = int(libc.adjtimex(buf))
    return None if rc < 0 else rc


def clock_synchronised() -> bool | None:
    """True/False as the kernel says, None where it cannot tell (not Linux, no libc). Cached 10 s."""
    global _cached
    now = time.monotonic()
    with _lock:
        if _cached is not None and now - _cached[0] < _CACHE_S:
            return _cached[1]
        rc = _adjtimex()
        value = None if rc is None else rc != TIME_ERROR
        _cached = (now, value)
        return value
