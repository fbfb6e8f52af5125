"""Each result's width (and Python vs NumPy type) varies by task; TYPES_MODE picks the case.

"widths": int8/int64/uint16/Python int, float32/float64/float, bool/np.bool_,
complex64/complex, int16/int64 arrays, and a failure every 7 tasks: stored dtypes must not
depend on which task ends first. "mean": 0 on empty input and x.mean() otherwise, an int
in some tasks and a float in others: a schema error, whatever the order. "declared": the
same with ``results`` declaring "m" float32 and "n" int8 (200 does not fit: that task fails).
"""

import os

import numpy as np

MODE = os.environ.get("TYPES_MODE", "widths")
if MODE == "declared":
    results = {"m": "float32", "n": "int8"}


def task(params, rng):
    i = params["rep"]
    x = rng.normal(size=i % 4)
    if MODE == "mean":
        return {"m": 0 if x.size == 0 else x.mean()}
    if MODE == "declared":
        return {"m": 0 if x.size == 0 else x.mean(), "n": 200 if i % 9 == 4 else i}
    if i % 7 == 3:
        raise ValueError("a failed row, to check the fill values")
    k = int(rng.integers(-100, 100))
    s = float(x.sum())
    return {
        "i": (np.int8(k), np.int64(k * 1000), k, np.uint16(abs(k)))[i % 4],
        "f": (np.float32(s), np.float64(s), s)[i % 3],
        "b": (s > 0) if i % 2 else np.bool_(s > 0),
        "c": np.complex64(complex(s, k)) if i % 2 else complex(s, k),
        "v": np.arange(3, dtype=np.int16 if i % 2 else np.int64) * k,
    }
