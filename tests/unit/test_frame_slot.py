"""The shared-memory frame slot: images round-trip exactly, and what does not fit stays in the request."""

from __future__ import annotations

import multiprocessing

import numpy as np
import psutil
import pytest

from edge.core.messages import GenerationRequest
from edge.inference.frame_slot import FrameSlot

CTX = multiprocessing.get_context("spawn")


def test_images_round_trip_through_the_slot_as_read_only_views() -> None:
    slot = FrameSlot(CTX, size=200_000)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    packed = slot.pack(GenerationRequest(prompt="p", images=(a, b), max_new_tokens=7))
    assert packed is not None
    request, refs = packed
    assert request.images == () and request.prompt == "p" and request.max_new_tokens == 7
    assert [shape for _, shape in refs] == [a.shape, b.shape]
    back = slot.unpack(request, refs)
    assert len(back.images) == 2
    np.testing.assert_array_equal(back.images[0], a)
    np.testing.assert_array_equal(back.images[1], b)
    with pytest.raises(ValueError):
        back.images[0][0, 0, 0] = 1  # the worker must not scribble on the shared frame


@pytest.mark.parametrize(
    "images",
    [
        (),  # text jobs: nothing to move
        (np.zeros((400, 400, 3), np.uint8),),  # larger than the slot
        (np.zeros((8, 8, 3), np.float32),),  # not a uint8 frame: the backend reports it, not us
    ],
)
def test_what_does_not_fit_is_left_to_the_pipe(images: tuple[np.ndarray, ...]) -> None:
    slot = FrameSlot(CTX, size=200_000)
    assert slot.pack(GenerationRequest(prompt="p", images=images)) is None


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_an_unwritten_slot_costs_no_resident_memory() -> None:
    """Regression: RawArray's zero fill committed the whole slot (12 MB) in the
    main process for every supervisor, and a reload made a new one each time."""
    before = _rss_mb()
    slots = [FrameSlot(CTX, size=32 * 2**20) for _ in range(4)]  # 128 MB if committed
    assert _rss_mb() - before < 16
    frame = np.full((480, 640, 3), 7, np.uint8)  # a write commits only what it touches
    packed = slots[0].pack(GenerationRequest(prompt="p", images=(frame,)))
    assert packed is not None
    assert _rss_mb() - before < 24
    np.testing.assert_array_equal(slots[0].unpack(*packed).images[0], frame)
