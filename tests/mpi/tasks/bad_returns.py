"""Return values that cannot be stored, chosen by BAD_KIND."""

import os

import numpy as np

KIND = os.environ.get("BAD_KIND", "string")


def task(params, rng):
    i = params["rep"]
    if KIND == "string":
        return "hello"
    if KIND == "shape":
        return {"v": np.zeros(2 if i < 5 else 3)}
    if KIND == "keys":
        return {"a": 1.0} if i < 5 else {"b": 1.0}
    if KIND == "ragged":
        return [[1, 2], [3]]
    if KIND == "object":
        return np.array([object()])
    if KIND == "dtype":
        return 1.5 if i < 5 else "x"
    raise SystemExit("unknown BAD_KIND")
