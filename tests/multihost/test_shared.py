"""Shared inputs on pretend hosts: one window per host, filled over TCP between the hosts'
leaders, the same bytes on every rank of every host."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np

TASK = """\
import hashlib
import numpy as np

def load():
    return {"X": np.arange(3_000_000, dtype=np.float64).reshape(1000, 3000)}

def task(params, rng, ctx):
    X = ctx.shared["X"]
    digest = hashlib.sha256(X.tobytes()).digest()
    return {"sum": float(X.sum()), "digest0": int.from_bytes(digest[:7], "little"),
            "writeable": bool(X.flags.writeable), "local": ctx.local_rank}
"""


def test_shared_inputs_are_one_window_per_pretend_host(cluster, mpi, tmp_path):
    task = tmp_path / "shared_task.py"
    task.write_text(TASK)
    out = tmp_path / "shared.h5"
    r = mpi.mpibatch(
        cluster, "run", task, "--reps", 12, "--seed", 3, "--out", out, "--quiet",
        n=4, hosts=cluster.hosts[:2],
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    X = np.arange(3_000_000, dtype=np.float64)
    want = int.from_bytes(hashlib.sha256(X.tobytes()).digest()[:7], "little")
    with h5py.File(out, "r") as f:
        assert (f["tasks/status"][()] == 1).all()
        assert (f["results/sum"][()] == X.sum()).all()
        assert (f["results/digest0"][()] == want).all()
        assert not f["results/writeable"][()].any()
        assert int(f["shared"].attrs["nodes"]) == 2  # one window on each pretend host
        assert int(f["shared"].attrs["bytes_per_node"]) == X.nbytes
        ran = set(f["tasks/rank"][()].tolist())
        hosts = {h.decode() if isinstance(h, bytes) else h for h in f["ranks/host"][()]}
    assert hosts == set(cluster.hosts[:2]) and len(ran) >= 2
