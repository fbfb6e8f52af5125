"""Reports what the rank sees of BLAS threading."""

import os

from threadpoolctl import threadpool_info


def task(params, rng):
    threads = [p["num_threads"] for p in threadpool_info()]
    return {
        "omp_env": int(os.environ.get("OMP_NUM_THREADS", "-1")),
        "max_threads": max(threads) if threads else -1,
    }
