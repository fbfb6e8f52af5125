"""Rank 0's loop: hand out blocks, run its own, store every report as it lands."""

from __future__ import annotations

import time

import numpy as np

from .._records import Columns, Report
from .._say import plural
from ..errors import MpibatchError, no_space
from ..runner import RowsDone, RunsBlocks
from .leader import LEADER_NAP, Tiers
from .ledger import Ledger, SchemaGate
from .own import POLL_EVERY, OwnBlocks
from .policy import BlockPolicy
from .sink import Sink


class Root:
    """Rank 0: serves every rank from the queue, runs its own blocks, stores the results.

    The parts: the :class:`Ledger` counts, the :class:`SchemaGate` checks each rank's
    schema, the :class:`BlockPolicy` sizes blocks, :class:`OwnBlocks` runs rank 0's
    blocks, the :class:`Sink` writes. Root itself only routes messages and decides when
    the run stops (a stop request, the time limit, too many failures, a fatal error).
    """

    def __init__(
        self,
        transport,
        plan,
        store,
        runner: RunsBlocks,
        queue,
        progress,
        on_thread: bool = False,
        tiers: Tiers | None = None,
    ) -> None:
        self.transport, self.plan, self.runner = transport, plan, runner
        self.queue, self.progress = queue, progress
        self.size = transport.size
        self.tiers = tiers  # node leaders: rank 0's peers are leaders (see leader.py)
        self.ledger = Ledger(self.size)
        self.gate = SchemaGate(store)
        ranks = tiers.n_ranks if tiers else self.size
        self.policy = BlockPolicy(plan, ranks, self.ledger, self.gate)
        self.sink = Sink(store, plan.flush_seconds, runner.buffers.give)
        self.own = OwnBlocks(runner, plan.ids[0], on_thread)
        self.pending: list = []  # reports whose data is still arriving
        self.fatal: str | None = None
        self.error: MpibatchError | None = None  # the file could not be written: the first why
        self.stopped: str | None = None  # why the run stops early (a signal, a limit)
        self.stopping = False
        self.next_poll = 0.0

    def run(self) -> None:
        """Serve every rank and run rank 0's own blocks until all blocks are reported."""
        send, workers = self.transport.send_block, range(1, self.size)
        for rank in workers:  # a first block for every rank, rank 0 included ...
            send(rank, self._next(rank))
        self._start_own()
        for rank in workers:  # ... before anyone is given a second
            send(rank, self._ahead(rank))
        own, ledger = self.own, self.ledger
        while True:
            if self.size > 1 and time.perf_counter() >= self.next_poll:
                self.poll()  # between rank 0's own blocks too, however short they are
            if not own.busy:
                self._start_own()
            if own.busy:
                self._tend_own()
            elif not ledger.outstanding():
                break
            else:
                self._wait_one()
        own.close()
        self._drain(wait=True)
        self._write(self.sink.flush)
        self.progress.update(ledger.done, ledger.failed)

    # ---- handing out blocks ----
    def _next(self, rank: int):  # a block (a leader: a list of blocks), or None
        self._check_stop()
        if self.stopping:
            return None
        cap = self.policy.cap(one_long=rank == 0 and self.own.concurrent)
        tiers = self.tiers
        if tiers is not None and rank in tiers.grants:  # a leader: blocks for its ranks
            # two a rank while a flat rank would hold two (short tasks, not near the end)
            per = 2 if self.policy.ahead(self.queue.remaining) else 1
            grant = [self.queue.next(slot, cap) for slot in tiers.grants[rank] for _ in range(per)]
            block = [b for b in grant if b is not None] or None
        else:
            slot = tiers.slots[rank] if tiers is not None else self.policy.slot(rank)
            block = self.queue.next(slot, cap)
        if block is not None:
            self.ledger.handed(rank)
        return block

    def _ahead(self, rank: int):
        """A second block for a rank that still holds one, unless that would hurt.

        A leader's ranks take a second grant's blocks as soon as they are idle, so only
        the end of the run (not long tasks) keeps a leader to one grant.
        """
        leader = self.tiers is not None and rank in self.tiers.grants
        return self._next(rank) if self.policy.ahead(self.queue.remaining, leader) else None

    def _start_own(self) -> None:
        if self.plan.dedicated_root:
            return
        block = self._next(0)
        if block is not None:
            self.own.start(block, self.ledger.mean(), self.poll if self.size > 1 else None)

    def _tend_own(self) -> None:
        """Serve the others until rank 0's block is done, then store it."""
        own = self.own
        wait = self.next_poll - time.perf_counter() if self.size > 1 else 0.05
        if not own.finished(wait):
            if self.runner.stopper.past_grace() and own.thread is not None:
                self.ledger.reported(0)  # its rows stay pending; the thread is left behind
                own.abandon()
            return
        block, cols, done = own.take()
        self.ledger.reported(0)
        self._ingest(0, self._own_report(block[0], cols, done), cols)

    def _own_report(self, pos: int, cols: Columns, done: RowsDone) -> Report:
        packer = self.runner.packer
        report = Report(pos, cols.rows, cols.nbytes, done.failures)
        report.fatal = str(done.fatal) if done.fatal else None
        if packer is not None:
            report.schema, report.schema_task = packer.schema, packer.schema_task
        return report

    # ---- stopping early ----
    def _check_stop(self) -> None:
        if self.stopping:
            return
        stopper = self.runner.stopper
        if stopper.requested:
            self.request_stop(stopper.reason)
        elif self.policy.time_is_up():
            self.request_stop("the time limit is near")

    def request_stop(self, reason: str) -> None:
        """Hand out no more blocks; every rank finishes its task (within the grace period)."""
        if self.stopping:
            return
        self.stopping, self.stopped = True, reason
        for rank in range(1, self.size):
            self.transport.send_stop(rank)
        self.runner.stopper.request(reason)

    def _stop_with(self, message: str) -> None:
        """A fatal error: the first one is raised on every rank once all have stopped."""
        self.fatal = self.fatal or message
        self.stopping = True

    # ---- reports from other ranks ----
    def poll(self) -> None:
        """Serve every report that is waiting (called between rank 0's own tasks)."""
        self.next_poll = time.perf_counter() + POLL_EVERY
        self._check_stop()
        waiting = self.transport.report_waiting
        while (source := waiting()) is not None:
            self._handle(source)
        if self.pending:
            self._drain()
        self._write(self.sink.tick)

    def _wait_one(self) -> None:
        transport, delay = self.transport, 0.0
        while (source := transport.report_waiting()) is None:
            if self.pending and self._drain():
                return
            self._check_stop()
            self._write(self.sink.tick)  # idle: do not let finished results wait in memory
            longest = (LEADER_NAP,) if self.tiers else ()  # leaders wait on rank 0: nap less
            delay = transport.idle(delay, *longest)
        self._handle(source)

    def _handle(self, source: int) -> None:
        t, transport = time.perf_counter(), self.transport
        report, buf, req = transport.recv_report(source, self.runner.buffers.take)
        self.ledger.reported(source, report.grants)
        if report.fatal:
            self._stop_with(report.fatal)
        if report.stop:
            self.request_stop(f"{report.stop} on rank {self._origin(source, report)}")
        ahead = self.ledger.owed[source] > 0
        transport.send_block(source, self._ahead(source) if ahead else self._next(source))
        self.pending.append((source, report, buf, req))
        self.ledger.dispatch_seconds += time.perf_counter() - t

    def _origin(self, source: int, report: Report) -> int:
        """The rank a stop came from: a bundle's part that says so, or the sender."""
        for origin, part, _ in report.parts or ():
            if part.stop:
                return origin
        if report.where >= 0:
            return report.where
        return self.tiers.top[source] if self.tiers is not None else source

    def _drain(self, wait: bool = False) -> bool:
        """Store every report whose data has arrived; True if any was stored."""
        t, transport, stored, keep = time.perf_counter(), self.transport, False, []
        for item in self.pending:
            source, report, buf, req = item
            if wait:
                transport.wait(req)
            elif not transport.done(req):
                keep.append(item)
                continue
            if report.parts is None:
                schema, report.schema_task = self.gate.schema_of(source, report)
                self._ingest(source, report, Columns(schema, report.rows, buf))
            else:
                self._store_bundle(report.parts, buf)
            stored = True
        self.pending = keep
        self.ledger.dispatch_seconds += time.perf_counter() - t
        return stored

    # ---- storing ----
    def _store_bundle(self, parts: list, buf) -> None:
        """A leader's bundle: its ranks' reports, data one after another in ``buf``.

        Reports of adjacent rows and one schema are stored as one (each row keeps the
        rank that ran it), so rank 0's work per report is paid once per run of them.
        """
        for origin, part, _ in parts:  # a rank's schema first: its part may come before
            self.gate.schema_of(origin, part)
        at, items = 0, []
        for origin, part, laid in parts:  # laid out by the rank's schema, or with none yet
            schema, part.schema_task = self.gate.schema_of(origin, part) if laid else ((), -1)
            items.append((origin, part, Columns(schema, part.rows, buf[at : at + part.nbytes])))
            at += part.nbytes
        items.sort(key=lambda item: item[1].pos)
        run: list = []
        for item in items:
            if run and not _adjacent(run[-1], item):
                self._store_run(run)
                run = []
            run.append(item)
        if run:
            self._store_run(run)

    def _store_run(self, run: list) -> None:
        if len(run) == 1:
            self._ingest(*run[0])
            return
        first = run[0][1]
        cols = Columns(run[0][2].schema, sum(part.rows for _, part, _ in run))
        at = 0
        for _, part, part_cols in run:
            for name, arr in part_cols.arrays.items():
                cols.arrays[name][at : at + part.rows] = arr
            at += part.rows
        ranks = np.concatenate([np.full(part.rows, o, np.int32) for o, part, _ in run])
        failures = [f for _, part, _ in run for f in part.failures]
        report = Report(first.pos, cols.rows, cols.nbytes, failures)
        report.schema_task = first.schema_task
        self._ingest(ranks, report, cols)

    def _write(self, step, *args):
        """A write to the file, returning what ``step`` does; if it fails (the file was
        deleted, the disk is full) the run stops with that error, raised on every rank
        once all have stopped, and None is returned."""
        if self.error is not None:
            return None  # nothing more can be stored
        try:
            return step(*args)
        except MpibatchError as exc:
            self.error = exc
        except OSError as exc:  # a full disk surfaces here, at a write or a flush
            self.error = no_space(exc, self.plan.out)
            if self.error is None:
                raise
        if self.error is not None:
            self._stop_with(str(self.error))
        return None

    def _ingest(self, rank: int | np.ndarray, report: Report, cols: Columns) -> None:
        stored = self._write(self._store, rank, report, cols)
        cols = stored if stored is not None else Columns((), cols.rows)  # none stored: count none
        ledger = self.ledger
        self.queue.observe(report.pos, cols.rows, ledger.count(cols))
        self.progress.update(ledger.done, ledger.failed)
        limit = self.plan.max_failures
        if limit and ledger.failed >= limit and not self.stopping:
            failed = plural(ledger.failed, "task")
            self.request_stop(f"{failed} failed (--max-failures {limit})")

    def _store(self, rank: int | np.ndarray, report: Report, cols: Columns) -> Columns:
        """Check a report against the schema and hand it to the sink: the columns kept."""
        if report.fatal:
            self._stop_with(report.fatal)
        if cols.schema and (error := self.gate.check(cols.schema, report.schema_task)):
            self._stop_with(error)
            cols = Columns((), cols.rows)  # keep nothing of a report that does not fit
        self.gate.seen(report.nbytes, cols.rows)
        self.sink.add(report.pos, cols, rank, report.failures)
        return cols


def _adjacent(a: tuple, b: tuple) -> bool:
    """Do report ``b``'s rows follow ``a``'s, with the same schema and nothing fatal?"""
    pa, pb = a[1], b[1]
    return (
        pa.pos + pa.rows == pb.pos
        and a[2].schema == b[2].schema
        and pa.rows > 0
        and pb.rows > 0
        and not (pa.fatal or pb.fatal)
    )
