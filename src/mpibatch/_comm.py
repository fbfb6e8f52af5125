"""Every MPI call mpibatch makes, in one private module.

Written as small functions, root/worker pairs where the two sides differ. All calls
happen on the main thread. Control messages (plans, error records) are small pickled
objects; numeric results always travel as raw byte buffers (``Scatter``/``Gatherv``).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager

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


def helper_threads_ok() -> bool:
    """True if this MPI lets a process run other threads (they never call MPI here)."""
    return MPI.Query_thread() >= MPI.THREAD_FUNNELED


def library_version() -> str:
    # Open MPI ends the string with a NUL, which an HDF5 string attribute refuses
    return MPI.Get_library_version().replace("\x00", "").splitlines()[0].strip()


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


# ---- blocks and reports: rank 0 hands out row ranges, ranks send back filled columns ----
# tags: a block descriptor (int64[2], (-1, -1) = none), a report header (int64[5]),
# its pickled extras (failures, schema; only when flagged) and its raw result bytes.
BLOCK, REPORT, EXTRAS, DATA, STOP = 11, 12, 13, 14, 15
HAS_EXTRAS = 1
_BACKOFF = 0.001  # seconds: longest nap while waiting, so idle ranks leave cores to busy ones


def _probe(comm: MPI.Comm, source: int, tag: int, status: MPI.Status | None = None) -> bool:
    """Iprobe twice: a first miss may be the probe that pulled the message in (MPICH)."""
    return comm.Iprobe(source, tag, status) or comm.Iprobe(source, tag, status)


def nap(delay: float) -> float:
    time.sleep(delay)
    return min(_BACKOFF, delay * 2 + 1e-5)


def send_block_root(comm: MPI.Comm, dest: int, block: tuple[int, int] | None) -> None:
    comm.Send(np.asarray(block if block else (-1, -1), dtype=np.int64), dest=dest, tag=BLOCK)


def send_stop_root(comm: MPI.Comm, dest: int) -> None:
    """Tell a rank to stop after its current task (a stop request, the time limit)."""
    comm.Send(np.zeros(1, dtype=np.int64), dest=dest, tag=STOP)


def stop_waiting_worker(comm: MPI.Comm) -> bool:
    """True (and the message consumed) if rank 0 asked this rank to stop."""
    if not _probe(comm, ROOT, STOP):
        return False
    comm.Recv(np.empty(1, dtype=np.int64), source=ROOT, tag=STOP)
    return True


def block_waiting_worker(comm: MPI.Comm) -> bool:
    return _probe(comm, ROOT, BLOCK)


def recv_block_worker(comm: MPI.Comm) -> tuple[int, int] | None:
    delay = 0.0
    while not _probe(comm, ROOT, BLOCK):
        delay = nap(delay)
    buf = np.empty(2, dtype=np.int64)
    comm.Recv(buf, source=ROOT, tag=BLOCK)
    return None if buf[0] < 0 else (int(buf[0]), int(buf[1]))


def send_report_worker(comm: MPI.Comm, header: list[int], data: np.ndarray, extras) -> MPI.Request:
    """Header and extras now (small); the data without blocking: returns its request."""
    head = np.asarray(header + [HAS_EXTRAS if extras is not None else 0], dtype=np.int64)
    comm.Send(head, dest=ROOT, tag=REPORT)
    if extras is not None:
        comm.send(extras, dest=ROOT, tag=EXTRAS)
    return comm.Isend(data, dest=ROOT, tag=DATA) if data.nbytes else MPI.REQUEST_NULL


def report_waiting_root(comm: MPI.Comm) -> int | None:
    """The rank whose report header is waiting, or None."""
    status = MPI.Status()
    return status.Get_source() if _probe(comm, MPI.ANY_SOURCE, REPORT, status) else None


def recv_report_root(comm: MPI.Comm, source: int, take: Callable[[int], np.ndarray]):
    """Header and extras of ``source``'s report; the data arrives into a buffer later.

    ``take(nbytes)`` gives a byte buffer of at least ``nbytes``. Returns (header, extras,
    buffer, request): test or wait on ``request`` before reading the buffer.
    """
    head = np.empty(5, dtype=np.int64)
    comm.Recv(head, source=source, tag=REPORT)
    extras = comm.recv(source=source, tag=EXTRAS) if head[4] & HAS_EXTRAS else None
    nbytes = int(head[2])  # header: pos, rows, nbytes, failures, flags
    buf = take(nbytes) if nbytes else np.empty(0, dtype=np.uint8)
    req = comm.Irecv(buf[:nbytes], source=source, tag=DATA) if nbytes else MPI.REQUEST_NULL
    return [int(x) for x in head[:4]], extras, buf, req


def done(request: MPI.Request) -> bool:
    return request.Test()


def wait(request: MPI.Request) -> None:
    """Wait for a request without spinning a core."""
    delay = 0.0
    while not request.Test():
        delay = nap(delay)


def barrier(comm: MPI.Comm) -> None:
    """A barrier that naps instead of spinning while others are still busy."""
    wait(comm.Ibarrier())


@contextmanager
def abort_named(where: str, current_task: Callable[[], int | None]):
    """While a run lasts, a task calling ``MPI.COMM_WORLD.Abort`` first says which it was.

    MPICH's own notice names only the rank, and does not always get out before the job
    is torn down. ``MPI.COMM_WORLD`` is swapped for a subclass instance on the same
    communicator whose ``Abort`` writes one line, then aborts; the original is restored.
    """
    real = MPI.COMM_WORLD

    class _World(type(real)):
        def Abort(self, errorcode: int = 0):  # noqa: N802  (mpi4py's name)
            task = current_task()
            what = f"task {task}" if task is not None else "code outside a task"
            sys.stderr.write(
                f"mpibatch: error: {what} on {where} called MPI_Abort({errorcode}); every "
                "rank ends now (results written so far are kept: run again with --resume)\n"
            )
            sys.stderr.flush()
            time.sleep(0.5)  # let the launcher forward the line before the job is torn down
            return real.Abort(errorcode)

    MPI.COMM_WORLD = _World(real)
    try:
        yield
    finally:
        MPI.COMM_WORLD = real


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
