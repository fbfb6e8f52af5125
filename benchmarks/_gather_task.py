"""Task file for benchmarks/gather.py: task ``i`` returns 1 MiB of float64, every value ``i``.

The work is ~0.1 ms per task, so a run's time is the gathering and writing of its results.
"""

import numpy as np

ROW = 131072  # float64 values per task: 1 MiB


def task(params, rng):
    return np.full(ROW, float(params["rep"]))
