"""Every MPI call mpibatch makes, in one private module.

Written as small functions, root/worker pairs where the two sides differ. All calls
happen on the main thread. Control messages (plans, error records) are small pickled
objects; numeric results always travel as raw byte buffers (``Scatter``/``Gatherv``).
"""

from __future__ import annotations

import os
import sys
import traceback

import numpy as np
from mpi4py import MPI

ROOT = 0


def world(comm: object | None = None) -> MPI.Comm:
    return MPI.COMM_WORLD if comm is None else comm


def host() -> str:
    return MPI.Get_processor_name()


def local_rank(comm: MPI.Comm) -> tuple[int, int]:
    """(rank among the ranks on this node, number of ranks on this node)."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    try:
        return node.Get_rank(), node.Get_size()
    finally:
        node.Free()


def library_version() -> str:
    return MPI.Get_library_version().splitlines()[0].strip()


def agree(comm: MPI.Comm, error: BaseException | None) -> None:
    """Collective: if any rank has an error, every rank raises the lowest rank's error."""
    errors = comm.allgather(error)
    for err in errors:
        if err is not None:
            raise err


def share(comm: MPI.Comm, obj: object = None) -> object:
    """Root sends a small control object (a plan, a decision) to every rank."""
    return comm.bcast(obj, root=ROOT)


def gather_small(comm: MPI.Comm, obj: object) -> list | None:
    """Small control objects to the root (a list there, None elsewhere)."""
    return comm.gather(obj, root=ROOT)


def allgather_small(comm: MPI.Comm, obj: object) -> list:
    return comm.allgather(obj)


def scatter_blocks_root(comm: MPI.Comm, blocks: list[tuple[int, int]]) -> tuple[int, int]:
    send = np.asarray(blocks, dtype=np.int64).reshape(-1, 2)
    recv = np.empty(2, dtype=np.int64)
    comm.Scatter(send, recv, root=ROOT)
    return int(recv[0]), int(recv[1])


def scatter_blocks_worker(comm: MPI.Comm) -> tuple[int, int]:
    recv = np.empty(2, dtype=np.int64)
    comm.Scatter(None, recv, root=ROOT)
    return int(recv[0]), int(recv[1])


def gather_rows_root(comm: MPI.Comm, buffer: np.ndarray, nbytes: list[int]) -> np.ndarray:
    """Receive every rank's round buffer; ``nbytes[r]`` is rank r's buffer size."""
    counts = np.asarray(nbytes, dtype=np.int64)
    displs = np.concatenate(([0], np.cumsum(counts)[:-1]))
    recv = np.empty(int(counts.sum()), dtype=np.uint8)
    comm.Gatherv(buffer, [recv, counts, displs, MPI.BYTE], root=ROOT)
    return recv


def gather_rows_worker(comm: MPI.Comm, buffer: np.ndarray) -> None:
    comm.Gatherv(buffer, None, root=ROOT)


def abort(comm: MPI.Comm | None = None, code: int = 1) -> None:
    """Print the current exception with a ``rank N on HOST`` header and abort every rank."""
    comm = world(comm)
    header = (
        f"mpibatch: unhandled error on rank {comm.Get_rank()} on {host()}; aborting all ranks\n"
    )
    sys.stderr.write(header + traceback.format_exc())
    sys.stderr.flush()
    try:
        comm.Abort(code)
    finally:
        os._exit(code)
