"""Tasks that do to their process what ordinary user code does (tests/mpi/test_task_processes.py).

Each task first checks that nothing an earlier task did to the process is still there
(``clean``), then does its ``kind``: end its process in every way a process can end, or
change what a task may change (cwd, environment, stdout, numpy's error state, a signal
handler, threads), which must not reach the rank's next tasks.
"""

import ctypes
import os
import signal
import sys
import threading
import time

import numpy as np

ENDS = {  # kind -> what the failure's message names
    "segv": "SIGSEGV",
    "abort": "SIGABRT",
    "exit0": "exit status 0 without returning",
    "exit3": "exit status 3 without returning",
    "sigkill": "SIGKILL",
    "c_exit": "exit status 7 without returning",
    "mpi_abort": "exit status 5 without returning",
}
CHANGES = ["chdir", "environ", "close_stdout", "seterr", "signal", "thread"]
START = os.getcwd()
ERR = np.geterr()


def grid():
    return {"kind": ["ok", *ENDS, *CHANGES, "breakpoint", "base"]}


def _clean() -> float:
    return float(
        os.getcwd() == START
        and "UNRULY_LEAK" not in os.environ
        and not sys.stdout.closed
        and np.geterr() == ERR
        and signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
    )


def task(params, rng):
    clean = _clean()
    x = float(rng.random())
    kind = params["kind"]
    if kind == "segv":
        ctypes.string_at(0)
    elif kind == "abort":
        os.abort()
    elif kind == "exit0":
        os._exit(0)
    elif kind == "exit3":
        os._exit(3)
    elif kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "c_exit":
        ctypes.CDLL(None).exit(7)  # a C extension calling exit(): atexit handlers run
    elif kind == "mpi_abort":
        from mpi4py import MPI

        MPI.COMM_WORLD.Abort(5)
    elif kind == "chdir":
        os.chdir("/")
    elif kind == "environ":
        os.environ["UNRULY_LEAK"] = "1"
    elif kind == "close_stdout":
        sys.stdout.close()
    elif kind == "seterr":
        np.seterr(all="raise")
    elif kind == "signal":
        signal.signal(signal.SIGUSR2, lambda *a: None)
    elif kind == "thread":
        threading.Thread(target=time.sleep, args=(0.5,)).start()  # left running
    elif kind == "breakpoint":
        breakpoint()
    elif kind == "base":
        raise KeyboardInterrupt("raised by the task")
    return {"x": x, "clean": clean}
