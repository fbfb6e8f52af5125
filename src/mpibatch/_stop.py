"""Stopping a run on purpose: signals, grace periods, task time-outs, stuck tasks.

Each rank has one :class:`Stopper`. Asking it to stop (a signal, a message from rank 0,
the time limit) sets a flag the task loop checks between tasks, and starts a grace
period; a task still running when the grace period ends is interrupted and left pending.
With a task time-out, a task running longer than it is interrupted and recorded as
failed. Interrupts are raised from SIGALRM in the main thread, so they only land while a
task runs there (rank 0's tasks on its helper thread are never interrupted: at the end
of the grace period rank 0 leaves such a task behind, pending); a task stuck in code
that never returns to Python is ended by a watchdog thread that names it and exits the
rank (the job ends; the file keeps what was flushed).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager

STOP_SIGNALS = ("SIGTERM", "SIGUSR1")
EXIT_STUCK = 4
_HARD_EXTRA = 5.0  # seconds past a time-out before the watchdog gives up on a task


class TaskTimeout(BaseException):
    """Raised inside a task that ran past ``--task-timeout`` (not an Exception on purpose)."""


class TaskInterrupted(BaseException):
    """Raised inside a task still running when a stop's grace period ran out."""


class Stopper:
    """Stop requests, grace period and per-task time-out of one rank."""

    def __init__(self, grace: float, task_timeout: float | None, where: str) -> None:
        self.grace, self.task_timeout, self.where = grace, task_timeout, where
        self.requested = False
        self.reason = ""
        self.stop_deadline = float("inf")
        self.task_deadline = float("inf")
        self.task_id: int | None = None
        self.task_started = 0.0
        self.tasks_on_main = True  # False: tasks run on a helper thread, never interrupt here

    def request(self, reason: str) -> None:
        if not self.requested:
            self.requested, self.reason = True, reason
            self.stop_deadline = time.perf_counter() + self.grace
            self._arm()

    # ---- around each task (only used when a time-out or a stop can interrupt it) ----
    def begin(self, task_id: int) -> None:
        self.task_id, self.task_started = task_id, time.perf_counter()
        if self.task_timeout is not None:
            self.task_deadline = self.task_started + self.task_timeout
            self._arm()

    def end(self) -> None:
        self.task_id = None
        if self.task_timeout is not None:
            self.task_deadline = float("inf")

    def _arm(self) -> None:
        soonest = min(self.stop_deadline, self.task_deadline)
        if soonest != float("inf"):
            signal.setitimer(signal.ITIMER_REAL, max(1e-4, soonest - time.perf_counter()))

    def _on_alarm(self, signum, frame) -> None:
        if self.task_id is None or not self.tasks_on_main:
            return  # between tasks (MPI, HDF5), or the task is on another thread
        now = time.perf_counter()
        if now >= self.stop_deadline:
            raise TaskInterrupted(f"stopped: {self.reason}")
        if now >= self.task_deadline:
            raise TaskTimeout(f"task ran longer than --task-timeout {self.task_timeout:g} s")
        self._arm()

    def _watch(self) -> None:
        """Watchdog thread: a task past its time-out by more than a margin ends the rank."""
        while True:
            time.sleep(0.25)
            tid, started = self.task_id, self.task_started
            limit = min(self.task_timeout or float("inf"), self.stop_deadline - started)
            if tid is not None and time.perf_counter() - started > limit + _HARD_EXTRA:
                sys.stderr.write(
                    f"mpibatch: error: task {tid} on {self.where} did not return "
                    f"{_HARD_EXTRA:g} s after it was interrupted; ending the run (results "
                    "written so far are kept: run again with --resume)\n"
                )
                sys.stderr.flush()
                os._exit(EXIT_STUCK)

    @contextmanager
    def installed(self):
        """Handle stop signals and SIGALRM while the run lasts; restore the old handlers."""
        old = {}

        def on_signal(signum, frame):
            self.request(signal.Signals(signum).name)

        try:
            for name in STOP_SIGNALS:
                sig = getattr(signal, name)
                old[sig] = signal.signal(sig, on_signal)
            old[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
        except ValueError:  # not the main thread: run without signal handling
            pass
        if self.task_timeout is not None or old:
            threading.Thread(target=self._watch, daemon=True, name="mpibatch-watchdog").start()
        try:
            yield self
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig, handler in old.items():
                signal.signal(sig, handler)
