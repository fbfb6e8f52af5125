"""Tasks that misbehave on purpose, chosen by FAULT (and FAULT_AT, the rep it hits)."""

import os
import signal
import time

ATTEMPTS: dict = {}


def task(params, rng):
    kind, at = os.environ.get("FAULT", ""), int(os.environ.get("FAULT_AT", "3"))
    if os.environ.get("FAULT_MARK"):  # a task of this rank has started (its handlers are in)
        open(os.path.join(os.environ["FAULT_MARK"], str(os.getpid())), "a").close()
    i = params["rep"]
    if kind == "flaky":  # fails on the first attempt of every third task only
        ATTEMPTS[i] = ATTEMPTS.get(i, 0) + 1
        if i % 3 == 0 and ATTEMPTS[i] == 1:
            raise ConnectionError(f"transient failure of rep {i}")
    if kind == "always" and i % 2 == 0:
        raise ValueError(f"rep {i} always fails")
    if i == at and kind == "hang":
        time.sleep(10_000)
    if i == at and kind == "hang_hard":  # cannot be interrupted from Python
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
        time.sleep(10_000)
    if i == at and kind == "abort":
        from mpi4py import MPI

        MPI.COMM_WORLD.Abort(7)
    if i == at and kind == "exit":
        raise SystemExit(0)
    if kind == "chatty":
        print("x" * 100_000, flush=True)
    time.sleep(float(os.environ.get("FAULT_SLEEP", "0.002")))
    return {"x": rng.random(), "n": rng.normal(size=3)}
