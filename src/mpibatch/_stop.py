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

SIGINT (Ctrl-C; ``mpiexec`` forwards it to every rank) is a stop like SIGTERM, so a
real Ctrl-C never raises ``KeyboardInterrupt`` inside a task: whatever a task raises is
the task's own, and fails it. A second SIGINT, a second or more after the first, ends
the grace period at once. Children forked while a run lasts (a ``multiprocessing``
pool in a task) get back the handlers that were there before the run, so their own
SIGTERM still ends them.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import ExitCode

STOP_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGINT")
EXIT_STUCK = ExitCode.STUCK
_HARD_EXTRA = 5.0  # seconds past a time-out before the watchdog gives up on a task
_AGAIN = 1.0  # seconds: a second SIGINT sooner than this is the same Ctrl-C delivered twice

# the handlers a run replaced (signal: the one before it); empty when no run is active
_before_run: dict = {}
_at_fork_registered = False
_mask_before_fork: set | None = None  # the forking thread's signal mask, while it forks


def _before_fork() -> None:
    """In a run, block its signals while forking: one sent to the child before it has
    its own handlers back waits for them, instead of landing in the run's and being lost."""
    global _mask_before_fork
    if _before_run:
        _mask_before_fork = signal.pthread_sigmask(signal.SIG_BLOCK, list(_before_run))


def _unblock_after_fork() -> None:
    global _mask_before_fork
    if _mask_before_fork is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, _mask_before_fork)
        _mask_before_fork = None


def _after_fork_in_child() -> None:
    """In a child forked during a run: the handlers from before the run, no timer."""
    if _before_run:
        for sig, handler in _before_run.items():  # None: set outside Python, not restorable
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        _before_run.clear()
        signal.setitimer(signal.ITIMER_REAL, 0)
    _unblock_after_fork()  # a signal sent meanwhile lands now, in the restored handler


def _register_at_fork() -> None:
    """Once per process: forked children drop the run's handlers (a no-op outside a run)."""
    global _at_fork_registered
    if not _at_fork_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_unblock_after_fork,
            after_in_child=_after_fork_in_child,
        )
        _at_fork_registered = True


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
        self.asked_at = 0.0  # when the stop was asked (perf_counter)
        self.task_deadline = float("inf")
        # the task running now (None between tasks): the task loop sets both on its hot
        # path; the alarm handler and the watchdog read them
        self.task_id: int | None = None
        self.task_started = 0.0
        self._on_main = True  # False: tasks run on a helper thread, never interrupt here
        self._alarms = False  # True while our SIGALRM handler is installed
        self._quit = threading.Event()  # ends the watchdog thread

    def request(self, reason: str) -> None:
        if not self.requested:
            self.requested, self.reason = True, reason
            self.asked_at = time.perf_counter()
            self.stop_deadline = self.asked_at + self.grace
            self._arm()

    def hurry(self) -> None:
        """End the grace period now: a task still running is interrupted, left pending."""
        self.stop_deadline = time.perf_counter()
        self._arm()

    def past_grace(self) -> bool:
        """True once a stop was asked and its grace period is over."""
        return self.requested and time.perf_counter() >= self.stop_deadline

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

    # ---- where the tasks run (rank 0 may run them on a helper thread) ----
    def tasks_on_helper_thread(self) -> None:
        """From now on tasks run on a helper thread: the alarm never interrupts this one."""
        self._on_main = False

    @contextmanager
    def tasks_here(self) -> Iterator[None]:
        """While it lasts tasks run on the main thread, where a stop may interrupt them."""
        before, self._on_main = self._on_main, True
        try:
            yield
        finally:
            self._on_main = before

    def abandon_task(self) -> None:
        """Give up on the running task (left behind, pending): the watchdog ignores it."""
        self.task_id = None

    def _arm(self) -> None:
        soonest = min(self.stop_deadline, self.task_deadline)
        if soonest != float("inf") and self._alarms:
            signal.setitimer(signal.ITIMER_REAL, max(1e-4, soonest - time.perf_counter()))

    def _on_alarm(self, signum, frame) -> None:
        if self.task_id is None or not self._on_main:
            return  # between tasks (MPI, HDF5), or the task is on another thread
        now = time.perf_counter()
        if now >= self.stop_deadline:
            raise TaskInterrupted(f"stopped: {self.reason}")
        if now >= self.task_deadline:
            raise TaskTimeout(f"task ran longer than --task-timeout {self.task_timeout:g} s")
        self._arm()

    def _watch(self) -> None:
        """Watchdog thread: a task past its time-out by more than a margin ends the rank."""
        while not self._quit.wait(0.25):
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
    def installed(self) -> Iterator[Stopper]:
        """Handle stop signals and SIGALRM while the run lasts; restore the old handlers.

        The watchdog thread it starts ends (and is joined) when the context exits.
        """
        old: dict = {}

        def on_signal(signum, frame):
            if signum == signal.SIGINT and self.requested:
                if time.perf_counter() - self.asked_at >= _AGAIN:
                    self.hurry()  # Ctrl-C again: do not wait out the grace period
                return
            self.request(signal.Signals(signum).name)

        _register_at_fork()
        try:
            for name in STOP_SIGNALS:
                sig = getattr(signal, name)
                old[sig] = signal.signal(sig, on_signal)
            old[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
            self._alarms = True
        except ValueError:  # not the main thread: run without signal handling
            pass
        _before_run.update(old)
        watchdog = None
        if self.task_timeout is not None or old:
            self._quit.clear()
            watchdog = threading.Thread(target=self._watch, daemon=True, name="mpibatch-watchdog")
            watchdog.start()
        try:
            yield self
        finally:
            if self._alarms:
                signal.setitimer(signal.ITIMER_REAL, 0)
                self._alarms = False
            for sig, handler in old.items():
                signal.signal(sig, handler)
            _before_run.clear()
            if watchdog is not None:
                self._quit.set()
                watchdog.join()
