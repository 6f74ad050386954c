"""glibc malloc told to hand large buffers back to the kernel when they are freed (main process).

glibc serves a request of 128 KB or more with its own mmap, and unmaps it on free, until the first
such buffer is freed: then it raises that threshold to the buffer's size, so that every later frame
(0.9 MB at 640x480, 2.7 MB at 720p) comes from the heap and, once freed, stays in the process's RSS
as free heap. Capture, the gate and the published picture allocate and drop frames all day, so the
main process fixes the threshold at 128 KB (`mallopt(M_MMAP_THRESHOLD)`, which also turns the
adjustment off): measured ~2 MB less RSS at one 640x480 camera, more with larger or more cameras,
for an mmap and its page faults per frame (tens of microseconds). The worker is left as it is: its
runtime's allocations on the decode path were not measured under this setting. Where the C library
is not glibc, nothing is done.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # malloc.h
THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value


def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold at 128 KB in this process; False where that is not possible."""
    try:  # the process's own symbols, libc's among them (find_library would run ldconfig at start)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES))
    log.debug("malloc: mmap threshold fixed at %d bytes: %s", THRESHOLD_BYTES, done)
    return done
