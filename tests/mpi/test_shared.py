"""Shared inputs (``load()``, ``shared=``): one read-only copy per node, the same bytes on
every rank, recorded in /shared and checked on resume and rerun; ``setup``/``teardown``
per rank; load/setup failures as one line on every rank. Every launch has a timeout.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import MPIBATCH, MPIEXEC, mpibatch, mpirun

CONTENTS = """
import numpy as np

def arrays(folder):
    rng = np.random.default_rng(5)
    rec = np.zeros(5, dtype=[("id", "i4"), ("name", "U6"), ("xy", "f4", (2,))])
    rec["id"], rec["name"], rec["xy"] = np.arange(5), ["a", "bb", "ccc", "dddd", "e"], 1.5
    return {
        "f64": rng.normal(size=(40, 3)),
        "i8": rng.integers(-100, 100, size=(2, 3, 4)).astype(np.int8),
        "bools": rng.random(17) < 0.5,
        "c128": rng.normal(size=6) + 1j,
        "fortran": np.asfortranarray(rng.normal(size=(7, 5))),
        "strings": np.array(["alpha", "b", "gamma-ray"]),
        "bytes": np.array([b"x", b"yy"]),
        "records": rec,
        "empty": np.zeros((0, 3)),
        "scalar": np.array(3.25),
        "mapped": np.load(folder + "/m.npy", mmap_mode="r"),
    }

FOLDER = __file__.rsplit("/", 1)[0]

def load():
    return arrays(FOLDER)

def _same(shared):
    want = arrays(FOLDER)
    assert sorted(shared) == sorted(want), sorted(shared)
    for k, v in want.items():
        got = shared[k]
        assert got.dtype == v.dtype and got.shape == v.shape, (k, got.dtype, got.shape)
        assert np.array_equal(got, v), k
        assert not got.flags.writeable, k

def setup(ctx):
    _same(ctx.shared)  # on every rank: a mismatch fails the run (exit 2)
    return "checked"

def task(params, rng, ctx):
    try:
        ctx.shared["f64"][0, 0] = 1.0
        refused = 0
    except ValueError:
        refused = 1
    _same(ctx.shared)
    return {"same": int(ctx.state == "checked"), "refused": refused}
"""


def _file(folder: Path, text: str, name: str = "study.py") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _results(out: Path) -> dict:
    with h5py.File(out, "r") as f:
        return {k: f["results"][k][()] for k in f["results"]}


def _shared_attrs(out: Path) -> dict:
    with h5py.File(out, "r") as f:
        return {k: dict(f["shared"][k].attrs) for k in f["shared"]}


@pytest.mark.parametrize("np_", [None, 2])
def test_every_rank_reads_the_same_read_only_arrays_of_every_kind(tmp_path, np_):
    np.save(tmp_path / "m.npy", np.arange(30, dtype=np.uint16).reshape(5, 6))
    task = _file(tmp_path, CONTENTS)
    out = tmp_path / "c.h5"
    r = mpibatch(np_, "run", task, "--reps", 6, "--out", out, timeout=120)
    assert r.returncode == 0, r.stderr
    res = _results(out)
    assert (res["same"] == 1).all() and (res["refused"] == 1).all()
    sys.path.insert(0, str(tmp_path))
    try:
        import study  # the file's own arrays, hashed here

        want = study.arrays(str(tmp_path))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("study", None)
    attrs = _shared_attrs(out)
    assert list(attrs) == list(want)  # in load()'s order
    for k, v in want.items():
        blob = np.ascontiguousarray(v).tobytes()
        assert attrs[k]["sha256"] == hashlib.sha256(blob).hexdigest(), k
        assert list(attrs[k]["shape"]) == list(v.shape)
        assert int(attrs[k]["nbytes"]) == v.nbytes
    assert attrs["records"]["dtype"].startswith("[('id', '<i4')")


BIG = """
import hashlib
import sys

import numpy as np

import mpibatch
from mpibatch import _shared

N = (1 << 31) + 12345  # over 2 GiB of uint8: over MPI's int count in one buffer
BLOCK = (np.arange(1 << 20) * 7 % 251).astype(np.uint8)

def pattern_sha():
    h, left = hashlib.sha256(), N
    while left:
        piece = BLOCK[: min(left, BLOCK.size)]
        h.update(piece)
        left -= piece.size
    return h.hexdigest()

def load():
    return {"big": np.resize(BLOCK, N), "small": np.arange(5.0)}

SEEN = {}  # this rank's hash of the big array, computed by its first task

def task(params, rng, ctx):
    big = ctx.shared["big"]
    if "sha" not in SEEN:
        SEEN["sha"] = hashlib.sha256(big).hexdigest()
    return {"n": big.size, "last": int(big[-1]), "sha": int(SEEN["sha"][:15], 16)}

if __name__ == "__main__":
    _shared.PRETEND_NODES = 2  # rank 1 is another node: the bytes travel by Ibcast
    _shared.CHUNK = 3 << 28  # 768 MiB pieces: several, the last a short one
    s = mpibatch.run(task, {"k": [0, 1, 2, 3]}, seed=1, out=sys.argv[1], overwrite=True,
                     dedicated_root=True,  # rank 1 (the other node) runs every task
                     shared=load)
    if s is not None:
        print("expected", pattern_sha(), int(pattern_sha()[:15], 16), flush=True)
"""


def test_an_array_over_2_gib_reaches_a_second_node_in_pieces(tmp_path):
    script = _file(tmp_path, BIG, "big.py")
    out = tmp_path / "big.h5"
    r = mpirun(2, sys.executable, script, out, timeout=600)
    assert r.returncode == 0, r.stderr
    expected, as_int = r.stdout.split("expected ")[1].split()
    res = _results(out)
    assert (res["n"] == (1 << 31) + 12345).all()
    with h5py.File(out, "r") as f:
        assert (f["tasks/rank"][()] == 1).all()  # read on the second node
    assert (res["sha"] == int(as_int)).all()
    assert _shared_attrs(out)["big"]["sha256"] == expected
    with h5py.File(out, "r") as f:
        assert int(f["shared"].attrs["nodes"]) == 2


PSS = """
import os, time
from pathlib import Path
import numpy as np

MB = int(os.environ["SHARED_MB"])

def load():
    return {"X": np.ones(MB << 17)}  # float64: MB MiB

def setup(ctx):
    float(ctx.shared["X"].sum())  # touch every page
    folder = Path(os.environ["PSS_DIR"])
    (folder / f"tmp.{ctx.rank}").write_text(str(os.getpid()))
    os.replace(folder / f"tmp.{ctx.rank}", folder / f"pid.{ctx.rank}")  # whole when seen
    end = time.monotonic() + 60
    while not (folder / "go").exists() and time.monotonic() < end:
        time.sleep(0.02)

def task(params, rng):
    return 1.0
"""


def _pss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return next(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:"))


def _summed_pss(tmp_path, mb: int, n: int = 4) -> int:
    """Summed PSS (KiB) of the ``n`` ranks while they all hold the data in setup."""
    task = _file(tmp_path, PSS, "pss.py")
    folder = tmp_path / f"pss{mb}"
    folder.mkdir()
    env = {"SHARED_MB": str(mb), "PSS_DIR": str(folder)}
    cmd = [MPIEXEC, "-n", str(n), MPIBATCH, "run", str(task), "--reps", str(n)]
    cmd += ["--out", str(tmp_path / f"p{mb}.h5")]
    proc = subprocess.Popen(
        cmd,
        env={**__import__("os").environ, **env},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        end = time.monotonic() + 120
        while len(list(folder.glob("pid.*"))) < n and time.monotonic() < end:
            time.sleep(0.05)
        pids = [int(p.read_text()) for p in folder.glob("pid.*")]
        assert len(pids) == n, proc.stderr.read() if proc.poll() is not None else "no pids"
        total = sum(_pss_kib(pid) for pid in pids)
        (folder / "go").touch()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        return total
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_summed_pss_grows_by_one_copy_not_one_per_rank(tmp_path):
    small, big = _summed_pss(tmp_path, 1), _summed_pss(tmp_path, 256)
    grew = (big - small) / (255 << 10)  # in copies of the extra 255 MiB
    assert 0.8 < grew < 1.5, (small, big, grew)  # 4 ranks with a copy each: about 4


RESUMABLE = """
import numpy as np
from pathlib import Path

def load():
    return {"w": np.load(Path(__file__).parent / "w.npy")}

def task(params, rng, ctx):
    if params["rep"] >= 2 and not (Path(__file__).parent / "finish").exists():
        raise RuntimeError("not yet")
    return float(ctx.shared["w"].sum())
"""


def test_resume_and_rerun_refuse_changed_data_unless_forced(tmp_path):
    np.save(tmp_path / "w.npy", np.arange(10.0))
    task = _file(tmp_path, RESUMABLE)
    out = tmp_path / "r.h5"
    r = mpibatch(2, "run", task, "--reps", 4, "--out", out, timeout=120)
    assert r.returncode == 1, r.stderr  # two tasks failed: resumable
    r = mpibatch(None, "rerun", out, "--task", 0, timeout=120)
    assert r.returncode == 0 and "matches the stored result" in r.stdout, r.stdout + r.stderr
    np.save(tmp_path / "w.npy", np.arange(10.0) + 1)  # the data changed
    (tmp_path / "finish").touch()
    r = mpibatch(2, "run", task, "--reps", 4, "--out", out, "--resume", timeout=120)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if "cannot resume" in line]
    assert len(lines) == 1, r.stderr
    assert "shared input 'w' changed since the run" in lines[0] and "--force" in lines[0]
    r = mpibatch(None, "rerun", out, "--task", 0, timeout=120)
    assert r.returncode == 2 and "shared input 'w' changed" in r.stderr, r.stderr
    r = mpibatch(2, "run", task, "--reps", 4, "--out", out, "--resume", "--force", timeout=120)
    assert r.returncode == 0, r.stderr
    assert _results(out)["value"].tolist() == [45.0, 45.0, 55.0, 55.0]
    new = hashlib.sha256((np.arange(10.0) + 1).tobytes()).hexdigest()
    assert _shared_attrs(out)["w"]["sha256"] == new


ORDER = """
import os
from pathlib import Path

def _log(rank, text):
    with open(Path(os.environ["LOG_DIR"]) / f"rank{rank}.log", "a") as fh:
        fh.write(text + "\\n")

def setup(ctx):
    _log(ctx.rank, f"setup shared={ctx.shared is None}")
    return {"rank": ctx.rank, "calls": 0}

def teardown(state):
    _log(state["rank"], f"teardown calls={state['calls']}")

def task(params, rng, ctx):
    ctx.state["calls"] += 1  # the same object for every task of the rank
    _log(ctx.rank, f"task {ctx.task_id}")
    return {"state_rank": ctx.state["rank"], "rank": ctx.rank}
"""


@pytest.mark.parametrize("np_", [None, 3])
def test_setup_runs_before_a_ranks_tasks_and_teardown_after_with_one_state(tmp_path, np_):
    task = _file(tmp_path, ORDER)
    logs = tmp_path / "logs"
    logs.mkdir()
    out = tmp_path / "o.h5"
    r = mpibatch(np_, "run", task, "--reps", 12, "--out", out, env={"LOG_DIR": str(logs)})
    assert r.returncode == 0, r.stderr
    res = _results(out)
    assert (res["state_rank"] == res["rank"]).all()
    files = sorted(logs.iterdir())
    assert len(files) == (np_ or 1)  # setup and teardown on every rank, tasks or not
    ran = 0
    for path in files:
        lines = path.read_text().splitlines()
        tasks = [line for line in lines if line.startswith("task ")]
        assert lines[0] == "setup shared=True" and lines[1:-1] == tasks, lines
        assert lines[-1] == f"teardown calls={len(tasks)}", lines
        ran += len(tasks)
    assert ran == 12


FAILING = """
import numpy as np

class Frame:  # a stand-in for a DataFrame: not a numpy array
    pass
Frame.__module__ = "pandas.core.frame"

def load():
    kind = "{kind}"
    if kind == "raise":
        raise ValueError("the data is not there")
    if kind == "list":
        return [np.zeros(3)]
    if kind == "frame":
        return {{"df": Frame()}}
    if kind == "object":
        return {{"o": np.array([{{}}, None])}}
    return {{"X": np.zeros(3)}}

def setup(ctx):
    if "{kind}" == "setup" and ctx.rank == 1:
        raise KeyError("no model for this rank")

def task(params, rng):
    return 1.0
"""


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("raise", "failed on rank 0 on {host}: ValueError: the data is not there"),
        ("list", "expected a dict of name -> numpy array, got list"),
        (
            "frame",
            "'df' is a pandas.core.frame.Frame; expected a numpy array: convert it "
            "with df.to_records(index=False)",
        ),
        ("object", "'o' has dtype object"),
        ("setup", "setup(ctx) failed on rank 1 on {host}: KeyError: 'no model for this rank'"),
    ],
)
def test_a_failing_load_or_setup_is_one_line_and_every_rank_exits_2(tmp_path, kind, message):
    import socket

    task = _file(tmp_path, FAILING.format(kind=kind))
    out = tmp_path / "f.h5"
    r = mpibatch(2, "run", task, "--reps", 4, "--out", out, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    hits = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(hits) == 1, r.stderr  # said once (rank 0), on one line
    assert message.format(host=socket.gethostname()) in hits[0], hits[0]
    assert "Traceback" not in r.stderr


API = """
import sys
import numpy as np
import mpibatch
from mpi4py import MPI

def task(params, rng, ctx):
    return float(ctx.shared["X"][params["i"]].sum())

if __name__ == "__main__":
    rank = MPI.COMM_WORLD.Get_rank()
    X = np.arange(12.0).reshape(4, 3)
    given = {"dict": {"X": X} if rank == 0 else None, "callable": lambda: {"X": X}}
    s = mpibatch.run(task, {"i": [0, 1, 2, 3]}, seed=3, out=sys.argv[2], overwrite=True,
                     shared=given[sys.argv[1]])
    if rank == 0:
        print("sums", mpibatch.open(sys.argv[2]).results["value"].tolist(), flush=True)
"""


@pytest.mark.parametrize("how", ["dict", "callable"])
def test_run_takes_shared_arrays_from_rank_0(tmp_path, how):
    script = _file(tmp_path, API, "api.py")
    r = mpirun(2, sys.executable, script, how, tmp_path / "a.h5", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "sums [3.0, 12.0, 21.0, 30.0]" in r.stdout


EVERY_NODE = """
import sys
import numpy as np
import mpibatch
from mpi4py import MPI
from mpibatch import _shared

shared_load = "every_node"

def load():
    rank = MPI.COMM_WORLD.Get_rank()
    open(sys.argv[2] + f".loaded{rank}", "w").close()
    bump = 1 if (sys.argv[1] == "differ" and rank == 1) else 0
    return {"X": np.arange(6.0) + bump}

def task(params, rng, ctx):
    return float(ctx.shared["X"].sum())

if __name__ == "__main__":
    _shared.PRETEND_NODES = 2
    try:
        mpibatch.run(__file__, {"i": [0, 1]}, out=sys.argv[2], overwrite=True)
    except mpibatch.errors.UsageError as exc:
        print("refused:", exc, flush=True)
"""


@pytest.mark.parametrize("data", ["same", "differ"])
def test_every_node_loads_its_own_copy_and_the_bytes_are_checked(tmp_path, data):
    script = _file(tmp_path, EVERY_NODE, "every.py")
    out = tmp_path / "e.h5"
    r = mpirun(2, sys.executable, script, data, out, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.glob("e.h5.loaded*")) == ["e.h5.loaded0", "e.h5.loaded1"]
    if data == "same":
        assert "refused" not in r.stdout
        assert _results(out)["value"].tolist() == [15.0, 15.0]
    else:
        assert r.stdout.count("refused:") == 2  # on both ranks
        assert "rank 1 on" in r.stdout and "loaded other bytes than rank 0" in r.stdout


def test_info_shows_the_shared_bytes_per_node_and_each_ranks_peak_rss(tmp_path):
    np.save(tmp_path / "m.npy", np.arange(30, dtype=np.uint16).reshape(5, 6))
    task = _file(tmp_path, CONTENTS)
    out = tmp_path / "i.h5"
    assert mpibatch(2, "run", task, "--reps", 2, "--out", out).returncode == 0
    r = mpibatch(None, "info", out)
    assert r.returncode == 0, r.stderr
    assert "per node on 1 node(s), one copy each: f64 <f8[40, 3]" in r.stdout
    peak = next(line for line in r.stdout.splitlines() if line.startswith("peak RSS"))
    assert "0: " in peak and "1: " in peak and "MiB" in peak
    with h5py.File(out, "r") as f:
        peaks = f["ranks/peak_rss_bytes"][()]
        assert peaks.shape == (2,) and (peaks > 10 << 20).all()
        assert int(f["shared"].attrs["bytes_per_node"]) >= 40 * 3 * 8
