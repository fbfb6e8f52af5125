"""Tasks that take a while (SLEEPY_MS each, task 0 optionally slow), for schedules/progress."""

import os
import time


def task(params, rng):
    ms = float(os.environ.get("SLEEPY_MS", "5"))
    if params["rep"] == 0:
        ms *= float(os.environ.get("SLEEPY_FIRST_X", "1"))
    time.sleep(ms / 1000)
    return {"x": rng.random(), "v": rng.normal(size=2)}
