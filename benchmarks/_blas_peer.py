"""Peers for benchmarks/oversubscription.py: examples/blas_heavy.py's tasks outside mpibatch.

``python benchmarks/_blas_peer.py MODE NTASKS N SEED OUT.npy`` runs task i = 0..NTASKS-1 on
task i's stream (``Generator(PCG64(SEED).jumped(i))``, as mpibatch derives it) and saves
the log-determinants in task order. MODE: ``serial`` (one process), ``pool`` (
``multiprocessing.Pool(2)``), ``joblib`` (loky, 2 workers, joblib's default thread limit),
``joblib-unlimited`` (loky, ``inner_max_num_threads`` = every core). BLAS threads are
whatever the environment leaves (the benchmark unsets every thread variable).
"""

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "blas_heavy.py"
_task = None


def one(args: tuple[int, int, int]) -> float:
    global _task
    if _task is None:
        spec = importlib.util.spec_from_file_location("blas_heavy", EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _task = module.task
    seed, i, n = args
    rng = np.random.Generator(np.random.PCG64(seed).jumped(i))
    return float(_task({"n": n}, rng)["logdet"])


def main() -> None:
    mode, ntasks, n, seed, out = sys.argv[1:6]
    jobs = [(int(seed), i, int(n)) for i in range(int(ntasks))]
    if mode == "serial":
        got = [one(j) for j in jobs]
    elif mode == "pool":
        from multiprocessing import Pool

        with Pool(2) as pool:
            got = pool.map(one, jobs, chunksize=1)
    else:
        from joblib import Parallel, delayed, parallel_config

        limit = os.cpu_count() if mode == "joblib-unlimited" else None
        with parallel_config(backend="loky", inner_max_num_threads=limit):
            got = Parallel(n_jobs=2)(delayed(one)(j) for j in jobs)
    np.save(out, np.array(got))


if __name__ == "__main__":
    main()
