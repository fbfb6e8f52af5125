"""The arena: shared memory for a rank's block columns, and its header's counters.

The rank maps it and allocates in it; its task process (forked, so it inherits the
mapping) writes rows there and publishes its progress in the header, which the rank
reads when the child dies (see _taskproc.py).
"""

from __future__ import annotations

import mmap

import numpy as np

_HEADER = 64  # bytes at the arena's start: the counters below, int64 each
COUNT = 0  # rows of the block finished (in order, the skipped ones included)
STOP = 2  # 1: the rank was asked to stop before the child started
_PAGE = mmap.PAGESIZE


class Arena:
    """Shared memory for block columns: mapped by the rank, inherited by its task process.

    The rank allocates (first fit over pages) and frees; the child only writes into what
    it was given. Pages never touched cost nothing, so it is sized generously.
    """

    def __init__(self, nbytes: int) -> None:
        nbytes = -(-max(nbytes, 1 << 20) // _PAGE) * _PAGE
        self.map = mmap.mmap(-1, nbytes + _PAGE, flags=mmap.MAP_SHARED)
        self.bytes = np.frombuffer(self.map, np.uint8)
        self.header = memoryview(self.map)[:_HEADER].cast("q")
        self.base = self.bytes.ctypes.data
        self.free: list[tuple[int, int]] = [(_PAGE, nbytes)]  # (offset, size), sorted
        self.used: dict[int, int] = {}

    def take(self, nbytes: int) -> int | None:
        """The offset of ``nbytes`` free bytes, or None if none are left in one piece."""
        size = -(-max(nbytes, 1) // _PAGE) * _PAGE
        for k, (at, room) in enumerate(self.free):
            if room >= size:
                self.free[k : k + 1] = [(at + size, room - size)] if room > size else []
                self.used[at] = size
                return at
        return None

    def give(self, at: int) -> None:
        size = self.used.pop(at)
        spans = sorted([*self.free, (at, size)])
        merged: list[tuple[int, int]] = []
        for a, n in spans:
            if merged and merged[-1][0] + merged[-1][1] == a:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((a, n))
        self.free = merged

    def view(self, at: int, nbytes: int) -> np.ndarray:
        return self.bytes[at : at + nbytes]

    def offset_of(self, buffer: np.ndarray, allocated: bool = True) -> int | None:
        """Where ``buffer`` starts in the arena (None: it is not arena memory).

        ``allocated=False`` (in the task process, whose copy of the books is stale):
        anywhere in the arena.
        """
        at = buffer.ctypes.data - self.base
        if allocated:
            return at if at in self.used else None
        return at if _PAGE <= at < self.bytes.nbytes else None


class ArenaBuffers:
    """What the dispatch code gives block buffers back to: arena memory is freed."""

    def __init__(self, arena: Arena, fallback) -> None:
        self.arena, self.fallback = arena, fallback
        self.min_bytes = fallback.min_bytes

    def give(self, buffer: np.ndarray) -> None:
        at = self.arena.offset_of(buffer)
        if at is not None:
            self.arena.give(at)
        else:
            self.fallback.give(buffer)

    def take(self, nbytes: int) -> np.ndarray:
        return self.fallback.take(nbytes)
