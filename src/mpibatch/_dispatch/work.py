"""Every rank but 0: run the blocks rank 0 sends and report each; then every rank meets."""

from __future__ import annotations

from collections import deque

from .._records import Columns, Report
from ..errors import ResultError
from ..runner import RowsDone, RunsBlocks


class _Hand:
    """The blocks a rank holds, and how many answers rank 0 still owes it.

    Rank 0 answers every report with one message (a block, or none), after two first
    messages; a rank is done when it holds no block and is owed no answer.
    """

    def __init__(self, transport) -> None:
        self.transport = transport
        self.blocks: deque = deque()
        self.expected = 2  # rank 0 first sends two

    def next(self) -> tuple[int, int] | None:
        """The next block to run (waiting for rank 0 if none is held), or None: done."""
        transport, blocks = self.transport, self.blocks
        while self.expected and (not blocks or transport.block_waiting()):
            block = transport.recv_block()
            self.expected -= 1
            if block is not None:
                blocks.append(block)
        return blocks.popleft() if blocks else None


def work(transport, runner: RunsBlocks, ids0: int) -> None:
    """Run the blocks rank 0 sends (task ids from ``ids0``), report each, until it sends none."""
    hand, stopper, sent = _Hand(transport), runner.stopper, _Sent(transport, runner)
    fatal, schema_sent = False, False

    def poll() -> None:
        sent.progress()
        if transport.stop_waiting():
            stopper.request("asked by rank 0")

    while (block := hand.next()) is not None:
        a, b = block
        poll()
        if fatal or stopper.requested:  # report the blocks in hand as not run
            cols, done = Columns((), 0), RowsDone()
        else:
            cols, done = runner.run(range(ids0 + a, ids0 + b), poll=poll)
        fatal = fatal or done.fatal is not None
        report = Report(a, cols.rows, cols.nbytes, done.failures)
        if done.fatal is not None:
            report.fatal = str(done.fatal)
        if stopper.requested and not stopper.reason.startswith("asked"):
            report.stop = stopper.reason  # a signal reached this rank: stop them all
        if cols.schema and not schema_sent and runner.packer is not None:
            report.schema, report.schema_task = cols.schema, runner.packer.schema_task
            schema_sent = True
        sent.release()
        sent.add(transport.send_report(report, cols.buffer), cols)
        hand.expected += 1
    sent.wait()
    while transport.stop_waiting():
        pass  # a stop that came after the last block


class _Sent:
    """Reports whose data is still being sent: their buffers must live until it is."""

    def __init__(self, transport, runner: RunsBlocks) -> None:
        self.transport, self.give = transport, runner.buffers.give
        self.inflight: list = []

    def add(self, request, cols: Columns) -> None:
        self.inflight.append((request, cols))

    def progress(self) -> None:
        """Drive the sends on."""
        done = self.transport.done
        for req, _ in self.inflight:
            done(req)

    def release(self) -> None:
        """Give back the buffers of finished sends (the next block fills them again)."""
        done, still = self.transport.done, []
        for item in self.inflight:
            if done(item[0]):
                self.give(item[1].storage)
            else:
                still.append(item)
        self.inflight = still

    def wait(self) -> None:
        for req, _ in self.inflight:
            self.transport.wait(req)


def finish(transport, fatal: str | BaseException | None) -> None:
    """Every rank: meet (napping, not spinning), then raise rank 0's fatal error everywhere
    (a message: a ResultError; an MpibatchError as it is)."""
    transport.barrier()
    fatal = transport.share(fatal)
    if isinstance(fatal, BaseException):
        raise fatal
    if fatal:
        raise ResultError(fatal)
