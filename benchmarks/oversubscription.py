"""BLAS oversubscription: Cholesky-heavy tasks at np=2 with and without thread limits.

Run from the repository root, with the project's virtual environment active::

    python benchmarks/oversubscription.py [--tasks 24] [--n 600] [--repeat 2] [--markdown]

The tasks are examples/blas_heavy.py's (a Cholesky factorisation of an n x n SPD matrix,
three times, and a solve). OpenBLAS starts one thread per core in every process unless
told otherwise, so 2 processes on 2 cores run 4 BLAS threads. Systems, all with 2 worker
processes: ``mpiexec -n 2 mpibatch run --threads-per-rank 1`` (the default);
``--threads-per-rank C`` (C = every core, what an unlimited BLAS takes); ``Pool(2).map``
and joblib (loky) with ``inner_max_num_threads`` = C, i.e. without limits; joblib with its
own default (loky limits each worker to cores / n_jobs threads); and one process with
every core, for scale. Every thread variable (OMP_NUM_THREADS, ...) is unset first.

Each command is timed whole (start-up included), best of ``--repeat``. Results are checked:
each system's log-determinants equal mpibatch's (rtol 1e-9: thread counts may change the
last bits of a BLAS sum). Target: mpibatch with 1 thread per rank no slower than any other.
On a 2-core machine the difference is small; it grows with cores per node.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from _bench import BINDIR, HERE, begin, mpiexec, print_table, run_command

from mpibatch.cli import THREAD_VARS

ROOT = HERE.parent
HEADER = ["system", "processes x BLAS threads", "seconds", "x mpibatch 1 thread", "results"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=24, help="tasks (one SPD matrix each)")
    p.add_argument("--n", type=int, default=600, help="matrix size")
    p.add_argument("--repeat", type=int, default=2, help="runs per system; the best counts")
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per command")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    return p.parse_args(argv)


def systems(args, tmp: Path) -> list[tuple[str, str, list[str], Path]]:
    cores = len(os.sched_getaffinity(0))
    task = str(ROOT / "examples" / "blas_heavy.py")
    out = []
    for threads in (1, cores):
        path = tmp / f"mpibatch{threads}.h5"
        cmd = mpiexec(2) + [str(BINDIR / "mpibatch"), "run", task, "--grid", f"n={args.n}"]
        cmd += ["--reps", str(args.tasks), "--seed", str(args.seed), "--out", str(path)]
        cmd += ["--overwrite", "--quiet", "--threads-per-rank", str(threads)]
        name = f"mpibatch --threads-per-rank {threads}"
        out.append((name, f"2 x {threads}", cmd, path))
    peers = [
        ("Pool(2).map, no limit", "pool", f"2 x {cores}"),
        ("joblib loky, inner_max_num_threads=all", "joblib-unlimited", f"2 x {cores}"),
        ("joblib loky, its default limit", "joblib", f"2 x {max(1, cores // 2)}"),
        ("one process, every core", "serial", f"1 x {cores}"),
    ]
    for name, mode, shape in peers:
        path = tmp / f"{mode}.npy"
        cmd = [sys.executable, str(HERE / "_blas_peer.py"), mode, str(args.tasks), str(args.n)]
        out.append((name, shape, cmd + [str(args.seed), str(path)], path))
    return out


def read(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path)
    with h5py.File(path, "r") as f:
        assert (f["tasks/status"][()] == 1).all(), "tasks not done"
        return f["results/logdet"][()]


def main(argv=None) -> None:
    args = parse_args(argv)
    for var in THREAD_VARS:  # no limits unless a system sets its own
        os.environ.pop(var, None)
    begin(f"oversubscription: {args.tasks} Cholesky tasks of n={args.n}, best of {args.repeat}")
    rows, ref, base = [], None, None
    with tempfile.TemporaryDirectory(prefix="mpibatch-oversub-") as tmpdir:
        for name, shape, cmd, path in systems(args, Path(tmpdir)):
            times, error = [], ""
            for _ in range(args.repeat):
                path.unlink(missing_ok=True)
                seconds, error = run_command(cmd, args.timeout)
                if seconds is None:
                    break
                times.append(seconds)
            got = read(path) if times else None
            ref = got if ref is None else ref
            ok = got is not None and np.allclose(got, ref, rtol=1e-9, atol=0)
            best = min(times) if times else None
            base = best if base is None else base
            rows.append(
                [
                    name,
                    shape,
                    f"{best:.2f}" if best else "-",
                    f"{best / base:.2f}x" if best else "-",
                    "equal" if ok else (error or "DIFFERENT"),
                ]
            )
            print(f"  ... {name}: {times}", file=sys.stderr, flush=True)
    print_table(HEADER, rows, args.markdown)
    slower = [r[0] for r in rows[1:] if r[2] != "-" and float(r[2]) < float(rows[0][2])]
    print(
        "target: mpibatch with 1 BLAS thread per rank no slower than any other -> "
        + ("met" if not slower else f"NOT met (faster: {', '.join(slower)})")
    )


if __name__ == "__main__":
    main()
