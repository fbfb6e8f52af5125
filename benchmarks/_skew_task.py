"""Task file for benchmarks/skew.py: task ``i`` sleeps for its planned duration.

The durations (seconds, one per task id) are a .npy named by the environment variable
``MPIBATCH_BENCH_DURATIONS``; ``mpiexec`` and ``multiprocessing`` pass it on to every process.
Each task returns its id and one normal draw from its stream, so a run's results can be checked
against ``Generator(PCG64(seed).jumped(i)).normal()`` in task order.

Tasks sleep rather than spin: on a 2-core machine at np=4 (oversubscribed), spinning tasks
would measure the CPU share each rank gets, not the schedule; sleeping tasks let every rank
hold one "virtual core", so max(total / np, longest task) is a bound a perfect schedule meets.
"""

import os
import time

import numpy as np

ENV = "MPIBATCH_BENCH_DURATIONS"
_durations = None


def duration(i: int) -> float:
    global _durations
    if _durations is None:
        _durations = np.load(os.environ[ENV])
    return float(_durations[i])


def run_task(i: int, rng) -> dict:
    seconds = duration(i)
    if seconds > 0:
        time.sleep(seconds)
    return {"id": i, "draw": rng.normal()}


def task(params, rng):
    """mpibatch's entry point: with only ``--reps N``, the task id is ``params["rep"]``."""
    return run_task(int(params["rep"]), rng)


def peer_task(seed: int, i: int) -> tuple[int, float, float, float]:
    """The peers' entry point: the same work on task ``i``'s stream, derived as numpy does.

    Returns the id, the draw, and when the task started and ended (``time.time()``; every
    process is on this machine, so the clocks agree), as mpibatch records in /tasks.
    """
    start = time.time()
    out = run_task(i, np.random.Generator(np.random.PCG64(seed).jumped(i)))
    return out["id"], out["draw"], start, time.time()
