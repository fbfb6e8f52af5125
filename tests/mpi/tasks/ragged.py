"""Ragged arrays, strings and bytes (RAGGED_MODE picks the case).

"declared": results = {...} declares every key (the file is complete before any task);
task 5 returns a float where a str is declared and task 11 a ragged row of the wrong
inner shape: each fails alone. Every 7th task raises. "undeclared": str and bytes
inferred, numbers as usual. "api": no declaration here; the test passes run(results=...).
RAGGED_ROWS scales the row lengths (the kill trials write many megabytes).
"""

import os

import numpy as np

MODE = os.environ.get("RAGGED_MODE", "declared")
ROWS = int(os.environ.get("RAGGED_ROWS", "6"))
DECLARED = {
    "rewards": "ragged float64",
    "xy": ("ragged float32", (2,)),
    "model": "str",
    "names": ("str", (2,)),
    "blob": "bytes",
    "code": "str8",
}
if MODE == "declared":
    results = DECLARED


def task(params, rng):
    i = params["rep"]
    if i % 7 == 3:
        raise ValueError("a failed row")
    k = int(rng.integers(0, ROWS + 1))
    name = ("ridge", "lasso", "élastique", "")[i % 4]
    out = {
        "rewards": rng.normal(size=k),
        "xy": rng.normal(size=(k // 2, 2)).astype(np.float32),
        "model": name,
        "names": [name, str(k)],
        "blob": bytes([i % 256, 0, k % 256]),
        "code": f"c{i}",
    }
    if MODE == "undeclared":
        return {"model": name, "names": np.array([name, str(k)]), "blob": out["blob"], "k": k}
    if i == 5:
        out["model"] = 1.5  # does not fit its declaration: this task fails alone
    if i == 11:
        out["xy"] = np.zeros((2, 3))
    return out
