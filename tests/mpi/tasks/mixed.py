"""Several output kinds, cheap tasks: used for invariance across -np and rounds."""

import os


def grid():
    return {"mu": [0.0, 1.5, -2.0], "kind": ["a", "bb"]}


def task(params, rng):
    size = int(os.environ.get("MIXED_SIZE", "3"))
    x = rng.normal(params["mu"], size=size)
    return {"mean": x.mean(), "draws": x, "count": rng.integers(0, 1000), "flag": bool(x[0] > 0)}
