"""Rank 0's write-behind: small reports joined into few writes (see :class:`WriteBehind`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._records import Columns, join


class WriteBehind:
    """Small reports kept in memory briefly and written as a few contiguous slices.

    Every h5py write costs tens of microseconds whatever its size, so many one-task
    blocks would make rank 0 a bottleneck. Reports wait here until ``max_bytes`` of
    them pile up or the oldest is ``max_seconds`` old; then reports of adjacent rows are
    joined and each run is written once. A kill loses only what waits here, and those
    rows are still pending in the file (status is written with the data).
    """

    def __init__(
        self,
        store: Any,  # a store.Store
        max_bytes: int = 8 << 20,
        max_seconds: float = 0.5,
        release: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        self.store, self.max_bytes, self.max_seconds = store, max_bytes, max_seconds
        self.release = release  # takes each report's buffer back once it is written
        self.items: list[tuple[int, Columns, int | np.ndarray]] = []
        self.spare: np.ndarray | None = None  # the buffer every join reuses
        self.bytes, self.since = 0, time.monotonic()

    def add(self, row: int, cols: Columns, rank: int | np.ndarray) -> None:
        if not self.items:
            self.since = time.monotonic()
        self.items.append((row, cols, rank))
        self.bytes += cols.nbytes
        if self.bytes >= self.max_bytes:
            self.flush()
        else:
            self.tick()

    def tick(self) -> None:
        """Write what waits if the oldest report has waited long enough."""
        if self.items and time.monotonic() - self.since >= self.max_seconds:
            self.flush()

    def flush(self) -> None:
        items = sorted(self.items, key=lambda item: item[0])
        self.items, self.bytes = [], 0
        run: list = []
        big = self.max_bytes // 8  # a report this big is written alone, never copied
        for item in items:
            if run and (
                item[0] != run[-1][0] + run[-1][1].rows
                or item[1].schema != run[-1][1].schema
                or max(item[1].nbytes, run[-1][1].nbytes) >= big
                or bool(item[1].tails)  # ragged or string bytes: appended as they come
            ):
                self._write(run)
                run = []
            run.append(item)
        if run:
            self._write(run)

    def _write(self, run: list) -> None:
        if len(run) == 1:
            self.store.write_rows(*run[0])
        else:
            joined = join([cols for _, cols, _ in run], self.spare)
            self.spare = joined.storage
            ranks = np.concatenate([np.full(c.rows, r, dtype=np.int32) for _, c, r in run])
            self.store.write_rows(run[0][0], joined, ranks)
        if self.release is not None:
            for _, cols, _ in run:
                self.release(cols.storage)
