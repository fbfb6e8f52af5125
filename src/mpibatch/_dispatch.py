"""The message loop of a run: rank 0 hands out blocks and stores what comes back.

Every schedule uses the same loop; only the queue differs (see schedule.py). A rank
running short tasks holds two blocks (the one it runs and the next), so it rarely waits
for rank 0; with long tasks, or near the end, it holds one, so no task waits behind a
busy rank while another is idle. Rank 0 runs blocks too, unless it is a dedicated root:
on a helper thread (worker.TaskThread), so that its main thread, which makes every MPI
call, answers the others while its own task runs; or, with ``root_tasks="main"`` or a
task time-out, on the main thread, serving the others between its own tasks. Results
travel as raw column buffers; rank 0 writes each report into the HDF5 file as it lands,
so its memory does not grow with the run.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent import futures
from concurrent.futures import Future

import numpy as np

from . import _comm
from ._records import Columns, describe, record_bytes
from .errors import ResultError
from .schedule import block_rows
from .worker import RowsDone, Runner, TaskThread

LONG_TASK = 0.1  # seconds: tasks this long gain nothing from a rank holding a second block
POLL_EVERY = 0.002  # seconds: how often rank 0 serves others between its own tasks
STOP_MARGIN = 2.0  # seconds kept, before a time limit, to gather and close the file


class Root:
    """Rank 0: the queue, the store, the progress line and the accounting."""

    def __init__(
        self, comm, plan, store, runner: Runner, queue, progress, on_thread: bool = False
    ) -> None:
        self.comm, self.plan, self.store, self.runner = comm, plan, store, runner
        self.queue, self.progress = queue, progress
        self.size = comm.Get_size()
        self.owed = [0] * self.size  # blocks handed to each rank, not yet reported
        self.schemas: dict[int, tuple] = {}
        self.canonical: tuple | None = store.schema  # set already when resuming
        self.canonical_task = -1
        self.pending: list = []  # reports whose data is still arriving
        self.done = self.failed = 0
        self.busy = 0.0
        self.fatal: str | None = None
        self.stopped: str | None = None  # why the run stops early (a signal, a limit)
        self.stopping = False
        self.stop_at = plan.deadline - plan.grace - 2 * STOP_MARGIN if plan.deadline else None
        self.n_blocks, self.dispatch_seconds = 0, 0.0
        self.last_flush = time.monotonic()
        from .store import WriteBehind  # here: the other ranks never import h5py

        self.behind = WriteBehind(
            store, max_seconds=min(0.5, plan.flush_seconds), release=runner.buffers.give
        )
        self.next_poll = 0.0
        self.own: tuple | None = None  # rank 0's block and the future of its columns
        self.thread = TaskThread(runner) if on_thread else None
        runner.stopper.tasks_on_main = self.thread is None

    # ---- handing out blocks ----
    def _slot(self, rank: int) -> int:
        return rank - 1 if self.plan.dedicated_root else rank

    def _cap(self) -> int:
        rec = record_bytes(self.canonical) if self.canonical is not None else None
        mean = self._mean()
        if self.canonical is None and self.done == 0 and self.failed:
            rec = record_bytes(())  # everything failed so far: rows are small
        seconds = self.plan.block_seconds
        if self.stop_at is not None:  # no block that cannot finish before the time limit
            seconds = min(seconds, max(0.0, self.stop_at - time.time()))
        seen = self.done + self.failed
        return block_rows(rec, self.size, self.plan.gather_bytes, mean, seconds, seen)

    def _mean(self) -> float | None:
        """Mean task time so far (seconds), None before any task is back."""
        ran = self.done + self.failed
        return self.busy / ran if ran else None

    def _next(self, rank: int) -> tuple[int, int] | None:
        self._check_stop()
        cap = self._cap()
        if rank == 0 and self.thread is not None and (self._mean() or 0.0) > LONG_TASK:
            cap = 1  # one long task at a time: a stop past the grace period loses no others
        block = None if self.stopping else self.queue.next(self._slot(rank), cap)
        if block is not None:
            self.owed[rank] += 1
            self.n_blocks += 1
        return block

    def run(self) -> None:
        """Serve every rank and run rank 0's own blocks until all blocks are reported."""
        workers = range(1, self.size)
        for rank in workers:  # a first block for every rank, rank 0 included ...
            _comm.send_block_root(self.comm, rank, self._next(rank))
        self._start_own()
        for rank in workers:  # ... before anyone is given a second
            _comm.send_block_root(self.comm, rank, self._ahead(rank))
        while True:
            if self.size > 1 and time.perf_counter() >= self.next_poll:
                self.poll()  # between rank 0's own blocks too, however short they are
            if self.own is None:
                self._start_own()
            if self.own is not None:
                self._tend_own()
            elif not any(self.owed):
                break
            else:
                self._wait_one()
        if self.thread is not None:
            self.thread.close()
        self._drain(wait=True)
        self.behind.flush()
        self.progress.update(self.done, self.failed)

    # ---- rank 0's own blocks ----
    def _start_own(self) -> None:
        """Give rank 0 its next block: on the task thread, or run it here and now."""
        if self.plan.dedicated_root:
            return
        block = self._next(0)
        if block is None:
            return
        ids = range(self.plan.ids[0] + block[0], self.plan.ids[0] + block[1])
        mean = self._mean()
        if self.thread is not None and (mean is None or mean > POLL_EVERY):
            self.own = (block, self.thread.submit(ids))
            return
        # no thread, or tasks shorter than the poll interval: serving between them is as
        # prompt, and costs no hand-off and no contention for the GIL
        poll = self.poll if self.size > 1 else None
        stopper, future = self.runner.stopper, Future()
        stopper.tasks_on_main = True  # here a stop's interrupt may land in the task
        try:
            future.set_result(self.runner.run(ids, poll=poll, poll_every=POLL_EVERY))
        finally:
            stopper.tasks_on_main = self.thread is None
        self.own = (block, future)

    def _tend_own(self) -> None:
        """Serve the others until rank 0's block is done, then store it."""
        block, future = self.own
        if not future.done():
            futures.wait([future], timeout=max(0.0, self.next_poll - time.perf_counter()))
            if not future.done() and self._past_grace():
                self.owed[0] -= 1  # its rows stay pending; the thread is left behind
                self.own, self.runner.stopper.task_id = None, None
            return
        cols, done = future.result()
        self.own = None
        self.owed[0] -= 1
        self._ingest(0, block[0], cols, done.failures, self._own_extras(done))

    def _past_grace(self) -> bool:
        stopper = self.runner.stopper
        return stopper.requested and time.perf_counter() >= stopper.stop_deadline

    def _ahead(self, rank: int) -> tuple[int, int] | None:
        """A second block for a rank that still holds one, unless that would hurt.

        Holding the next block hides the round trip to rank 0, which matters for short
        tasks. For long tasks, or when few tasks are left, a block held by a busy rank
        could have run at once on an idle one, so the answer is no block: the rank then
        asks again when it finishes (and holds one block from then on).
        """
        mean = self._mean()
        if (mean is not None and mean > LONG_TASK) or self.queue.remaining < 2 * self.size:
            return None
        return self._next(rank)

    # ---- stopping early ----
    def _check_stop(self) -> None:
        if self.stopping:
            return
        stopper = self.runner.stopper
        if stopper.requested:
            self.request_stop(stopper.reason)
        elif self.stop_at is not None and time.time() >= self.stop_at:
            self.request_stop("the time limit is near")

    def request_stop(self, reason: str) -> None:
        """Hand out no more blocks; every rank finishes its task (within the grace period)."""
        if self.stopping:
            return
        self.stopping, self.stopped = True, reason
        for rank in range(1, self.size):
            _comm.send_stop_root(self.comm, rank)
        self.runner.stopper.request(reason)

    # ---- reports from other ranks ----
    def poll(self) -> None:
        """Serve every report that is waiting (called between rank 0's own tasks)."""
        self.next_poll = time.perf_counter() + POLL_EVERY
        self._check_stop()
        while (source := _comm.report_waiting_root(self.comm)) is not None:
            self._handle(source)
        if self.pending:
            self._drain()
        self.behind.tick()

    def _wait_one(self) -> None:
        delay = 0.0
        while (source := _comm.report_waiting_root(self.comm)) is None:
            if self.pending and self._drain():
                return
            self._check_stop()
            self.behind.tick()  # idle: do not let finished results wait in memory
            delay = _comm.nap(delay)
        self._handle(source)

    def _handle(self, source: int) -> None:
        t = time.perf_counter()
        header, extras, buf, req = _comm.recv_report_root(
            self.comm, source, self.runner.buffers.take
        )
        self.owed[source] -= 1
        if extras and extras.get("fatal"):
            self._stop_with(extras["fatal"])
        if extras and extras.get("stop"):
            self.request_stop(f"{extras['stop']} on rank {source}")
        reply = self._next(source) if self.owed[source] == 0 else self._ahead(source)
        _comm.send_block_root(self.comm, source, reply)
        self.pending.append((source, header, extras, buf, req))
        self.dispatch_seconds += time.perf_counter() - t

    def _drain(self, wait: bool = False) -> bool:
        """Store every report whose data has arrived; True if any was stored."""
        t, stored, keep = time.perf_counter(), False, []
        for item in self.pending:
            source, header, extras, buf, req = item
            if wait:
                _comm.wait(req)
            elif not _comm.done(req):
                keep.append(item)
                continue
            pos, rows = header[0], header[1]
            schema = self._schema_of(source, extras)
            cols = Columns(schema, rows, buf)
            self._ingest(source, pos, cols, (extras or {}).get("failures", []), extras)
            stored = True
        self.pending = keep
        self.dispatch_seconds += time.perf_counter() - t
        return stored

    # ---- storing ----
    def _own_extras(self, done: RowsDone) -> dict:
        packer = self.runner.packer
        extras = {"fatal": str(done.fatal)} if done.fatal else {}
        if packer is not None:
            extras.update(schema=packer.schema, schema_task=packer.schema_task)
        return extras

    def _schema_of(self, rank: int, extras) -> tuple:
        if extras and "schema" in extras:
            self.schemas[rank] = extras["schema"]
        return self.schemas.get(rank, ())

    def _ingest(self, rank: int, pos: int, cols: Columns, failures: list, extras) -> None:
        if extras and extras.get("fatal"):
            self._stop_with(extras["fatal"])
        if cols.schema and not self._fits(cols.schema, (extras or {}).get("schema_task", -1)):
            cols = Columns((), cols.rows)  # keep nothing of a report that does not fit
        self.behind.add(pos, cols, rank)
        self.store.write_failures(failures)
        ran = cols.status > 0
        self.done += int(np.count_nonzero(cols.status == 1))
        self.failed += int(np.count_nonzero(cols.status == 2))
        self.busy += float(cols.elapsed[ran].sum())
        if hasattr(self.queue, "observe"):
            self.queue.observe(pos, cols.rows, cols.elapsed[ran].tolist())
        self.progress.update(self.done, self.failed)
        limit = self.plan.max_failures
        if limit and self.failed >= limit and not self.stopping:
            self.request_stop(f"{self.failed} tasks failed (--max-failures {limit})")
        if time.monotonic() - self.last_flush >= self.plan.flush_seconds:
            self.behind.flush()
            self.store.flush()
            self.last_flush = time.monotonic()

    def _fits(self, schema: tuple, task: int) -> bool:
        """Check a rank's schema against the run's (the first one seen); create datasets."""
        if self.canonical is None:
            self.canonical, self.canonical_task = schema, task
            self.store.add_results(schema)
            return True
        same = [(f.key, f.shape) for f in schema] == [(f.key, f.shape) for f in self.canonical]
        if same and all(
            np.can_cast(a.dtype, b.dtype, "safe")
            for a, b in zip(schema, self.canonical, strict=True)
        ):
            return True
        where = (
            f"task {self.canonical_task} returned"
            if self.canonical_task >= 0
            else "the results already in the file have"
        )
        self._stop_with(
            f"task {task} returned {{{describe(schema)}}}; expected {{{describe(self.canonical)}}} "
            f"as {where} - every task must return the same keys, shapes and dtypes"
        )
        return False

    def _stop_with(self, message: str) -> None:
        self.fatal = self.fatal or message
        self.stopping = True


def work(comm, runner: Runner, ids0: int) -> None:
    """Any rank but 0: run the blocks rank 0 sends, report each, until it sends no more.

    Rank 0 answers every report with one message (a block, or none), after two first
    messages; a rank is done when it holds no block and is owed no answer.
    """
    hand: deque = deque()
    expected, inflight, fatal, schema_sent = 2, [], False, False  # rank 0 first sends two
    stopper = runner.stopper

    def poll() -> None:
        for req, _ in inflight:  # drives the sends on
            _comm.done(req)
        if _comm.stop_waiting_worker(comm):
            stopper.request("asked by rank 0")

    while True:
        while expected and (not hand or _comm.block_waiting_worker(comm)):
            block = _comm.recv_block_worker(comm)
            expected -= 1
            if block is not None:
                hand.append(block)
        if not hand:
            break
        a, b = hand.popleft()
        poll()
        if fatal or stopper.requested:  # report the blocks in hand as not run
            cols, done = Columns((), 0), RowsDone()
        else:
            cols, done = runner.run(range(ids0 + a, ids0 + b), poll=poll)
        fatal = fatal or done.fatal is not None
        extras = {}
        if done.failures:
            extras["failures"] = done.failures
        if done.fatal is not None:
            extras["fatal"] = str(done.fatal)
        if stopper.requested and not stopper.reason.startswith("asked"):
            extras["stop"] = stopper.reason  # a signal reached this rank: stop them all
        if cols.schema and not schema_sent:
            extras.update(schema=cols.schema, schema_task=runner.packer.schema_task)
            schema_sent = True
        still = []
        for req, sent in inflight:
            if _comm.done(req):
                runner.buffers.give(sent.storage)  # the next block fills it again
            else:
                still.append((req, sent))
        inflight = still
        header = [a, cols.rows, cols.nbytes, len(done.failures)]
        req = _comm.send_report_worker(comm, header, cols.buffer, extras or None)
        inflight.append((req, cols))  # the buffer must live until the send completes
        expected += 1
    for req, _ in inflight:
        _comm.wait(req)
    while _comm.stop_waiting_worker(comm):
        pass  # a stop that came after the last block


def finish(comm, fatal: str | None) -> None:
    """Every rank: meet (napping, not spinning), then raise rank 0's fatal error everywhere."""
    _comm.barrier(comm)
    fatal = _comm.share(comm, fatal)
    if fatal:
        raise ResultError(fatal)
