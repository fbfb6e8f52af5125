"""Skewed task times (every 4th task 30 ms, the rest 1 ms); odd tasks fail while FLAKY_FAIL
is set, so that a --resume (without it) has work left: for the schedule a resume keeps."""

import os
import time


def task(params, rng, ctx):
    time.sleep(0.030 if ctx.task_id % 4 == 0 else 0.001)
    if os.environ.get("FLAKY_FAIL") and ctx.task_id % 2:
        raise ValueError(f"task {ctx.task_id} fails this time")
    return {"x": rng.random()}
