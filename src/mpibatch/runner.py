"""Running tasks on one rank (rank 0 included): the task function, its stream, its context.

:class:`Runner` runs a block of tasks into filled columns; :class:`TaskThread` runs
them on a helper thread (rank 0, so its main thread can serve the others); plus the
BLAS thread limits and what a rank reports about its cores and libraries. No MPI here:
the dispatch loop hands a rank its rows and takes back filled columns.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ._config import DEFAULTS
from ._dtypes import LossyResult, declarations_of
from ._records import BARE, Buffers, Columns, Packer, declared_schema, infer_schema
from ._stop import Stopper, TaskInterrupted
from .errors import ResultError
from .layout import Status
from .taskfile import wants_context


def _self_comm() -> Any:
    from . import _comm  # only when a context is made outside a run (rerun)

    return _comm.task_comm()


@dataclass
class TaskContext:
    """The optional third argument of a task.

    ``comm`` is the task's own communicator (``MPI.COMM_SELF``): MPI inside a task goes
    there, never on ``MPI.COMM_WORLD``, where every rank runs other tasks.
    """

    task_id: int
    rank: int
    local_rank: int
    size: int
    params: dict
    device: Any = None
    shared: Any = None  # the run's shared inputs: read-only arrays by name (load())
    state: Any = None  # what the task file's setup(ctx) returned on this rank
    comm: Any = field(default_factory=_self_comm)


@dataclass
class TaskFailure:
    task_id: int
    rank: int
    host: str
    type: str
    message: str
    traceback: str


@dataclass
class RowsDone:
    """What a block produced besides its columns: failures, rows run, a fatal result error."""

    failures: list = field(default_factory=list)
    ran: int = 0
    fatal: ResultError | None = None


class RunsBlocks(Protocol):
    """What the dispatch code runs blocks with: a :class:`Runner` (``--isolation off``) or
    the rank's side of its task process (:class:`~mpibatch._taskproc.TaskProcess`)."""

    stopper: Stopper
    buffers: Any  # block buffers are given back to it once sent

    @property
    def packer(self) -> Packer | None: ...

    def run(
        self, ids: range, poll: Callable[[], None] | None = None, poll_every: float = 0.002
    ) -> tuple[Columns, RowsDone]: ...

    def close(self) -> object: ...


class Runner:
    """Runs tasks of one rank into :class:`Columns`; everything the hot loop needs."""

    def __init__(
        self,
        fn: Callable,
        grid,
        streams,
        info: dict,
        clock_offset: float,
        stopper: Stopper | None = None,
        retries: int = 0,
        buffers: Buffers | None = None,
    ) -> None:
        self.fn, self.grid, self.streams = fn, grid, streams
        # block buffers, given back once sent; the engine passes the run's gather budget
        self.buffers = buffers or Buffers(DEFAULTS["gather_mb"] << 20)
        self.rank, self.host = info["rank"], info["host"]
        self.info = info
        self.clock_offset = clock_offset
        self.with_context = wants_context(fn)
        self.comm = info.get("comm")  # ctx.comm: the engine passes MPI.COMM_SELF
        self.packer: Packer | None = None  # set by the first task that succeeds here
        self.declare(None)
        self.stopper = stopper or Stopper(0.0, None, f"rank {self.rank} on {self.host}")
        self.retries = retries

    def declare(self, spec: object) -> None:
        """The results' declared types: ``spec`` (``mpibatch.run(results=...)``) or the
        task file's ``results = {...}``; one that gives every key's shape is the schema."""
        self.declared = declarations_of(self.fn, spec)
        schema = declared_schema(self.declared)
        self.packer = Packer(schema, -1) if schema is not None else None

    def close(self) -> object:
        """Nothing to end: the tasks ran in this process (``--isolation off``); the rank
        runs ``teardown(state)`` itself ("not run" here)."""
        return "not run"

    def _call(self, i: int, params: dict):
        rng = self.streams.for_task(i)
        if self.with_context:
            return self.fn(params, rng, self._context(i, params))
        return self.fn(params, rng)

    def _retry(self, i: int, params: dict, exc: BaseException):
        """Run a failed task again (same stream) up to ``retries`` times.

        Returns (True, its result), (False, its failure), or (None, None) if a stop's
        grace period ran out during a retry (the task stays pending).
        """
        for _ in range(self.retries):
            try:
                self.stopper.begin(i)
                return True, self._call(i, params)
            except TaskInterrupted:
                return None, None
            except BaseException as again:  # noqa: BLE001  (anything a task raises fails it)
                exc = again
            finally:
                self.stopper.end()
        return False, self._failure(i, exc)

    def _context(self, i: int, params: dict) -> TaskContext:
        info = self.info
        return TaskContext(
            i,
            info["rank"],
            info["local_rank"],
            info["size"],
            params,
            info.get("device"),
            shared=info.get("shared"),
            state=info.get("state"),
            comm=self.comm,
        )

    def _failure(self, i: int, exc: BaseException) -> TaskFailure:
        tb = getattr(exc, "report", None)  # a command's own account (its stderr tail)
        if not isinstance(tb, str):
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        head = f"rank {self.rank} on {self.host}, task {i}:\n"
        return TaskFailure(i, self.rank, self.host, type(exc).__name__, _first_line(exc), head + tb)

    def run(
        self, ids: range, poll: Callable[[], None] | None = None, poll_every: float = 0.002
    ) -> tuple[Columns, RowsDone]:
        """Run task ``ids`` (consecutive) and return their filled columns.

        The first task that succeeds on this rank sets the rank's schema. A result
        that does not fit it stops the block: ``done.fatal`` says why, that row stays
        pending, the rows before it are valid. ``poll`` (rank 0: serve other ranks)
        is called between tasks at most every ``poll_every`` seconds. Bare float results
        (the commonest tiny task) skip the packer and go through a plain list.
        """
        done, starts, ends, floats = RowsDone(), [], [], []  # type: ignore[var-annotated]
        cols = Columns.reusing(self.packer.schema if self.packer else (), len(ids), self.buffers)
        cols, fast = self._loop(ids, cols, done, (starts, ends, floats), poll, poll_every)
        failed = [f.task_id - ids.start for f in done.failures]
        _finish(cols, starts, ends, floats if fast else None, self.clock_offset, failed)
        cols = cols.seal(self.buffers)  # ragged and string bytes join the buffer
        done.ran = len(starts)
        return cols, done

    def _loop(
        self, ids: range, cols: Columns, done: RowsDone, lists: tuple, poll, poll_every: float
    ) -> tuple[Columns, bool]:
        """The hot loop of :meth:`run`: fills ``lists`` (starts, ends, floats) and ``cols``."""
        starts, ends, floats = lists
        fast = self.packer is not None and self.packer.scalar_float
        fn, ctx, for_task, stopper = self.fn, self.with_context, self.streams.for_task, self.stopper
        clock, timed = time.perf_counter, stopper.task_timeout is not None
        next_poll = clock() + poll_every if poll else float("inf")
        for row, (i, params) in enumerate(
            zip(ids, self.grid.iter_params(ids.start, ids.stop), strict=True)
        ):
            if stopper.requested:
                break
            rng = for_task(i)
            t = clock()
            stopper.task_id, stopper.task_started = i, t  # begin() without its time-out
            try:
                if timed:
                    stopper.begin(i)
                out = fn(params, rng, self._context(i, params)) if ctx else fn(params, rng)
            except TaskInterrupted:
                stopper.end()
                break  # the stop's grace period ran out: this task stays pending
            except BaseException as exc:  # noqa: BLE001  (sys.exit, KeyboardInterrupt... fail it)
                stopper.end()
                ok, out = self._retry(i, params, exc)
                if ok is None:
                    break  # interrupted during a retry: pending
                if not ok:
                    ends.append(clock())
                    starts.append(t)
                    floats.append(_NAN)
                    done.failures.append(out)
                    if ends[-1] >= next_poll:
                        poll()
                        next_poll = clock() + poll_every
                    continue
            stopper.end()
            ends.append(clock())
            starts.append(t)
            if fast and type(out) in _FLOATS:
                floats.append(out)
            else:
                cols = self._put(cols, row, out, i, done, floats)
                if done.fatal is not None:
                    starts.pop()
                    ends.pop()
                    break
                fast = self.packer is not None and self.packer.scalar_float
            if ends[-1] >= next_poll:
                poll()
                next_poll = clock() + poll_every
        return cols, fast

    def _put(self, cols: Columns, row: int, out, i: int, done: RowsDone, floats: list) -> Columns:
        """Check and store one result (setting the schema on the first); returns the columns."""
        try:
            if self.packer is None:
                self.packer = Packer(infer_schema(out, i, self.declared), i)
                self.buffers.give(cols.storage)  # the rows so far: failures, no results
                cols = Columns.reusing(self.packer.schema, cols.rows, self.buffers)
            self.packer.put(cols, row, out, i)
        except LossyResult as exc:  # this value does not fit its result: this task fails
            done.failures.append(self._failure(i, exc))
            floats.append(_NAN)
            return cols
        except ResultError as exc:
            done.fatal = exc
            return cols
        floats.append(float(cols.results[BARE][row]) if self.packer.scalar_float else 0.0)
        return cols


class TaskThread:
    """Runs a :class:`Runner`'s blocks on one helper thread; the caller's thread stays free.

    Rank 0 uses it so that its main thread (where every MPI call happens) can answer the
    other ranks while rank 0's own tasks run. One long-lived daemon thread runs every
    block, so thread-local state in a task stays put between blocks, and a task that
    never returns cannot keep the process from exiting. It makes no MPI calls.
    """

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="mpibatch-tasks")
        self.thread.start()

    def submit(self, ids: range) -> Future:
        """Run tasks ``ids`` on the thread; the future's result is ``Runner.run``'s."""
        future: Future = Future()
        self.jobs.put((ids, future))
        return future

    def _loop(self) -> None:
        while (job := self.jobs.get()) is not None:
            ids, future = job
            try:
                future.set_result(self.runner.run(ids))
            except BaseException as exc:  # handed to the main thread, which re-raises it
                future.set_exception(exc)

    def close(self) -> None:
        """Let the thread end once it is idle (it is not waited for)."""
        self.jobs.put(None)


def _finish(
    cols: Columns, starts: list, ends: list, floats: list | None, offset: float, failed: list
) -> None:
    """Move the loop's plain lists into the columns in a few vectorized steps."""
    ran = len(starts)
    t = np.asarray(starts, dtype=np.float64)
    cols.elapsed[:ran] = np.asarray(ends, dtype=np.float64) - t
    cols.start[:ran] = t + offset
    cols.status[:ran] = Status.DONE
    cols.status[failed] = Status.FAILED
    if floats is not None:
        cols.results[BARE][:ran] = floats[:ran]
    cols.clear_unfinished()


_NAN = float("nan")


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message ("" if none, or if str() itself fails)."""
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001  (a broken __str__ must not end the rank)
        return f"<str() of the {type(exc).__name__} failed>"
    return text.splitlines()[0] if text.strip() else ""


_FLOATS = frozenset((float, np.float64))


def blas_limits(threads: int):
    """Context manager limiting BLAS/OpenMP pools to ``threads``; restores them on exit."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def cores() -> str:
    """The CPU cores this process may run on, as ranges (``0-3,8``); "" if unknown."""
    try:
        ids = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return ""
    runs, start = [], ids[0] if ids else None
    for a, b in zip(ids, ids[1:] + [None], strict=True):
        if b != a + 1:
            runs.append(f"{start}-{a}" if a != start else str(a))
            start = b
    return ",".join(runs)


def blas_info() -> list[dict]:
    """The BLAS/OpenMP libraries loaded in this process and their thread counts."""
    from threadpoolctl import threadpool_info

    keys = ("user_api", "internal_api", "version", "num_threads", "filepath")
    return [{k: d.get(k) for k in keys} for d in threadpool_info()]
