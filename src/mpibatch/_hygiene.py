"""What a task does to its process stays with that task: the task process's housekeeping.

:func:`enter_child` runs once in a fresh task process: the rank's open files (the HDF5
file on rank 0, MPI's sockets) become ``/dev/null`` there, so nothing the child does,
not even a C library's ``exit()`` running HDF5's clean-up, can write to them; stdin is
``/dev/null`` and ``breakpoint()`` fails its task with a line saying how to debug it.

:class:`Restore` puts back, after every task, what a task may change for the next ones
(which differ with ``-np`` and the schedule): the working folder, ``os.environ``,
``np.seterr``, signal handlers, ``sys.stdin``/``stdout``/``stderr``. Each check costs a
few attribute reads: the setters are wrapped to note a change, so a task that changes
nothing costs no system call. A task that leaves non-daemon threads running retires its
process after the block's row is saved (``retire``): the next task gets a fresh one.
"""

from __future__ import annotations

import collections
import os
import signal
import sys
import threading
from typing import Any

import numpy as np

from .errors import UsageError

_KEEP_SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1", "SIGALRM")
# the running threads by id (threading's own table): its size, read without a lock
_ACTIVE: dict = getattr(threading, "_active", {})


def enter_child(keep: tuple[int, ...], stderr: int) -> None:
    """Once, first thing in a task process: neutralise inherited files; stderr to the rank."""
    null = os.open(os.devnull, os.O_RDWR)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep and fd != null and fd > 2:
            try:
                os.dup2(null, fd, inheritable=False)
            except OSError:
                pass
    os.dup2(null, 0)
    os.dup2(stderr, 2)
    os.close(null)
    _fresh_stdio()
    # its own process group: what its tasks leave running (a pool's workers) is ended
    # with it, and holds no launcher's pipe open past the run
    os.setpgid(0, 0)
    _die_with_parent()
    try:  # the kernel, and a Slurm cgroup, kill this process before any rank
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write("1000")
    except OSError:
        pass
    sys.breakpointhook = _no_breakpoint


def memory_kib(pid: int | str, field: str) -> int:
    """A ``/proc/PID/status`` memory field in KiB (``VmData``, ``RssAnon``); 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def cap_memory(nbytes: int) -> None:
    """This process may grow its private writable memory by ``nbytes`` (RLIMIT_DATA).

    Address space (RLIMIT_AS) is never capped: it counts the mapped shared window and a
    GPU's reservations, which take no memory. Over the cap, an allocation fails
    (``MemoryError``) in the task that asked for it.
    """
    import resource

    limit = memory_kib("self", "VmData") * 1024 + nbytes
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def size_text(nbytes: int) -> str:
    for unit, power in (("T", 40), ("G", 30), ("M", 20)):
        if nbytes >= 1 << power:
            return f"{nbytes / (1 << power):.3g}{unit}"
    return f"{nbytes}B"


def stops_reach(rank: int, stopper) -> None:
    """A stop signal sent to the task process (Slurm signals every process of a step)
    stops it, and is passed on to its rank, which stops the run."""
    from ._stop import STOP_SIGNALS

    def on_signal(signum, frame):
        stopper.request(signal.Signals(signum).name)
        try:
            os.kill(rank, signum)
        except ProcessLookupError:
            pass

    for name in STOP_SIGNALS:
        signal.signal(getattr(signal, name), on_signal)


def _fresh_stdio() -> None:
    """New ``sys.stdin/stdout/stderr`` objects over fds 0-2, as the old ones were set up:
    a rank's thread (its progress line) may have held one's lock at the fork, and the
    child's copy of that lock would never be released."""
    import io

    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        old = getattr(sys, name)
        raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
        buffered = io.BufferedReader(raw) if fd == 0 else io.BufferedWriter(raw)
        setattr(
            sys,
            name,
            io.TextIOWrapper(
                buffered,
                encoding=getattr(old, "encoding", None),
                errors=getattr(old, "errors", None),
                line_buffering=bool(getattr(old, "line_buffering", fd == 2)),
                write_through=fd == 2,
            ),
        )


def _die_with_parent() -> None:
    """SIGKILL this process when its rank ends (Linux's PR_SET_PDEATHSIG)."""
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the rank ended before the call took hold
        os._exit(1)


def _no_breakpoint(*args, **kwargs):
    raise UsageError(
        "breakpoint() in a task: a task has no terminal (its stdin is /dev/null); debug it "
        "alone with: mpibatch rerun FILE --task N"
    )


class Restore:
    """Notes what a task changes in its process and puts it back after the task."""

    def __init__(self) -> None:
        self.cwd = os.getcwd()
        self.environ = dict(os.environ)
        self.err = np.geterr()
        self.stdio = (sys.stdin, sys.stdout, sys.stderr)
        self.handlers = {s: signal.getsignal(s) for s in _signals()}
        self.threads = len(_ACTIVE)
        self.retire = False  # a task left threads running: this process ends after the row
        self.dirty = False
        self._wrapped: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> Restore:
        self.handlers = {s: signal.getsignal(s) for s in _signals()}  # mpibatch's, installed
        self._wrap(os, "chdir")
        self._wrap(os, "fchdir")
        self._wrap(np, "seterr")
        original_signal = signal.signal

        def noted_signal(sig, handler):  # the handler before the task's, to put back
            self.handlers.setdefault(sig, signal.getsignal(sig))
            self.dirty = True
            return original_signal(sig, handler)

        self._wrapped.append((signal, "signal", original_signal))
        signal.signal = noted_signal
        env, kind = os.environ, type(os.environ)
        noting = {"__setitem__": self._noting(kind.__setitem__)}
        noting["__delitem__"] = self._noting(kind.__delitem__)
        env.__class__ = type("Environ", (kind,), noting)
        self._wrapped.append((env, "__class__", kind))
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, original in self._wrapped:
            setattr(owner, name, original)

    def _noting(self, fn):
        def noted(*args, **kwargs):
            self.dirty = True
            return fn(*args, **kwargs)

        return noted

    def _wrap(self, owner, name: str) -> None:
        original = getattr(owner, name)
        self._wrapped.append((owner, name, original))
        setattr(owner, name, self._noting(original))

    def changed(self) -> bool:
        """Did the last task change anything :meth:`after_task` puts back? (cheap)"""
        stdin, stdout, stderr = self.stdio
        return (
            self.dirty
            or sys.stdout is not stdout
            or sys.stderr is not stderr
            or sys.stdin is not stdin
            or stdout.closed
            or stderr.closed
            or len(_ACTIVE) != self.threads
        )

    def after_task(self) -> None:
        """Between tasks: undo what the last task changed (cheap when it changed nothing)."""
        stdin, stdout, stderr = self.stdio
        if sys.stdout is not stdout or sys.stderr is not stderr or sys.stdin is not stdin:
            self._stdio()
        elif stdout.closed or stderr.closed:
            self._stdio()
        if len(_ACTIVE) != self.threads:
            self._threads()
        if self.dirty:
            self.dirty = False
            self._undo()

    def _undo(self) -> None:
        next(w[2] for w in self._wrapped if w[1] == "chdir")(self.cwd)
        if dict(os.environ) != self.environ:
            for key in set(os.environ) - set(self.environ):
                del os.environ[key]
            os.environ.update(self.environ)
        next(w[2] for w in self._wrapped if w[1] == "seterr")(**self.err)
        put = next(w[2] for w in self._wrapped if w[1] == "signal")
        for sig, handler in self.handlers.items():
            if signal.getsignal(sig) is not handler and handler is not None:
                put(sig, handler)
        self.dirty = False

    def _stdio(self) -> None:
        streams = []
        for fd, (name, was) in enumerate(
            zip(("stdin", "stdout", "stderr"), self.stdio, strict=True)
        ):
            if getattr(was, "closed", True):
                was = os.fdopen(fd, "r" if fd == 0 else "w", closefd=False, buffering=1)
            streams.append(was)
            setattr(sys, name, was)
        self.stdio = tuple(streams)  # type: ignore[assignment]

    def _threads(self) -> None:
        left = [t for t in threading.enumerate() if t.is_alive() and not t.daemon]
        if len(left) > 1:  # the main thread is one
            self.retire = True
        self.threads = len(_ACTIVE)


class GlobalRandom:
    """Did tasks draw from numpy's or Python's global random state? (then their results
    depend on -np and the schedule). Compared per block: a few microseconds."""

    def __init__(self) -> None:
        self.used = False
        self.last = self._state()

    @staticmethod
    def _state() -> tuple:
        import random

        try:  # what np.random.random() and friends draw from
            mt = np.random.mtrand._rand._bit_generator.state["state"]
            legacy = (int(mt["pos"]), hash(mt["key"].tobytes()))
        except (AttributeError, KeyError, TypeError):
            legacy = (0, 0)
        return hash(random.getstate()), *legacy

    def check(self) -> bool:
        """True once a block changed either state (it stays True)."""
        now = self._state()
        self.used = self.used or now != self.last
        self.last = now
        return self.used


class StderrTail:
    """A pipe for task processes' stderr: forwarded to the rank's by a thread, which keeps
    the last ``keep`` bytes or so for a failure's account."""

    def __init__(self, keep: int) -> None:
        self.keep, self.chunks = keep, collections.deque()  # type: ignore[var-annotated]
        self._read, self.write_fd = os.pipe()
        threading.Thread(target=self._pump, daemon=True, name="mpibatch-stderr").start()

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")

    def close(self) -> None:
        """The rank's end of writing (the thread ends once the children's ends close too)."""
        os.close(self.write_fd)

    def _pump(self) -> None:
        chunks, kept = self.chunks, 0
        while chunk := os.read(self._read, 65536):
            os.write(2, chunk)
            chunks.append(chunk)
            kept += len(chunk)
            while len(chunks) > 1 and kept - len(chunks[0]) >= self.keep:
                kept -= len(chunks.popleft())
        os.close(self._read)


def death(status: int) -> str:
    """Why a task process with wait status ``status`` ended, for its task's failure."""
    from ._stop import EXIT_STUCK

    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        why = f"its process was killed by {name} (signal {sig})"
        if sig == signal.SIGKILL:
            why += "; the OOM killer sends it when memory runs out"
        return why
    code = os.WEXITSTATUS(status)
    if code == EXIT_STUCK:
        return "it did not return after it was interrupted (--task-timeout); killed"
    return f"its process ended with exit status {code} without returning"


def _signals() -> list[signal.Signals]:
    return [getattr(signal, name) for name in _KEEP_SIGNALS]
