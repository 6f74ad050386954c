"""Frames to the worker through shared memory instead of the pipe.

A 640x480 frame is 900 KB: pickled, pushed through a 64 KB pipe buffer and unpickled it cost ~3 ms
of the frame-to-publish latency here (benchmarks: `edge bench`), a 1080p frame several times that,
more on a Pi. The slot is one shared buffer per model lane, created once and handed to every
(re)spawned worker like the heartbeat, and to the supervisor that replaces this one on a reload: the
supervisor copies the job's images in (a memcpy; an event's N frames one after another), the RunJob carries only their offsets and shapes,
and the worker reads them in place.

Memory: the buffer is taken from multiprocessing's shared heap, as `RawArray` does, but without
`RawArray`'s zero fill, which writes (and so commits) every page: 12 MB of resident memory in the
main process per slot, whatever the camera size, and one more slot for every reload while the old
supervisors waited for the garbage collector. A fresh arena is a sparse file:
pages are committed when a frame is first written to them, so a 640x480 camera costs 900 KB and a
text-only lane nothing. Stale bytes from a reused heap block are harmless: a job only reads what
its own pack wrote.

One job runs at a time and the worker never touches a request's images after it answered, so the
next job's copy cannot race a reader. Images that do not fit travel in the pickled request, as before.
"""

from __future__ import annotations

import dataclasses
from multiprocessing import heap
from multiprocessing.context import BaseContext
from typing import Any

import numpy as np

from edge.config.settings import MAX_EVENT_FRAMES
from edge.core.messages import GenerationRequest

# An event's frames at 1080p (six: task.frames at most): 37 MB of address space, but pages are only
# committed when written (see above), so the resident cost is the largest request actually sent:
# 900 KB for one 640x480 frame, 5.5 MB for a 6-frame event at 640x480, 16.6 MB at 1280x720. The same
# pages are mapped by the worker (shared, not a second copy); over the pipe each frame would be
# pickled, copied through the pipe and unpickled instead.
SLOT_BYTES = MAX_EVENT_FRAMES * 1920 * 1080 * 3

FrameRef = tuple[int, tuple[int, ...]]  # (byte offset, shape) of one uint8 image in the slot


class FrameSlot:
    def __init__(self, ctx: BaseContext | None = None, size: int = SLOT_BYTES) -> None:
        """`ctx` is accepted for symmetry with the heartbeat; the heap serves every start method."""
        del ctx
        self.size = size
        self._wrapper: Any = heap.BufferWrapper(size)  # pickled to the worker like a RawArray's

    def _buffer(self) -> np.ndarray:
        return np.frombuffer(self._wrapper.create_memoryview(), dtype=np.uint8)

    def pack(self, request: GenerationRequest) -> tuple[GenerationRequest, tuple[FrameRef, ...]] | None:
        """Copy the request's images into the slot: (request without images, refs), or None if they
        do not fit (or are not plain uint8 arrays) and must go through the pipe."""
        images = request.images
        if not images or any(not isinstance(i, np.ndarray) or i.dtype != np.uint8 for i in images):
            return None
        if sum(i.nbytes for i in images) > self.size:
            return None
        buf = self._buffer()
        refs: list[FrameRef] = []
        offset = 0
        for image in images:
            n = image.nbytes
            buf[offset : offset + n].reshape(image.shape)[...] = image
            refs.append((offset, tuple(image.shape)))
            offset += n
        return dataclasses.replace(request, images=()), tuple(refs)

    def unpack(self, request: GenerationRequest, refs: tuple[FrameRef, ...]) -> GenerationRequest:
        """The request with its images back, as read-only views into the slot (valid for this job)."""
        buf = self._buffer()
        images = []
        for offset, shape in refs:
            view = buf[offset : offset + int(np.prod(shape))].reshape(shape)
            view.flags.writeable = False
            images.append(view)
        return dataclasses.replace(request, images=tuple(images))
