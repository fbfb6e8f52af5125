"""The programs ``benchmarks/shared.py`` compares, and mpibatch's task file for it.

Every system gets the same data (``SHARED_GB`` GiB of float64, made in the source process,
the clock ``t0`` starting once it exists) to every worker, then each worker calls
:func:`arrived`: it writes the time it holds the data (``ready.<worker>``), reads every
page of it, writes its pid, and waits for the parent's ``go`` file (so the parent reads
every worker's PSS while all of them hold the data). Markers go in ``SHARED_DIR``.

    mpiexec -n NP mpibatch run benchmarks/_shared_peer.py --reps NP --out F   (mpibatch)
    mpiexec -n NP python benchmarks/_shared_peer.py bcast | npload             (MPI peers)
    python benchmarks/_shared_peer.py pool NP | joblib NP                      (process pools)
"""

import os
import sys
import time
from pathlib import Path

import numpy as np

FOLDER = Path(os.environ.get("SHARED_DIR", "."))
N = int(float(os.environ.get("SHARED_GB", "0.01")) * (1 << 30)) // 8


def make() -> np.ndarray:
    """The data, in the source process; ``t0`` is written once it exists."""
    data = np.full(N, 1.5)
    _write("t0", repr(time.time()))
    return data


def arrived(worker: int, data: np.ndarray) -> float:
    """Mark the data as held, read all of it, and wait (at most 5 minutes) for ``go``."""
    _write(f"ready.{worker}", repr(time.time()))
    total = float(data.sum())
    _write(f"pid.{worker}", str(os.getpid()))
    end = time.monotonic() + 300
    while not (FOLDER / "go").exists() and time.monotonic() < end:
        time.sleep(0.01)
    return total


def _write(name: str, text: str) -> None:
    """A marker the parent never sees half-written (written aside, then renamed)."""
    (FOLDER / f"tmp-{name}").write_text(text)  # not matched by the parent's pid.* glob
    os.replace(FOLDER / f"tmp-{name}", FOLDER / name)


# ---- mpibatch: this file is the task file ----
def load():
    return {"data": make()}


def setup(ctx):
    return arrived(ctx.rank, ctx.shared["data"])


def task(params, rng, ctx):
    return ctx.state


# ---- the peers ----
def bcast() -> None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    data = comm.bcast(make() if comm.rank == 0 else None, root=0)  # pickled: a copy per rank
    arrived(comm.rank, data)


def npload() -> None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    path = FOLDER / "data.npy"
    if comm.rank == 0:
        data = make()
        np.save(path, data)  # into the page cache
        del data
    comm.Barrier()
    arrived(comm.rank, np.load(path, mmap_mode="r"))


_HELD: dict = {}


def _init(data: np.ndarray) -> None:
    import multiprocessing

    _HELD["data"] = data
    worker = multiprocessing.current_process()._identity[0] - 1
    arrived(worker, data)


def _nothing(_: int) -> int:
    return 0


def pool(n: int) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")  # Python 3.14's default on Linux
    data = make()
    with ctx.Pool(n, initializer=_init, initargs=(data,)) as p:
        p.map(_nothing, range(n))


def _joblib_task(worker: int, data: np.ndarray) -> float:
    return arrived(worker, data)


def joblib_run(n: int) -> None:
    from joblib import Parallel, delayed

    data = make()  # over joblib's max_nbytes (1 MB): dumped once, memory-mapped by workers
    Parallel(n_jobs=n, batch_size=1)(delayed(_joblib_task)(i, data) for i in range(n))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "bcast":
        bcast()
    elif mode == "npload":
        npload()
    elif mode == "pool":
        pool(int(sys.argv[2]))
    elif mode == "joblib":
        joblib_run(int(sys.argv[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
