"""Stratified analysis: one regression per group of a large synthetic dataset, the data
shared (one read-only copy per node, whatever the number of ranks).

    mpiexec -n 2 mpibatch run examples/stratified.py --seed 1 --out stratified.h5
    mpibatch info stratified.h5

``load()`` runs once, on rank 0: 10 million rows (x1, x2, y) in 1,000 groups, sorted by
group, 240 MB. Each task fits y ~ 1 + x1 + x2 on its group's rows by least squares and
bootstraps the slope's standard error. At np=2 on this project's 2-core VM the run took
25 s (``mpibatch info`` shows 229 MiB shared per node, one copy for both ranks).
The file records the SHA-256 of the data under /shared: ``--resume`` and ``mpibatch
rerun`` refuse changed data.
Smaller: ``STRATIFIED_ROWS=100000 STRATIFIED_GROUPS=20``.
"""

import os

import numpy as np

ROWS = int(os.environ.get("STRATIFIED_ROWS", 10_000_000))
GROUPS = int(os.environ.get("STRATIFIED_GROUPS", 1000))


def truth(groups: int = GROUPS) -> np.ndarray:
    """The true (intercept, b1, b2) of each group."""
    rng = np.random.default_rng(2024)
    return np.column_stack(
        [rng.normal(0, 2, groups), rng.normal(1, 0.5, groups), rng.normal(-1, 0.5, groups)]
    )


def load():
    """The dataset, made once (a real study would read it: np.load(..., mmap_mode="r"))."""
    rng = np.random.default_rng(7)
    group = np.sort(rng.integers(0, GROUPS, ROWS)).astype(np.int32)
    x = rng.normal(size=(ROWS, 2))
    coef = truth()[group]
    y = coef[:, 0] + np.einsum("ij,ij->i", x, coef[:, 1:]) + rng.normal(0, 1.0, ROWS)
    starts = np.searchsorted(group, np.arange(GROUPS + 1)).astype(np.int64)
    return {"x": x, "y": y, "starts": starts}


def grid():
    return {"group": list(range(GROUPS))}


def task(params, rng, ctx):
    d, g = ctx.shared, params["group"]
    a, b = d["starts"][g], d["starts"][g + 1]
    design = np.column_stack([np.ones(b - a), d["x"][a:b]])  # reads the shared rows
    y = d["y"][a:b]
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    slopes = []
    for _ in range(20):  # bootstrap the slope of x1
        i = rng.integers(0, b - a, b - a)
        slopes.append(np.linalg.lstsq(design[i], y[i], rcond=None)[0][1])
    return {"coef": coef, "se_b1": float(np.std(slopes)), "n": int(b - a)}
