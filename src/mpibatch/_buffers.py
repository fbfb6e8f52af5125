"""Byte buffers of rank blocks: kept for reuse, grown for values of varying size."""

from __future__ import annotations

import threading

import numpy as np

_KEEP = 16  # buffers a Buffers keeps at most
_KEEP_ALWAYS = 3  # buffers kept whatever their size: blocks of ragged results differ a little
# in size, and those of about half the budget each no longer fit it (every block faulted in)


class Buffers:
    """Big byte buffers kept for reuse, so blocks of results do not fault in fresh memory.

    The first write to memory a process has not used costs a page fault per page (far
    more on virtual machines that hand freed memory back to their host), and a run makes
    a block buffer thousands of times. Buffers under ``min_bytes`` are left to malloc,
    whose heap hands back memory already touched, faster than any bookkeeping here.
    :meth:`take` returns the smallest kept buffer big enough, or a new one; :meth:`give`
    keeps a buffer again, the largest up to ``max_bytes`` in all (but always three) and at most
    16.
    Thread-safe: rank 0's task thread takes while its main thread gives back.
    """

    min_bytes = 1 << 18

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.kept: list[np.ndarray] = []
        self.per_row: dict[str, float] = {}  # each tail key's bytes per row, last block
        self.lock = threading.Lock()

    def take(self, nbytes: int) -> np.ndarray:
        if nbytes >= self.min_bytes:
            with self.lock:
                best = None
                for k, b in enumerate(self.kept):
                    if b.nbytes >= nbytes and (best is None or b.nbytes < self.kept[best].nbytes):
                        best = k
                if best is not None:
                    return self.kept.pop(best)
            nbytes = _rounded(nbytes)
        return np.empty(nbytes, np.uint8)

    def give(self, buffer: np.ndarray) -> None:
        if buffer.nbytes < self.min_bytes:
            return
        with self.lock:
            self.kept.append(buffer)
            self.kept.sort(key=lambda b: b.nbytes, reverse=True)
            total = 0
            for k, b in enumerate(self.kept):
                total += b.nbytes
                if (total > self.max_bytes and k >= _KEEP_ALWAYS) or k == _KEEP:
                    del self.kept[k:]
                    break


def _rounded(nbytes: int) -> int:
    """``nbytes`` rounded up to 1/8 of its power of two (at most 12.5% more).

    Blocks of ragged or string results vary in size; buffers of a few sizes are reused
    (here and by malloc) where buffers of every size would fragment the heap: rank 0's
    memory grew with the results until sizes were rounded.
    """
    step = 1 << max(0, nbytes.bit_length() - 4)
    return -(-nbytes // step) * step


class Tail:
    """A tail key's bytes while a block is filled: one growing buffer, rows in order.

    Each value is copied in as it is put, so the task's own array is freed at once (its
    memory is reused for the next task, as with fixed-shape results). The first
    ``reserve`` bytes are left for the block's columns (see :meth:`Columns.seal`).
    """

    def __init__(self, buffers: Buffers | None = None, reserve: int = 0, expect: int = 0) -> None:
        """``expect``: the bytes the values will likely take (the buffer starts that big,
        1/8 more: growing it as values come copied each byte about twice more)."""
        self.buffers, self.reserve = buffers, reserve
        self.buf = np.empty(0, np.uint8)
        self.used = reserve
        self.last = (-1, 0)  # (row, bytes) of the last value put
        if expect:
            self._grow(reserve + expect + expect // 8)

    def _grow(self, size: int) -> None:
        new = self.buffers.take(size) if self.buffers else np.empty(size, np.uint8)
        new[self.reserve : self.used] = self.buf[self.reserve : self.used]
        self.release()
        self.buf = new

    def put(self, row: int, data: np.ndarray) -> int:
        """Append ``data``'s bytes for ``row``; returns how many."""
        raw = data.reshape(-1).view(np.uint8)
        n = raw.nbytes
        if self.used + n > self.buf.nbytes:
            self._grow(max(self.buf.nbytes + self.buf.nbytes // 2, self.used + n, 1 << 16))
        self.buf[self.used : self.used + n] = raw
        self.used += n
        self.last = (row, n)
        return n

    def drop(self, row: int) -> None:
        """Take back ``row``'s bytes, if they were the last put (its task failed)."""
        if self.last[0] == row:
            self.used -= self.last[1]
            self.last = (-1, 0)

    def take(self, nbytes: int) -> np.ndarray:
        """The buffer, at least ``nbytes`` long, handed over (the tail is empty after)."""
        if self.buf.nbytes < nbytes:
            self._grow(nbytes)
        buf, self.buf = self.buf, np.empty(0, np.uint8)
        return buf

    def release(self) -> None:
        """Give the buffer back for reuse."""
        if self.buffers is not None:
            self.buffers.give(self.buf)
        self.buf = np.empty(0, np.uint8)
