"""Tasks that fail with text HDF5 cannot hold as it is: a NUL, lone surrogates (odd bytes
through os.fsdecode), 20 MB; the others succeed."""

import os


def grid():
    return {"k": [0, 1, 2, 3, 4, 5]}


def task(params, rng):
    k = params["k"]
    if k == 1:
        raise ValueError("nul\x00byte")
    if k == 2:
        raise OSError("cannot open " + os.fsdecode(b"/data/caf\xe9"))
    if k == 3:
        raise RuntimeError("a" * 10_000_000 + "b" * 10_000_000)
    if k == 4:
        raise KeyError("\udcff")
    return {"v": rng.random()}
