"""Rank 0's writing: reports into the file as they land, failures beside it, flushes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from .._records import Columns


class Sink:
    """Writes reports through a write-behind (many small blocks, few writes).

    Failures go to the sidecar file at once; the file is flushed every
    ``flush_seconds``, so a killed run keeps what was flushed.
    """

    def __init__(self, store, flush_seconds: float, release: Callable[[np.ndarray], None]) -> None:
        from ..store import WriteBehind  # here: the other ranks never import h5py

        self.store, self.flush_seconds = store, flush_seconds
        self.behind = WriteBehind(store, max_seconds=min(0.5, flush_seconds), release=release)
        self.last_flush = time.monotonic()

    def add(self, pos: int, cols: Columns, rank: int | np.ndarray, failures: Sequence) -> None:
        self.behind.add(pos, cols, rank)
        if failures:
            self.store.write_failures(list(failures))
        if time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()
            self.store.flush()
            self.last_flush = time.monotonic()

    def tick(self) -> None:
        """Write what waits if it has waited long enough."""
        self.behind.tick()

    def flush(self) -> None:
        self.behind.flush()
