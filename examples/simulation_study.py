"""Simulation study: bias, spread and 95% CI coverage of three estimators of a centre.

The study of the Dask unit on simulation studies, one task per replicate of each cell:
draw n values from a normal or a t(3) distribution centred on 0, estimate the centre
with the mean, the median or the 20% trimmed mean, and a 95% percentile-bootstrap CI.

    mpiexec -n 2 mpibatch run examples/simulation_study.py --reps 200 --seed 1 --out sim.h5

2 distributions x 3 sizes x 3 estimators x 200 replicates = 3,600 tasks: about 16 s at
np=2 on this project's 2-core VM. Then, with pandas:

    import mpibatch
    df = mpibatch.open("sim.h5").to_pandas()
    df["covered"] = (df.lo <= 0) & (0 <= df.hi)    # the true centre is 0
    cells = df.groupby(["dist", "n", "estimator"])
    print(cells.estimate.agg(bias="mean", sd="std").join(cells.covered.mean()))
    ds = mpibatch.open("sim.h5").to_xarray()      # or as labelled arrays (needs xarray)
    print(((ds.lo <= 0) & (0 <= ds.hi)).mean("rep").to_series())

Expect coverage near 0.95 everywhere (a little under it for n=20: the percentile
bootstrap is short-tailed in small samples), the three unbiased, and under t(3) the
median and trimmed mean with a smaller sd than the mean.
"""

import numpy as np

B = 200  # bootstrap resamples per task


def grid():  # the CLI's --grid replaces it (tests run a small one)
    return {
        "dist": ["normal", "t3"],
        "n": [20, 100, 500],
        "estimator": ["mean", "median", "trimmed"],
    }


def trimmed(x: np.ndarray, axis: int = -1, cut: float = 0.2) -> np.ndarray:
    """Mean of the middle 60%: drop the lowest and highest 20% along ``axis``."""
    x = np.sort(x, axis=axis)
    k = int(cut * x.shape[axis])
    return np.take(x, range(k, x.shape[axis] - k), axis=axis).mean(axis=axis)


ESTIMATORS = {"mean": np.mean, "median": np.median, "trimmed": trimmed}


def task(params, rng):
    n, estimate = int(params["n"]), ESTIMATORS[params["estimator"]]
    x = rng.normal(size=n) if params["dist"] == "normal" else rng.standard_t(3, size=n)
    boot = estimate(x[rng.integers(0, n, size=(B, n))], axis=1)  # B resampled estimates
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"estimate": estimate(x), "lo": lo, "hi": hi}
