"""Task processes: a rank's tasks run in a child process, so nothing they do ends the rank.

The rank (the process that holds MPI and, on rank 0, the file) forks one task process
when its first block arrives; that child runs the rank's blocks one after another with
the rank's own :class:`~mpibatch.runner.Runner` (forked, so the task function, the
grid, the streams, ``ctx.shared``'s mapped window and ``setup()``'s state are there as
they were; ``docs/task-processes.md`` says why fork, and what it costs).

Rows cross over per task, not per block, with no message per task: the block's columns
live in an :class:`Arena`, shared memory the rank maps too, and after each task the child
writes that row's start, time and status there and bumps a counter. A child that dies
mid-block (a segfault, ``os._exit``, the OOM killer) loses only the task in flight: the
rank records it as failed with the signal or exit status and the tail of the child's
stderr, forks a fresh child, and the block goes on from the next task. (A block with
ragged or string results keeps its values in the child until the block ends: such a
block's finished rows are run again, identically, by the fresh child.)

Messages (a :func:`multiprocessing.Pipe`, pickled, rare): the rank sends ``run``; the
child sends a failure as it happens, asks for memory when its columns change, and says
``done``. A stop reaches the child as a flag in the arena's header; past the grace period
the rank ends the child (its task stays pending). The child's side is _taskchild.py.
"""

from __future__ import annotations

import gc
import multiprocessing.connection as mpc
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import _hygiene
from ._arena import COUNT, STOP, Arena, ArenaBuffers
from ._records import Columns, Packer, columns_bytes
from ._stop import Stopper
from ._taskchild import child
from .errors import ResultError
from .layout import Status
from .runner import RowsDone, Runner, TaskFailure

_KILL_AFTER = 5.0  # seconds a child that closed its pipe gets to be reaped before SIGKILL
_OVERDUE = 1.0  # seconds past --task-timeout before the rank kills a task's process
_WORKER_POLL = 0.01  # seconds between a worker rank's looks at rank 0 while its block runs
_TAIL_BYTES = 4096  # of a child's stderr kept, for a failure's account
_TEARDOWN_WAIT = 600.0  # seconds a task process's teardown(state) may take


@dataclass
class _Block:
    """The block the task process is running, as the rank knows it."""

    ids: range
    at: int | None  # its columns' arena offset (None: the child keeps them)
    nbytes: int
    schema: tuple
    failures: dict
    deaths: set = field(default_factory=set)  # rows at which it died between tasks
    skip: frozenset = frozenset()  # rows the child does not run (failed already)
    sealed: tuple | None = None  # (offset, bytes, old offset): where the sealed block goes
    result: tuple | None = None  # (Columns, RowsDone) once done


class TaskProcess:
    """The rank's side of its task process; runs blocks as :meth:`Runner.run` does."""

    def __init__(
        self,
        runner: Runner,
        arena_bytes: int,
        in_child: Callable[[Callable], None],
        memory: int | None = None,
        teardown: Callable | None = None,
    ) -> None:
        """``in_child(current_task)`` runs first in each task process (the MPI guard);
        ``memory``: the bytes each task process may grow by (``--task-memory``);
        ``teardown``: the task file's ``teardown(state)``, run in the last task process."""
        self.runner, self.in_child, self.memory = runner, in_child, memory
        self.teardown = teardown
        self.rss_limit_kib = 0  # the resident private memory at which the child is killed
        self.rss_checked = 0.0
        self.stopper: Stopper = runner.stopper  # the rank's: its signals, its stop
        self.arena = Arena(arena_bytes)
        self.buffers = ArenaBuffers(self.arena, runner.buffers)
        self.pid = 0
        self.status: int | None = None  # the ended child's wait status, once known
        self.conn: mpc.Connection | None = None
        self.block: _Block | None = None
        self.starts = 0  # task processes started (setup() ran in each; recorded)
        self.stopped_child = False  # the child was told of the rank's stop
        self.killed_for = ""  # why the rank killed the task process, if it did
        self.global_random = False  # its tasks drew from numpy's or Python's global state
        self.stderr = _hygiene.StderrTail(_TAIL_BYTES)  # the children's, kept for failures

    @property
    def packer(self) -> Packer | None:
        return self.runner.packer

    # ---- the blocking form (ranks other than 0) ----
    def run(
        self, ids: range, poll: Callable[[], None] | None = None, poll_every: float = 0.002
    ) -> tuple[Columns, RowsDone]:
        """Run block ``ids``, calling ``poll`` (stops from rank 0, sends) meanwhile, at
        least every 10 ms: this rank serves no one, and its wake-ups take CPU from its
        task process."""
        self.submit(ids)
        while not self.finished(max(poll_every, _WORKER_POLL)):
            if poll is not None:
                poll()
        return self.take()

    # ---- the non-blocking form (rank 0 serves the others meanwhile) ----
    def submit(self, ids: range) -> None:
        schema = self.packer.schema if self.packer is not None else ()
        nbytes = columns_bytes(schema, len(ids))
        at = self.arena.take(nbytes)
        self.block = _Block(ids, at, nbytes, schema, {})
        self._send_run(0, ())

    def finished(self, timeout: float) -> bool:
        """Serve the child up to ``timeout`` seconds; True once its block is done."""
        block = self.block
        assert block is not None, "no block submitted"
        if block.result is not None:
            return True
        self._forward_stop()
        conn = self.conn
        assert conn is not None
        if mpc.wait([conn], max(0.0, timeout)):
            try:  # (a message may replace the child: then its pipe is done with)
                while block.result is None and self.conn is conn and conn.poll():
                    self._handle(conn.recv())
            except (EOFError, OSError):
                if self.conn is conn:
                    self._died()
        elif self._gone() or self._overdue() or self._over_memory():
            self._died()
        return block.result is not None

    def take(self) -> tuple[Columns, RowsDone]:
        block = self.block
        assert block is not None and block.result is not None, "no block done"
        self.block = None
        return block.result

    def close(self) -> object:
        """End the task process (it waits for a message: none means done), first running
        ``teardown(state)`` there, on the state its tasks saw: returns None, the
        (type, message) it raised, or "not run" (no task process: the rank runs it)."""
        torn: object = "not run"
        if self.conn is not None and self.teardown is not None:
            try:
                self.conn.send(("teardown",))
                if self.conn.poll(_TEARDOWN_WAIT):
                    torn = self.conn.recv()[1]
                else:
                    torn = ("TimeoutError", f"did not return within {_TEARDOWN_WAIT:g} s")
            except (OSError, EOFError):
                pass  # it had ended: the rank runs teardown on its own state
        if self.conn is not None:
            self.conn.close()
            self._reap(wait=_KILL_AFTER)
        self.stderr.close()
        return torn

    def kill(self) -> None:
        """End the task process now (a stop's grace period is long over)."""
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)

    # ---- the child's lifecycle ----
    def _send_run(self, first: int, skip: tuple) -> None:
        """Ask the child to run the block from row ``first`` (a fresh child if it ended
        while it waited: killed from outside, no task of it lost)."""
        block = self.block
        assert block is not None
        for _ in range(2):
            if self.conn is None:
                self._start()
            assert self.conn is not None
            self._unstarted(first, skip)  # as the child will set it (it may not have yet)
            try:
                self.conn.send(("run", block.ids, block.at, block.schema, first, skip))
                return
            except OSError:  # its pipe is closed: it ended between blocks
                self._reap(wait=_KILL_AFTER)
        raise RuntimeError("a fresh task process could not be started")

    def _unstarted(self, first: int, skip: tuple) -> None:
        """Rows ``first..`` (but ``skip``) marked not started: a start time there later
        means the child began that task (see :meth:`_progress`)."""
        block = self.block
        assert block is not None
        self.arena.header[COUNT] = first
        block.skip = frozenset(skip)
        self._zero_meta(first, skip)

    def _zero_meta(self, first: int, skip: tuple) -> None:
        """Start, time and status of rows ``first..`` (but ``skip``) zeroed, in the arena:
        the child writes only what it runs (this is reused memory)."""
        block = self.block
        assert block is not None
        if block.at is not None:
            cols = Columns(block.schema, len(block.ids), self._columns(block))
            todo = np.ones(len(block.ids), bool)
            todo[:first] = False
            todo[list(skip)] = False
            cols.start[todo], cols.elapsed[todo], cols.status[todo] = 0.0, 0.0, Status.PENDING

    def _start(self) -> None:
        mine, theirs = mpc.Pipe(duplex=True)
        self.starts += 1
        self.stopped_child = self.stopper.requested
        self.arena.header[STOP] = int(self.stopper.requested)
        sys.stdout.flush()  # else the child prints the rank's unflushed text again
        sys.stderr.flush()
        gc.freeze()  # the child's collections then never touch (and copy) the rank's objects
        pid = os.fork()
        if pid == 0:  # the task process: never returns
            mine.close()
            hooks = (self.in_child, self.memory, self.teardown)
            child(self.runner, theirs, self.arena, self.stderr.write_fd, *hooks)
        gc.unfreeze()
        theirs.close()
        self.pid, self.conn = pid, mine
        if self.memory is not None:  # the child starts sharing the rank's pages: its baseline
            self.rss_limit_kib = _hygiene.memory_kib("self", "RssAnon") + self.memory // 1024

    def _gone(self) -> bool:
        """True if the child ended (its pipe may live on in a process it started)."""
        if not self.pid or self.status is not None:
            return self.status is not None
        done, status = os.waitpid(self.pid, os.WNOHANG)
        if done:
            self.status = status
        return bool(done)

    def _reap(self, wait: float) -> int:
        """The child's wait status (killing it after ``wait`` seconds)."""
        pid, self.pid = self.pid, 0
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        known, self.status = self.status, None
        if not pid:
            return known or 0
        if known is not None:
            _end_group(pid)
            return known
        deadline = time.monotonic() + wait
        while True:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return 0
            if done:
                _end_group(pid)
                return status
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.001)

    def _forward_stop(self) -> None:
        """The rank was asked to stop: so is the child (SIGUSR1, and the header's flag for
        a child started later), which interrupts its task at the end of the same grace
        period (a command's process group is killed, the task stays pending). A child
        still running well past it is killed."""
        if self.stopper.requested and not self.stopped_child:
            self.stopped_child = True
            self.arena.header[STOP] = 1
            if self.pid:
                os.kill(self.pid, signal.SIGUSR1)
        if self.stopper.past_grace() and self.pid:
            if time.perf_counter() > self.stopper.stop_deadline + _KILL_AFTER + 1.0:
                self.kill()

    def _progress(self) -> tuple[int, int]:
        """(rows of the block finished in order, the row in flight or -1).

        The child raises COUNT after each task; the task after it is in flight once its
        start is written and until its status is (no header write per task for that).
        """
        block, count = self.block, int(self.arena.header[COUNT])
        if block is None or block.at is None:
            return count, -1
        row = count
        while row in block.skip:
            row += 1
        if row >= len(block.ids):
            return count, -1
        cols = Columns(block.schema, len(block.ids), self._columns(block))
        if cols.start[row] == 0.0:
            return count, -1  # between tasks
        if cols.status[row] != Status.PENDING:
            return row + 1, -1  # done; it had not raised COUNT yet
        return count, row

    def _overdue(self) -> bool:
        """A task past ``--task-timeout`` that never came back to Python: kill its process.

        (One that does is failed by its own process, with ``TaskTimeout``.)
        """
        limit, row = self.stopper.task_timeout, self._progress()[1]
        if limit is None or row < 0 or self.block is None or self.block.at is None:
            return False
        started = Columns(self.block.schema, len(self.block.ids), self._columns(self.block))
        ran = time.perf_counter() + self.runner.clock_offset - started.start[row]
        if ran < limit + _OVERDUE:
            return False
        self.killed_for = f"it ran longer than --task-timeout {limit:g} s and did not return"
        self.kill()
        self.status = os.waitpid(self.pid, 0)[1]
        return True

    def _over_memory(self) -> bool:
        """The child's resident private memory past its cap (checked every 50 ms): kill it.

        RLIMIT_DATA fails most allocations over the cap in the task itself; this catches
        memory it does not count.
        """
        now = time.perf_counter()
        if self.memory is None or not self.pid or now - self.rss_checked < 0.05:
            return False
        self.rss_checked = now
        rss = _hygiene.memory_kib(self.pid, "RssAnon")
        if rss <= self.rss_limit_kib:
            return False
        cap = _hygiene.size_text(self.memory)
        self.killed_for = f"it went over its memory limit (--task-memory {cap}); killed"
        self.kill()
        self.status = os.waitpid(self.pid, 0)[1]
        return True

    def _handle(self, msg: tuple) -> None:
        block = self.block
        assert block is not None and self.conn is not None
        kind = msg[0]
        if kind == "fail":
            block.failures[msg[1]] = msg[2]
        elif kind == "alloc":  # new columns (a schema set) or a sealed block
            _, nbytes, schema, schema_task, old = msg
            at = self.arena.take(nbytes)
            if schema is None:  # the sealed block goes there; until done, the columns count
                block.sealed = (at, nbytes, old)
            else:  # columns of the schema just set, meta copied over by the child
                self.runner.packer = Packer(schema, schema_task)  # later forks start with it
                if old is not None:
                    self.arena.give(old)
                block.schema, block.at, block.nbytes = schema, at, nbytes
                self._zero_meta(0, ())  # (then the child copies the rows so far over)
            self.conn.send(at)
        elif kind == "done":
            _, ran, fatal, sealed, payload, retire, randoms = msg
            self.global_random = self.global_random or randoms
            if retire:  # a task left threads running: that process ends; a fresh one next
                self._reap(wait=_KILL_AFTER)
                count = int(self.arena.header[COUNT])
                if count < len(block.ids) and fatal is None and not self.stopper.requested:
                    self._send_run(count, ())  # the rest of the block, in the fresh one
                    return
            self._finish(ran, fatal, sealed, payload)

    def _finish(self, ran: int, fatal: str | None, sealed: int, payload: bytes | None) -> None:
        block = self.block
        assert block is not None
        rows, schema = len(block.ids), block.schema
        if block.sealed is not None:  # the block moved to its sealed place
            at, nbytes, old = block.sealed
            if old is not None:
                self.arena.give(old)
            block.at, block.nbytes, block.sealed = at, nbytes, None
        if payload is not None:  # the child kept its columns: they came as bytes
            buf = np.frombuffer(bytearray(payload), np.uint8)
        else:
            assert block.at is not None
            buf = self.arena.view(block.at, max(sealed, block.nbytes))
        cols = Columns(schema, rows, buf)
        cols.nbytes, cols.buffer = sealed, buf[:sealed]
        ran = int((cols.status != Status.PENDING).sum())
        done = RowsDone([block.failures[r] for r in sorted(block.failures)], ran)
        if fatal is not None:
            done.fatal = ResultError(fatal)
        block.result = (cols, done)

    def _died(self) -> None:
        """The child ended mid-block: keep its rows, fail the task in flight, go on."""
        block = self.block
        assert block is not None
        status = self._reap(wait=_KILL_AFTER)
        if block.sealed is not None:  # it died sealing: the columns are still where they were
            if block.sealed[0] is not None:
                self.arena.give(block.sealed[0])
            block.sealed = None
        count, row = self._progress()
        rows, stopping = len(block.ids), self.stopper.requested
        cols = Columns(block.schema, rows, self._columns(block))
        cols.stale = True
        if 0 <= row < rows and not stopping:  # the task in flight ended its process
            block.failures[row] = self._failure(block.ids.start + row, status)
            cols.status[row] = Status.FAILED
            cols.elapsed[row] = time.perf_counter() + self.runner.clock_offset - cols.start[row]
            cols.clear_row(row)
            count = row + 1
        elif row < 0 and not stopping and count not in block.deaths:
            block.deaths.add(count)  # it died between tasks: once more from there
        else:
            self._end_early(cols, count)
            return
        tails = any(f.tail for f in block.schema)
        if tails and (cols.status[:count] == Status.DONE).any():
            # their values died with the child: the fresh one runs them again, identically
            failed = np.flatnonzero(cols.status[:count] == Status.FAILED).tolist()
            block.failures = {r: f for r, f in block.failures.items() if r in failed}
            self._send_run(0, tuple(failed))
        elif count >= rows:
            self._end_early(cols, count)
        else:
            self._send_run(count, ())

    def _columns(self, block: _Block) -> np.ndarray:
        if block.at is None:  # the child kept its columns: nothing of the block is here
            block.at = self.arena.take(block.nbytes)
            if block.at is None:
                raise MemoryError("no room left for a block's columns")
            self.arena.view(block.at, block.nbytes)[:] = 0
        return self.arena.view(block.at, block.nbytes)

    def _end_early(self, cols: Columns, last: int) -> None:
        """The block ends with the child: rows from ``last`` on stay pending."""
        block = self.block
        assert block is not None
        cols.status[last:] = Status.PENDING
        if any(f.tail for f in block.schema):  # their values died with the child
            cols.status[cols.status == Status.DONE] = Status.PENDING
        cols.start[cols.status == Status.PENDING] = 0
        cols.elapsed[cols.status == Status.PENDING] = 0
        cols.clear_unfinished()
        failed = set(np.flatnonzero(cols.status == Status.FAILED).tolist())
        kept = [block.failures[r] for r in sorted(block.failures) if r in failed]
        block.result = (cols, RowsDone(kept, int((cols.status != Status.PENDING).sum())))

    def _failure(self, i: int, status: int) -> TaskFailure:
        """The failure of task ``i``, whose process ended with wait status ``status``."""
        host, rank = self.runner.host, self.runner.rank
        why, self.killed_for = self.killed_for or _hygiene.death(status), ""
        tail = self.stderr.text()
        head = f"rank {rank} on {host}, task {i}: {why}\n"
        account = head + ("last lines of its stderr:\n" + tail if tail.strip() else "")
        return TaskFailure(i, rank, host, "TaskProcessDied", why, account)


def _end_group(pid: int) -> None:
    """End what an ended task process left running (its process group: pool workers)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
