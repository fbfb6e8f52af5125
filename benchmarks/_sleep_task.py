"""A task that sleeps SLEEP_MS milliseconds (benchmarks/faults.py)."""

import os
import time


def task(params, rng):
    time.sleep(float(os.environ.get("SLEEP_MS", "50")) / 1000)
    return rng.random()
