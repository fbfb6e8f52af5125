"""BLAS-heavy tasks: a Cholesky factorisation and solve dominate each task.

Each task draws a random SPD matrix (X'X + N I, N = 600), factors it, solves a system
and returns the log-determinant and the solve's relative residual. Nearly all the time
is in LAPACK/BLAS, which start a thread per core in every process unless told not to:
with 2 ranks on 2 cores that is 4 threads fighting for 2 cores. mpibatch limits each
rank's BLAS to ``--threads-per-rank`` (default 1); benchmarks/oversubscription.py times
this file with 1 thread per rank against 2 (every core per rank, as an unlimited BLAS
would), against joblib and against multiprocessing without limits.

    mpiexec -n 2 mpibatch run examples/blas_heavy.py --reps 40 --seed 2 --out blas.h5

40 tasks: about 11 s at np=2 here.
"""

import numpy as np

N = 600


def grid():
    return {"n": [N]}


def task(params, rng):
    n = int(params["n"])
    x = rng.normal(size=(n, n))
    a = x.T @ x + n * np.eye(n)
    for _ in range(3):  # the factorisation dominates: do it as a solver's iterations would
        chol = np.linalg.cholesky(a)
    b = rng.normal(size=n)
    sol = np.linalg.solve(chol.T, np.linalg.solve(chol, b))
    resid = np.linalg.norm(a @ sol - b) / np.linalg.norm(b)
    return {"logdet": 2.0 * np.log(np.diag(chol)).sum(), "resid": resid}
