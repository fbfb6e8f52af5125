"""One big read-only dataset to every worker: summed memory and time to data, side by side.

Run from the repository root, with the project's virtual environment active::

    python benchmarks/shared.py [--gb 2] [--np 2,4] [--systems ...] [--dir /tmp] [--markdown]

Every system gets ``--gb`` GiB of float64, made in one source process (rank 0 or the pool's
parent), to each of NP workers (``benchmarks/_shared_peer.py``):

- mpibatch: the task file's ``load()`` on rank 0, one shared-memory window per node,
  ``ctx.shared["data"]`` in ``setup(ctx)``;
- pickled bcast: ``comm.bcast(data)`` (mpi4py pickles it: a copy per rank);
- np.load mmap: rank 0 writes a ``.npy`` file (page cache), every rank ``np.load(mmap_mode="r")``;
- Pool initializer: ``multiprocessing.Pool(NP, initializer=f, initargs=(data,))`` with
  ``forkserver`` (Python 3.14's default on Linux: each worker unpickles its own copy);
- joblib: ``Parallel(n_jobs=NP)`` over NP calls taking the array (joblib dumps arrays over
  1 MB once and memory-maps them in the workers).

Measured per row: time to data, from the moment the data exists in the source process
(``t0``) until the last worker holds it (before reading it: each worker writes the time it
got it); then each worker reads every page and waits, and the parent sums the ``Pss`` of
``/proc/PID/smaps_rollup`` over the workers and the source process (rank 0 is a worker;
a pool's parent is not) while all of them hold it. Summed PSS counts each shared page once
in total (divided among its mappers), a private copy fully: it is the memory the system
really uses. The reference "one memcpy" is this process copying the data into freshly
allocated memory (page faults included: the window, a pickle and a file are fresh memory too).

Targets (mpibatch at the largest NP): summed PSS <= 1.15x the data; time to data <= the
pickled bcast's and within 1.5x of one memcpy. Rows run one after another; a row that
fails or cannot be measured says why. ``--gb`` scales the data down where NP copies do
not fit in memory (the pickled bcast and Pool hold about 2 copies per worker at the peak).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _bench import BINDIR, HERE, begin, print_table

PEER = HERE / "_shared_peer.py"
SYSTEMS = ("mpibatch", "pickled bcast", "np.load mmap", "Pool initializer", "joblib")


def command(system: str, n: int, out: Path) -> list[str]:
    mpiexec, py = str(BINDIR / "mpiexec"), sys.executable
    if system == "mpibatch":
        run = [str(BINDIR / "mpibatch"), "run", str(PEER), "--reps", str(n), "--out", str(out)]
        return [mpiexec, "-n", str(n), *run, "--quiet"]
    if system == "pickled bcast":
        return [mpiexec, "-n", str(n), py, str(PEER), "bcast"]
    if system == "np.load mmap":
        return [mpiexec, "-n", str(n), py, str(PEER), "npload"]
    return [py, str(PEER), "pool" if system == "Pool initializer" else "joblib", str(n)]


def pss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return next(int(ln.split()[1]) for ln in text.splitlines() if ln.startswith("Pss:"))


def measure(system: str, n: int, gb: float, base: Path) -> dict:
    """One row: launch, wait until every worker holds the data, read PSS, let go."""
    folder = Path(tempfile.mkdtemp(dir=base))
    env = {**os.environ, "SHARED_DIR": str(folder), "SHARED_GB": str(gb)}
    proc = subprocess.Popen(
        command(system, n, folder / "out.h5"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + 600
        while len(list(folder.glob("pid.*"))) < n and time.monotonic() < end:
            if proc.poll() is not None:
                return {"error": f"failed: {(proc.stderr.read() or '').strip()[-150:]}"}
            time.sleep(0.02)
        pids = [int(p.read_text()) for p in folder.glob("pid.*")]
        if len(pids) < n:
            return {"error": f"only {len(pids)} of {n} workers held the data in 600 s"}
        source = [] if system in ("mpibatch", "pickled bcast", "np.load mmap") else [proc.pid]
        pss = sum(pss_kib(p) for p in pids + source) * 1024
        t0 = float((folder / "t0").read_text())
        ready = max(float(p.read_text()) for p in folder.glob("ready.*"))
        (folder / "go").touch()
        _, err = proc.communicate(timeout=600)
        if proc.returncode:
            return {"error": f"exit {proc.returncode}: {err.strip()[-150:]}"}
        return {"pss": pss, "seconds": ready - t0}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        shutil.rmtree(folder, ignore_errors=True)


def one_memcpy(gb: float) -> float:
    data = np.full(int(gb * (1 << 30)) // 8, 1.5)
    t = time.perf_counter()
    copy = np.empty_like(data)
    np.copyto(copy, data)
    seconds = time.perf_counter() - t
    del copy, data
    return seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gb", type=float, default=2.0, help="GiB of float64 data (default 2)")
    p.add_argument("--np", default="2,4", help="worker counts (default 2,4)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated rows")
    p.add_argument("--dir", default=tempfile.gettempdir(), help="where markers and .npy go")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    begin("shared inputs: summed PSS and time to data")
    nbytes = int(args.gb * (1 << 30)) // 8 * 8
    memcpy = one_memcpy(args.gb)
    print(f"data: {args.gb:g} GiB float64; one memcpy into fresh memory: {memcpy:.2f} s")
    rows, verdicts = [], []
    for n in [int(x) for x in args.np.split(",")]:
        found = {}
        for system in args.systems.split(","):
            r = measure(system, n, args.gb, Path(args.dir))
            found[system] = r
            if "error" in r:
                rows.append([str(n), system, r["error"], "", "", ""])
                continue
            rows.append(
                [
                    str(n),
                    system,
                    f"{r['pss'] / (1 << 30):.2f}",
                    f"{r['pss'] / nbytes:.2f}x",
                    f"{r['seconds']:.2f}",
                    f"{r['seconds'] / memcpy:.2f}x",
                ]
            )
        verdicts.append(verdict(n, found, nbytes, memcpy))
    head = ["np", "system", "summed PSS GiB", "PSS / data", "time to data s", "/ memcpy"]
    print_table(head, rows, markdown=args.markdown)
    for line in verdicts:
        print(line)
    return 0


def verdict(n: int, found: dict, nbytes: int, memcpy: float) -> str:
    ours, bcast = found.get("mpibatch", {}), found.get("pickled bcast", {})
    if "pss" not in ours:
        return f"np={n}: mpibatch not measured"
    ratio, t = ours["pss"] / nbytes, ours["seconds"]
    vs = f"{t / bcast['seconds']:.2f}x pickled bcast's" if "seconds" in bcast else "no bcast"
    ok = ratio <= 1.15 and t <= 1.5 * memcpy and t <= bcast.get("seconds", float("inf"))
    return (
        f"np={n}: mpibatch summed PSS {ratio:.2f}x the data (target <= 1.15x); time to data "
        f"{t / memcpy:.2f}x one memcpy (target <= 1.5x), {vs} (target <= 1x): "
        + ("met" if ok else "NOT met")
    )


if __name__ == "__main__":
    sys.exit(main())
