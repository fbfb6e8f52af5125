"""Hand-written mpi4py program: the practical limit for the overhead benchmark.

Run as ``mpiexec -n NP python benchmarks/_handwritten_mpi.py SEED NTASKS OUT.h5``.
Rank 0 scatters contiguous block bounds (``Scatter`` of an int64 array), every rank computes its
block with the cheap stream derivation, rank 0 ``Gatherv``s the float64 results into one array
and writes it as the HDF5 dataset ``/value``.
"""

import sys

import numpy as np
from _streams import cheap_block
from mpi4py import MPI


def block_bounds(ntasks: int, nranks: int) -> np.ndarray:
    """(nranks, 2) int64 array of [start, count], contiguous and as even as possible."""
    counts = np.full(nranks, ntasks // nranks, dtype=np.int64)
    counts[: ntasks % nranks] += 1
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    return np.stack([starts, counts], axis=1)


def main() -> None:
    seed, ntasks, out_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    bounds = block_bounds(ntasks, size) if rank == 0 else None
    mine = np.empty(2, dtype=np.int64)
    comm.Scatter(bounds, mine, root=0)
    values = cheap_block(seed, int(mine[0]), int(mine[1]))
    if rank == 0:
        result = np.empty(ntasks, dtype=np.float64)
        counts, displs = bounds[:, 1], bounds[:, 0]
        comm.Gatherv(values, [result, counts, displs, MPI.DOUBLE], root=0)
        import h5py

        with h5py.File(out_path, "w") as f:
            f.create_dataset("value", data=result)
    else:
        comm.Gatherv(values, None, root=0)


if __name__ == "__main__":
    main()
