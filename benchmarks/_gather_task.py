"""Task file for benchmarks/gather.py: task ``i`` returns 1 MiB of float64, every value ``i``.

The work is ~0.1 ms per task, so a run's time is the gathering and writing of its results.
With ``GATHER_MODE=ragged`` the key is declared ``ragged float64`` and task ``i`` returns
``ROW - SWING`` values when ``i`` is even and ``ROW + SWING`` when odd: the same bytes as
the fixed-shape run over an even number of tasks, in rows of varying length.
"""

import os

import numpy as np

ROW = 131072  # float64 values per task: 1 MiB
SWING = 4096  # ragged mode: rows are ROW -/+ SWING values long
MODE = os.environ.get("GATHER_MODE", "fixed")
if MODE == "ragged":
    results = {"value": "ragged float64"}


def length(i: int, mode: str = MODE) -> int:
    """Values task ``i`` returns."""
    return ROW if mode != "ragged" else ROW + (SWING if i % 2 else -SWING)


def task(params, rng):
    i = params["rep"]
    return np.full(length(i), float(i))
