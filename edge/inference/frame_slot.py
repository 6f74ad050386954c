"""Frames to the worker through shared memory instead of the pipe.

A 640x480 frame is 900 KB: pickled, pushed through a 64 KB pipe buffer and unpickled it cost ~3 ms
of the frame-to-publish latency here (benchmarks: `edge bench`), a 1080p frame several times that,
more on a Pi. The slot is one shared buffer per supervisor, created once and handed to every
(re)spawned worker like the heartbeat: the supervisor copies the job's images in (a memcpy), the
RunJob carries only their offsets and shapes, and the worker reads them in place.

One job runs at a time and the worker never touches a request's images after it answered, so the
next job's copy cannot race a reader. Images that do not fit travel in the pickled request, as before.
"""

from __future__ import annotations

import ctypes
import dataclasses
from multiprocessing.context import BaseContext
from typing import Any

import numpy as np

from edge.core.messages import GenerationRequest

# Two 1080p frames. Pages are only committed when written, so a 640x480 camera costs 900 KB.
SLOT_BYTES = 2 * 1920 * 1080 * 3

FrameRef = tuple[int, tuple[int, ...]]  # (byte offset, shape) of one uint8 image in the slot


class FrameSlot:
    def __init__(self, ctx: BaseContext, size: int = SLOT_BYTES) -> None:
        self.size = size
        self.array: Any = ctx.RawArray(ctypes.c_uint8, size)

    def _buffer(self) -> np.ndarray:
        return np.frombuffer(self.array, dtype=np.uint8)

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
