"""Every MPI call mpibatch makes, in one private module.

A :class:`Transport` carries a run's messages over one communicator; a few functions
ask MPI about the process (its host, its node) or end the job. All calls happen on the
main thread. Control messages (plans, error records, a report's failures) are small
pickled objects; numeric results always travel as raw byte buffers, sent and received
without blocking (``Isend``/``Irecv``) so rank 0 stores one report while others arrive.
"""

from __future__ import annotations

import array
import fcntl
import os
import sys
import termios
import time
import traceback
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
from mpi4py import MPI

from ._records import Report

ROOT = 0
T = TypeVar("T")


def world(comm: MPI.Comm | None = None) -> MPI.Comm:
    return MPI.COMM_WORLD if comm is None else comm


def world_size() -> int:
    """The size of MPI's world (not of the communicator a run was given)."""
    return MPI.COMM_WORLD.Get_size()


def host() -> str:
    return MPI.Get_processor_name()


def local_rank(comm: MPI.Comm) -> tuple[int, int]:
    """(rank among the ranks on this node, number of ranks on this node)."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    try:
        return node.Get_rank(), node.Get_size()
    finally:
        node.Free()


def hosts(comm: MPI.Comm) -> list[str]:
    """Collective: every rank's host name, by rank."""
    return comm.allgather(host())


def split(comm: MPI.Comm, color: int | None) -> MPI.Comm | None:
    """Collective: the ranks of one ``color`` (ordered by rank); None for color None."""
    sub = comm.Split(MPI.UNDEFINED if color is None else color, key=comm.Get_rank())
    return None if sub == MPI.COMM_NULL else sub


def free(comm: MPI.Comm | None) -> None:
    if comm is not None:
        comm.Free()


def helper_threads_ok() -> bool:
    """True if this MPI lets a process run other threads (they never call MPI here)."""
    return MPI.Query_thread() >= MPI.THREAD_FUNNELED


def library_version() -> str:
    # Open MPI ends the string with a NUL, which an HDF5 string attribute refuses
    return MPI.Get_library_version().replace("\x00", "").splitlines()[0].strip()


def agree(comm: MPI.Comm, error: BaseException | None) -> None:
    """Collective: if any rank has an error, every rank raises the lowest rank's error."""
    for err in comm.allgather(error):
        if err is not None:
            raise err


def agreed(comm: MPI.Comm, step: Callable[[], T]) -> T:
    """Collective: ``step()`` on every rank; a MpibatchError anywhere is raised on every rank.

    The ranks meet in a napping barrier first, so those done early leave the cores to a
    long step elsewhere (a big plan, ``load()``, ``setup()``) instead of spinning.
    """
    from .errors import MpibatchError

    value, error = None, None
    try:
        value = step()
    except MpibatchError as exc:
        error = exc
    barrier(comm)
    agree(comm, error)
    return value  # type: ignore[return-value]  # set: no rank raised


def barrier(comm: MPI.Comm) -> None:
    """Collective: wait for every rank, napping instead of spinning."""
    request, delay = comm.Ibarrier(), 0.0
    while not request.Test():
        delay = nap(delay)


def share(comm: MPI.Comm, obj: object = None) -> object:
    """Collective: rank 0 sends a small control object (a plan, a decision) to every rank."""
    return comm.bcast(obj, root=ROOT)


# ---- blocks and reports: rank 0 hands out row ranges, ranks send back filled columns ----
# tags: a block descriptor (int64[2], (-1, -1) = none), a report header (int64[5]: pos,
# rows, nbytes, failures, has control), its pickled control part and its raw result bytes.
BLOCK, REPORT, CONTROL, DATA, STOP = 11, 12, 13, 14, 15
PARTS = 16  # a leader's bundle: int64[n, 6] (world rank, pos, rows, nbytes, control, laid)
HAS_CONTROL, BUNDLE = 1, 2
_BACKOFF = 0.001  # seconds: longest nap while waiting, so idle ranks leave cores to busy ones
_EMPTY = np.empty(0, dtype=np.uint8)


def nap(delay: float, longest: float = _BACKOFF) -> float:
    """Sleep ``delay`` seconds; returns the next, longer delay (up to ``longest``)."""
    time.sleep(delay)
    return min(longest, delay * 2 + 1e-5)


class Transport:
    """Every message of a run, over one communicator: collectives, blocks and reports.

    Rank 0 hands out blocks (``send_block``, ``send_stop``) and takes reports
    (``report_waiting``, ``recv_report``); any other rank takes blocks (``block_waiting``,
    ``recv_block``, ``stop_waiting``) and sends reports (``send_report``). A report is a
    small header, its control part pickled only when it has one (failures, a fatal
    error, a stop, the schema) and its raw result bytes, sent without blocking.
    """

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._block = np.empty(2, dtype=np.int64)  # Send/Recv block: reused
        self._stop = np.zeros(1, dtype=np.int64)
        self._head = np.empty(5, dtype=np.int64)

    # ---- collectives (every rank calls them) ----
    def agree(self, error: BaseException | None) -> None:
        """If any rank has an error, every rank raises the lowest rank's error."""
        agree(self.comm, error)

    def share(self, obj: object = None) -> object:
        """Rank 0 sends a small control object (a plan, a decision) to every rank."""
        return share(self.comm, obj)

    def gather_small(self, obj: object) -> list | None:
        """Small control objects to rank 0 (a list there, None elsewhere)."""
        return self.comm.gather(obj, root=ROOT)

    def gather_int(self, value: int) -> np.ndarray | None:
        """One integer per rank to rank 0 (an int64 array there, None elsewhere), napping."""
        send = np.array([value], dtype=np.int64)
        recv = np.empty(self.size, dtype=np.int64) if self.rank == ROOT else None
        self.wait(self.comm.Igather(send, recv, root=ROOT))
        return recv

    def barrier(self) -> None:
        """A barrier that naps instead of spinning while others are still busy."""
        self.wait(self.comm.Ibarrier())

    # ---- requests and waiting ----
    def done(self, request: MPI.Request) -> bool:
        return request.Test()

    def wait(self, request: MPI.Request) -> None:
        """Wait for a request without spinning a core."""
        delay = 0.0
        while not request.Test():
            delay = nap(delay)

    def idle(self, delay: float, longest: float = _BACKOFF) -> float:
        """Nap while nothing is waiting (see :func:`nap`); returns the next delay."""
        return nap(delay, longest)

    def _probe(self, source: int, tag: int, status: MPI.Status | None = None) -> bool:
        """Iprobe twice: a first miss may be the probe that pulled the message in (MPICH)."""
        comm = self.comm
        return comm.Iprobe(source, tag, status) or comm.Iprobe(source, tag, status)

    # ---- rank 0's side ----
    def send_block(self, dest: int, block: tuple[int, int] | list | None) -> None:
        """A block, or a node leader's grant: a list of blocks (one message either way)."""
        if isinstance(block, list):
            self.comm.Send(np.array(block, dtype=np.int64).ravel(), dest=dest, tag=BLOCK)
            return
        buf = self._block
        buf[0], buf[1] = block if block else (-1, -1)
        self.comm.Send(buf, dest=dest, tag=BLOCK)

    def send_stop(self, dest: int) -> None:
        """Tell a rank to stop after its current task (a stop request, the time limit)."""
        self.comm.Send(self._stop, dest=dest, tag=STOP)

    def report_waiting(self) -> int | None:
        """The rank whose report is waiting, or None."""
        status = MPI.Status()
        return status.Get_source() if self._probe(MPI.ANY_SOURCE, REPORT, status) else None

    def recv_report(
        self, source: int, take: Callable[[int], np.ndarray]
    ) -> tuple[Report, np.ndarray, MPI.Request]:
        """``source``'s report; its data arrives into a buffer later.

        ``take(nbytes)`` gives a byte buffer of at least ``nbytes``. Returns (report,
        buffer, request): test or wait on ``request`` before reading the buffer.
        """
        head, comm = self._head, self.comm
        comm.Recv(head, source=source, tag=REPORT)
        pos, rows, nbytes, _, flags = head.tolist()
        report = Report(pos, rows, nbytes)
        if flags & BUNDLE:
            report = self._recv_parts(source, pos, rows, nbytes, flags)
        elif flags & HAS_CONTROL:
            report.failures, report.fatal, report.stop, report.schema, report.schema_task = (
                comm.recv(source=source, tag=CONTROL)
            )
        buf = take(nbytes) if nbytes else _EMPTY
        req = comm.Irecv(buf[:nbytes], source=source, tag=DATA) if nbytes else MPI.REQUEST_NULL
        return report, buf, req

    def _recv_parts(self, source: int, grants: int, n: int, nbytes: int, flags: int) -> Report:
        """A leader's bundle: its table of parts, then the control parts of those that have one."""
        table = np.empty((n, 6), dtype=np.int64)
        self.comm.Recv(table, source=source, tag=PARTS)
        stop, fatal, where, controls = (None, None, -1, [])
        if flags & HAS_CONTROL:
            stop, fatal, where, controls = self.comm.recv(source=source, tag=CONTROL)
        parts, it = [], iter(controls)
        for origin, pos, rows, size, control, laid in table.tolist():
            part = Report(pos, rows, size)
            if control:
                part.failures, part.fatal, part.stop, part.schema, part.schema_task = next(it)
            parts.append((origin, part, bool(laid)))
        bundle = Report(-1, sum(p.rows for _, p, _ in parts), nbytes, parts=parts, grants=grants)
        bundle.where = where
        bundle.stop = stop or next((p.stop for _, p, _ in parts if p.stop), None)
        bundle.fatal = fatal or next((p.fatal for _, p, _ in parts if p.fatal), None)
        return bundle

    # ---- a node leader's side, toward rank 0 ----
    def recv_grant(self) -> list[tuple[int, int]]:
        """Rank 0's answer to a leader: a list of blocks, empty for none."""
        status, delay = MPI.Status(), 0.0
        while not self._probe(ROOT, BLOCK, status):
            delay = nap(delay)
        buf = np.empty(status.Get_count(MPI.INT64_T), dtype=np.int64)
        self.comm.Recv(buf, source=ROOT, tag=BLOCK)
        pairs = buf.reshape(-1, 2).tolist()
        return [(a, b) for a, b in pairs if a >= 0]

    def send_bundle(self, grants: int, parts: list, data: np.ndarray, news: tuple) -> MPI.Request:
        """Many reports as one: ``parts`` is [(world rank, report, laid out by its schema)].

        Their data lie one after another in ``data``.

        ``grants``: how many of rank 0's grants this completes; ``news``: (a stop, a fatal
        error, the rank it came from) seen on this node, so rank 0 acts on them at once.
        """
        rows = [(o, r.pos, r.rows, r.nbytes, r.has_control(), laid) for o, r, laid in parts]
        table = np.array(rows, dtype=np.int64).reshape(-1, 6)
        controls = [
            (r.failures, r.fatal, r.stop, r.schema, r.schema_task)
            for _, r, _ in parts
            if r.has_control()
        ]
        control = bool(controls) or news[0] is not None or news[1] is not None
        head = self._head
        head[:] = (grants, len(parts), data.nbytes, 0, BUNDLE | (HAS_CONTROL if control else 0))
        comm = self.comm
        comm.Send(head, dest=ROOT, tag=REPORT)
        comm.Send(table, dest=ROOT, tag=PARTS)
        if control:
            comm.send((*news, controls), dest=ROOT, tag=CONTROL)
        return comm.Isend(data, dest=ROOT, tag=DATA) if data.nbytes else MPI.REQUEST_NULL

    # ---- every other rank's side ----
    def stop_waiting(self) -> bool:
        """True (and the message consumed) if rank 0 asked this rank to stop."""
        if not self._probe(ROOT, STOP):
            return False
        self.comm.Recv(self._stop, source=ROOT, tag=STOP)
        return True

    def block_waiting(self) -> bool:
        return self._probe(ROOT, BLOCK)

    def recv_block(self) -> tuple[int, int] | None:
        delay = 0.0
        while not self._probe(ROOT, BLOCK):
            delay = nap(delay)
        buf = self._block
        self.comm.Recv(buf, source=ROOT, tag=BLOCK)
        return None if buf[0] < 0 else (int(buf[0]), int(buf[1]))

    def send_report(self, report: Report, data: np.ndarray) -> MPI.Request:
        """Header and control part now (small); the data without blocking: its request."""
        control = report.has_control()
        head = self._head
        head[:] = (report.pos, report.rows, report.nbytes, len(report.failures), control)
        comm = self.comm
        comm.Send(head, dest=ROOT, tag=REPORT)
        if control:
            parts = (report.failures, report.fatal, report.stop, report.schema)
            comm.send((*parts, report.schema_task), dest=ROOT, tag=CONTROL)
        return comm.Isend(data, dest=ROOT, tag=DATA) if data.nbytes else MPI.REQUEST_NULL


class WorldInTask(RuntimeError):
    """A task called MPI on ``MPI.COMM_WORLD``; the task fails instead of hanging the run."""


# what a task may not call on MPI.COMM_WORLD: collectives (every rank runs other tasks,
# so they never meet) and messages (they would mix with mpibatch's own on that communicator)
_WORLD_CALLS = tuple(
    name
    for name in (
        "Barrier Ibarrier barrier Bcast Ibcast bcast Allreduce Iallreduce allreduce Reduce "
        "Ireduce reduce Gather Igather Gatherv gather Scatter Iscatter Scatterv scatter "
        "Allgather Iallgather Allgatherv allgather Alltoall Ialltoall Alltoallv alltoall "
        "Reduce_scatter Scan scan Exscan exscan Send Ssend Isend Issend send ssend isend "
        "issend Recv Irecv recv irecv Sendrecv sendrecv Probe Iprobe probe iprobe Mprobe "
        "Improbe mprobe improbe Dup Idup Split Split_type Create Create_group"
    ).split()
    if hasattr(MPI.Intracomm, name)
)


def task_comm() -> MPI.Comm:
    """The communicator a task gets as ``ctx.comm``: its own process (``MPI.COMM_SELF``)."""
    return MPI.COMM_SELF


def _refused(name: str, current_task: Callable[[], int | None], real: MPI.Comm) -> Callable:
    def call(self, *args, **kwargs):
        task = current_task()
        if task is not None:
            raise WorldInTask(
                f"task {task} called MPI.COMM_WORLD.{name}(); tasks must not call collectives "
                "or send messages on MPI.COMM_WORLD: every rank runs different tasks and "
                "mpibatch's own messages use it; use ctx.comm (MPI.COMM_SELF) in a task"
            )
        return getattr(real, name)(*args, **kwargs)

    call.__name__ = name
    return call


@contextmanager
def guard_world(where: str, current_task: Callable[[], int | None]):
    """While a run lasts, ``MPI.COMM_WORLD`` refuses tasks' collectives and names aborts.

    ``MPI.COMM_WORLD`` is swapped for a subclass instance on the same communicator (the
    original is restored after): inside a task (``current_task()`` is not None) its
    collectives and messages raise :class:`WorldInTask`, which fails the task, where
    they would hang the run; its ``Abort`` first says which task called it (MPICH's own
    notice names only the rank, and does not always get out before the job is torn
    down). mpibatch's own calls use the communicator it was given, never this one. A
    task file that kept ``MPI.COMM_WORLD`` in a variable when imported bypasses this.
    """
    real = MPI.COMM_WORLD

    def abort(self, errorcode: int = 0):
        task = current_task()
        what = f"task {task}" if task is not None else "code outside a task"
        sys.stderr.write(
            f"mpibatch: error: {what} on {where} called MPI_Abort({errorcode}); every "
            "rank ends now (results written so far are kept: run again with --resume)\n"
        )
        sys.stderr.flush()
        time.sleep(0.5)  # let the launcher forward the line before the job is torn down
        return real.Abort(errorcode)

    methods = {name: _refused(name, current_task, real) for name in _WORLD_CALLS}
    world_type = type("World", (type(real),), {**methods, "Abort": abort})
    MPI.COMM_WORLD = world_type(real)  # type: ignore[misc]
    try:
        yield
    finally:
        MPI.COMM_WORLD = real  # type: ignore[misc]


BUG = 17  # tag of abort's roll call: one message from each rank that is ending on an error
_ROLL_CALL_SECONDS = 2.0  # how long a rank ending on an error waits for the others to say so


def in_task_process(current_task: Callable[[], int | None]) -> None:
    """In a task process (forked from its rank): ``MPI.COMM_WORLD`` refuses every call.

    The child shares its rank's MPI state but must never use it: a collective or message
    fails the task (:class:`WorldInTask`), and ``Abort`` ends this task process alone,
    which fails the task with its exit status.
    """
    real = MPI.COMM_WORLD

    def abort(self, errorcode: int = 0):
        sys.stderr.write(
            f"mpibatch: task {current_task()} called MPI_Abort({errorcode}): its task process "
            "ends (the task fails; the run goes on)\n"
        )
        sys.stderr.flush()
        os._exit(errorcode & 0xFF or 1)

    def refused(name: str) -> Callable:
        def call(self, *args, **kwargs):
            raise WorldInTask(
                f"task {current_task()} called MPI.COMM_WORLD.{name}(); tasks must not call "
                "collectives or send messages on MPI.COMM_WORLD: use ctx.comm (MPI.COMM_SELF)"
            )

        return call

    methods = {name: refused(name) for name in _WORLD_CALLS}
    MPI.COMM_WORLD = type("World", (type(real),), {**methods, "Abort": abort})(real)  # type: ignore[misc]


def abort(comm: MPI.Comm | None = None, code: int = 70) -> None:
    """Call while handling an exception: end every rank with exit status ``code`` (70: a
    bug), printed with a ``rank N on HOST`` header; in one process, raise it as is.

    One rank raising alone would leave the others waiting forever: it aborts them all
    with ``code``, which mpiexec exits with. srun kills them instead (137, which beats
    any exit code), so there ranks all ending on an error each exit ``code`` themselves
    (:func:`_everyone_failed`); a bug on some ranks only still ends as 137 under srun.
    """
    comm = world(comm)
    if comm.Get_size() == 1:
        raise  # the exception being handled
    from . import __version__

    rank = comm.Get_rank()
    lines = [f"mpibatch: unhandled error on rank {rank} on {host()}; aborting all ranks\n"]
    lines.append(traceback.format_exc())
    if not isinstance(sys.exc_info()[1], KeyboardInterrupt):
        lines.append(
            f"mpibatch: internal error on rank {rank}: a bug in mpibatch {__version__} "
            f"(exit {code}); please report it with the traceback above and the command you ran\n"
        )
    try:
        sys.stdout.flush()
        sys.stderr.write("".join(lines))
        sys.stderr.flush()
        if not (_srun_launched() and _everyone_failed(comm, _ROLL_CALL_SECONDS)):
            _wait_read(sys.stderr, 0.5)  # the launcher forwards it before the teardown
            comm.Abort(code)
    finally:
        os._exit(code)


def _wait_read(stream, seconds: float) -> None:
    """Wait (up to ``seconds``) until the reader of the pipe ``stream`` writes to (the
    launcher's) has taken everything in it, or at once if it is not a pipe."""
    deadline, left = time.monotonic() + seconds, array.array("i", [0])
    try:
        while fcntl.ioctl(stream.fileno(), termios.FIONREAD, left) == 0 and left[0]:
            if time.monotonic() > deadline:
                return
            time.sleep(0.001)
    except (OSError, ValueError, AttributeError):  # not a pipe, or no file behind it
        return


def _srun_launched(env: Mapping[str, str] | None = None) -> bool:
    """True in a rank that srun started itself (its PMI server), not mpiexec in a job."""
    env = os.environ if env is None else env
    return "SLURM_STEP_ID" in env and "MPI_LOCALNRANKS" not in env  # the latter: Hydra's


def _everyone_failed(comm: MPI.Comm, seconds: float) -> bool:
    """True once every other rank said it is ending on an error too, within ``seconds``:
    one message each way on abort's own tag, which no collective or run message uses.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    mark, status = np.zeros(1, dtype=np.int64), MPI.Status()
    try:
        sent = [comm.Isend(mark, dest=r, tag=BUG) for r in range(size) if r != rank]
        heard: set[int] = set()
        deadline, delay = time.monotonic() + seconds, 0.0
        while time.monotonic() < deadline:
            if len(heard) == size - 1 and MPI.Request.Testall(sent):
                return True  # and this rank's messages are out: no other rank waits on it
            if comm.Iprobe(MPI.ANY_SOURCE, BUG, status):
                comm.Recv(np.empty(1, dtype=np.int64), source=status.Get_source(), tag=BUG)
                heard.add(status.Get_source())
            else:
                delay = nap(delay)
        return False
    except Exception:  # noqa: BLE001  (MPI itself may be the broken part: abort then)
        return False
