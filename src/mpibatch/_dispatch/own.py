"""Rank 0's own blocks: on its helper thread, or on the main thread between serving others."""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future

from .._records import Columns
from .._taskproc import TaskProcess
from ..runner import RowsDone, Runner, RunsBlocks, TaskThread

POLL_EVERY = 0.002  # seconds: how often rank 0 serves others between its own tasks


class OwnBlocks:
    """Runs rank 0's blocks one at a time and hands each back when it is done.

    On a helper thread (:class:`TaskThread`) the main thread, which makes every MPI
    call, answers the others while rank 0's task runs. Inline (no thread, or tasks
    shorter than the poll interval) the runner calls ``poll`` between tasks: as prompt,
    with no hand-off and no contention for the GIL.
    """

    def __init__(self, runner: RunsBlocks, ids0: int, on_thread: bool) -> None:
        self.runner, self.ids0 = runner, ids0
        # rank 0's task process (the default) runs its blocks while this thread serves
        self.process = runner if isinstance(runner, TaskProcess) else None
        self.thread = TaskThread(runner) if on_thread and isinstance(runner, Runner) else None
        if self.thread is not None:
            runner.stopper.tasks_on_helper_thread()
        self.block: tuple[int, int] | None = None
        self.future: Future | None = None

    @property
    def concurrent(self) -> bool:
        """True if rank 0's blocks run beside this thread (a task process, a helper thread)."""
        return self.process is not None or self.thread is not None

    @property
    def busy(self) -> bool:
        """True while rank 0 holds a block not yet handed back."""
        return self.future is not None

    def start(
        self, block: tuple[int, int], mean: float | None, poll: Callable[[], None] | None
    ) -> None:
        """Run ``block``: on the thread, or here and now (``poll`` between tasks)."""
        ids = range(self.ids0 + block[0], self.ids0 + block[1])
        if self.process is not None:
            self.process.submit(ids)
            self.block, self.future = block, Future()  # a marker: done when the process says
            return
        if self.thread is not None and (mean is None or mean > POLL_EVERY):
            self.block, self.future = block, self.thread.submit(ids)
            return
        future: Future = Future()
        with self.runner.stopper.tasks_here():  # a stop's interrupt may land in the task
            future.set_result(self.runner.run(ids, poll=poll, poll_every=POLL_EVERY))
        self.block, self.future = block, future

    def finished(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the block; True if it is done."""
        future = self.future
        if future is None:
            return False
        if self.process is not None:
            return self.process.finished(timeout)
        if not future.done():
            futures.wait([future], timeout=max(0.0, timeout))
        return future.done()

    def take(self) -> tuple[tuple[int, int], Columns, RowsDone]:
        """The finished block, its columns and what else came of it (re-raises its error)."""
        block, future = self.block, self.future
        assert block is not None and future is not None, "no block to take"
        self.block = self.future = None
        cols, done = self.process.take() if self.process is not None else future.result()
        return block, cols, done

    def abandon(self) -> None:
        """Leave the running block behind (its rows stay pending); the thread runs on."""
        self.block = self.future = None
        self.runner.stopper.abandon_task()

    def close(self) -> None:
        if self.thread is not None:
            self.thread.close()  # (a task process is closed by the engine: teardown there)
