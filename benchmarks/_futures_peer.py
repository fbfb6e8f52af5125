"""mpi4py.futures peer for the overhead benchmark (users' way: map a per-task function).

Run as ``mpiexec -n NP python -m mpi4py.futures benchmarks/_futures_peer.py SEED NTASKS OUT.npy``.
Under ``python -m mpi4py.futures`` rank 0 runs this script (the client/manager) and the other
NP-1 ranks are the pool's workers. Each task evaluates the numpy expression
``Generator(PCG64(seed).jumped(i)).normal()``; results are saved as a .npy in task order.
"""

import sys
from functools import partial

import numpy as np
from _streams import numpy_draw
from mpi4py.futures import MPIPoolExecutor


def main() -> None:
    seed, ntasks, out_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    with MPIPoolExecutor() as pool:
        chunksize = max(1, ntasks // (pool.num_workers * 8))
        values = np.fromiter(
            pool.map(partial(numpy_draw, seed), range(ntasks), chunksize=chunksize),
            dtype=np.float64,
            count=ntasks,
        )
    np.save(out_path, values)


if __name__ == "__main__":
    main()
