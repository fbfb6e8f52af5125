"""Bootstrap confidence intervals for a mean and a median.

mpiexec -n 4 mpibatch run examples/bootstrap.py --reps 100 --seed 42 --out bootstrap.h5
mpibatch info bootstrap.h5
"""

import numpy as np


def grid():  # optional; the CLI's --grid/--reps override it
    return {"n": [100, 1000, 10000], "stat": ["mean", "median"]}


def task(params, rng):  # rng: numpy.random.Generator for this task
    x = rng.normal(size=params["n"])
    idx = rng.integers(0, params["n"], size=(200, params["n"]))
    boot = getattr(np, params["stat"])(x[idx], axis=1)
    return {"estimate": getattr(np, params["stat"])(x), "ci": np.percentile(boot, [2.5, 97.5])}
