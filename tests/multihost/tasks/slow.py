"""Tasks that take SLOW_MS each; the first task a process runs creates the file $MARK
(so a test knows the run is under way before it signals it)."""

import os
import time
from pathlib import Path


def grid():
    return {"mu": [0.0, 1.0, 2.0, 3.0]}


def task(params, rng):
    mark = os.environ.get("MARK")
    if mark:
        Path(mark).touch()
    time.sleep(float(os.environ.get("SLOW_MS", "0")) / 1000)
    x = rng.normal(params["mu"], size=3)
    return {"mean": x.mean(), "draws": x}
