"""Peers for benchmarks/skew.py: the same sleeping tasks through a process pool.

    python benchmarks/_skew_peer.py pool NP CHUNKSIZE SEED OUT.npz
    mpiexec -n NP+1 python -m mpi4py.futures benchmarks/_skew_peer.py futures - 1 SEED OUT.npz

``pool``: ``multiprocessing.Pool(NP).map`` (CHUNKSIZE 0 = map's default chunksize).
``futures``: ``MPIPoolExecutor().map``; under ``python -m mpi4py.futures`` rank 0 runs this
script (the client) and the other ranks are the workers. The number of tasks is the length of
the durations file named by ``MPIBATCH_BENCH_DURATIONS``. Saves ids, draws, start and end
times in task order.
"""

import os
import sys
from functools import partial

import numpy as np
from _skew_task import ENV, peer_task


def main() -> None:
    mode, nprocs, chunksize, seed, out = sys.argv[1:6]
    ntasks = len(np.load(os.environ[ENV]))
    work = partial(peer_task, int(seed))
    kwargs = {"chunksize": int(chunksize)} if int(chunksize) > 0 else {}
    if mode == "pool":
        from multiprocessing import Pool

        with Pool(int(nprocs)) as pool:
            pairs = pool.map(work, range(ntasks), **kwargs)
    else:
        from mpi4py.futures import MPIPoolExecutor

        with MPIPoolExecutor() as pool:
            pairs = list(pool.map(work, range(ntasks), **kwargs))
    ids = np.array([p[0] for p in pairs], dtype=np.int64)
    draws = np.array([p[1] for p in pairs], dtype=np.float64)
    start = np.array([p[2] for p in pairs], dtype=np.float64)
    end = np.array([p[3] for p in pairs], dtype=np.float64)
    np.savez(out, id=ids, draw=draws, start=start, end=end)


if __name__ == "__main__":
    main()
