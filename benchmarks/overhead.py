"""Per-task overhead of mpibatch against its peers, on many tiny tasks.

Run from the repository root, with the project's virtual environment active::

    python benchmarks/overhead.py [--tasks N] [--np 2] [--seed 1] [--markdown]

Every system computes task ``i`` = one normal draw from
``numpy.random.Generator(numpy.random.PCG64(seed).jumped(i))`` for ``i < N`` and its results are
compared bit for bit (float64, task order) with a reference array. The rows:

1. serial: the plain Python loop users write; timed on a prefix (``--serial-prefix``) and the rate
   extrapolated, since it costs ~20 us per task.
2. ``multiprocessing.Pool(np).map`` of the same per-task expression, chunksize N // (np * 8);
   timed from creating the pool to the results being a numpy array (pool shutdown included).
3. ``mpi4py.futures.MPIPoolExecutor.map`` of the same expression, chunksize
   N // (workers * 8), as a whole ``mpiexec ... python -m mpi4py.futures`` command. Under that
   launcher rank 0 is the client and only the other ranks are workers, so two layouts are shown:
   ``-n np`` (np - 1 workers) and ``-n np+1`` (np workers plus a mostly sleeping client, the same
   shape as Pool(np): a parent plus np workers). "best peer" takes the faster one.
4. a hand-written mpi4py program (Scatter of block bounds, cheap stream derivation per block,
   Gatherv to rank 0, one HDF5 dataset written): the practical limit.
5. ``mpiexec -n np mpibatch run benchmarks/tiny_task.py --reps N ...`` end to end.

MPI rows are timed as whole commands (``time.perf_counter()`` around ``subprocess.run``, from
``mpiexec`` starting to its exit, output file closed), so they include interpreter start-up,
imports, ``MPI_Init`` and writing the file. The reference array comes from the cheap stream
derivation in ``_streams.py``; the script first proves it equals the numpy expression on a few
hundred task ids, including ids near 2**63.
"""

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import h5py
import numpy as np
from _bench import HERE, begin, mpibatch_run, mpiexec, print_table, run_command
from _streams import cheap_block, numpy_draw

TARGETS = "targets: mpibatch >= 3x best peer; within 1.5x of hand-written"


@dataclass
class Row:
    """One system's measurement: wall seconds for all N tasks, and the results check."""

    name: str
    seconds: float | None  # None when the system failed to run
    results: str
    peer: bool = False


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=1_000_000, help="number of tasks N")
    p.add_argument("--np", type=int, default=2, help="number of processes / MPI ranks")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--serial-prefix",
        type=int,
        default=100_000,
        help="time the serial loop on this many leading tasks and extrapolate",
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per MPI command")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = p.parse_args(argv)
    if args.tasks < 1 or args.np < 1 or args.serial_prefix < 1:
        p.error("--tasks, --np and --serial-prefix must be positive")
    return args


def prove_cheap_derivation(seed: int, ntasks: int) -> int:
    """Check cheap_block against the numpy expression on a few hundred ids; return how many."""
    rng = np.random.default_rng(20240601)
    ids = {*range(100), *range(max(0, ntasks - 50), ntasks), 2**32 - 1, 2**32, 2**63 - 1}
    ids.update(int(i) for i in rng.integers(0, ntasks, 50))
    ids.update(int(i) for i in rng.integers(0, 2**63 - 1, 100, dtype=np.int64))
    bad = [i for i in sorted(ids) if cheap_block(seed, i, 1)[0] != numpy_draw(seed, i)]
    if bad:
        sys.exit(f"cheap stream derivation differs from PCG64(seed).jumped(i) for ids {bad[:5]}")
    run = np.array([numpy_draw(seed, i) for i in range(1000, 1300)])
    if not np.array_equal(cheap_block(seed, 1000, 300), run):
        sys.exit("cheap stream derivation differs on the contiguous block 1000..1299")
    return len(ids) + len(run)


def compare(values, ref: np.ndarray) -> str:
    values = np.asarray(values)
    same = values.dtype == np.float64 and values.shape == ref.shape
    return "equal" if same and np.array_equal(values, ref) else "DIFFERENT"


def time_serial(seed: int, ntasks: int, prefix: int, ref: np.ndarray) -> Row:
    prefix = min(prefix, ntasks)
    out = np.empty(prefix)
    t0 = time.perf_counter()
    for i in range(prefix):
        out[i] = np.random.Generator(np.random.PCG64(seed).jumped(i)).normal()
    elapsed = time.perf_counter() - t0
    name = "serial loop (PCG64.jumped)" + ("*" if prefix < ntasks else "")
    return Row(name, elapsed * ntasks / prefix, compare(out, ref[:prefix]), peer=True)


def time_pool(seed: int, ntasks: int, nprocs: int, ref: np.ndarray) -> Row:
    chunksize = max(1, ntasks // (nprocs * 8))
    t0 = time.perf_counter()
    with Pool(nprocs) as pool:
        values = pool.map(partial(numpy_draw, seed), range(ntasks), chunksize=chunksize)
        out = np.array(values, dtype=np.float64)
    elapsed = time.perf_counter() - t0
    return Row(f"multiprocessing.Pool({nprocs}).map", elapsed, compare(out, ref), peer=True)


def time_futures(args, nranks: int, tmp: Path, ref: np.ndarray) -> Row:
    out = tmp / f"futures_{nranks}.npy"
    name = f"mpi4py.futures (-n {nranks}: {nranks - 1} worker{'s' * (nranks > 2)})"
    cmd = mpiexec(nranks) + [
        sys.executable,
        "-m",
        "mpi4py.futures",
        str(HERE / "_futures_peer.py"),
        str(args.seed),
        str(args.tasks),
        str(out),
    ]
    seconds, error = run_command(cmd, args.timeout)
    if seconds is None:
        return Row(name, None, error, peer=True)
    return Row(name, seconds, compare(np.load(out), ref), peer=True)


def time_handwritten(args, tmp: Path, ref: np.ndarray) -> Row:
    out = tmp / "handwritten.h5"
    name = "hand-written Scatterv/Gatherv"
    cmd = mpiexec(args.np) + [
        sys.executable,
        str(HERE / "_handwritten_mpi.py"),
        str(args.seed),
        str(args.tasks),
        str(out),
    ]
    seconds, error = run_command(cmd, args.timeout)
    if seconds is None:
        return Row(name, None, error)
    with h5py.File(out, "r") as f:
        return Row(name, seconds, compare(f["value"][()], ref))


def check_mpibatch_file(path: Path, ref: np.ndarray) -> str:
    with h5py.File(path, "r") as f:
        missing = [k for k in ("results/value", "tasks/id") if k not in f]
        if missing:
            return f"DIFFERENT (no /{', /'.join(missing)})"
        ids = f["tasks/id"][()]
        ids_ok = ids.dtype == np.int64 and np.array_equal(ids, np.arange(ref.size))
        result = compare(f["results/value"][()], ref)
    return result if ids_ok else "DIFFERENT (/tasks/id is not arange)"


def time_mpibatch(args, tmp: Path, ref: np.ndarray) -> Row:
    out = tmp / "mpibatch.h5"
    cmd = mpibatch_run(args.np, HERE / "tiny_task.py", args.tasks, args.seed, out)
    seconds, error = run_command(cmd, args.timeout)
    if seconds is None:
        return Row("mpibatch", None, error)
    try:
        return Row("mpibatch", seconds, check_mpibatch_file(out, ref))
    except OSError as exc:
        return Row("mpibatch", seconds, f"DIFFERENT (cannot read output: {exc})")


def ratios(row: Row, best_peer: float | None, handwritten: float | None) -> tuple[str, str]:
    """("x best peer", "x hand-written") for a row: rate ratio and time ratio."""
    if row.seconds is None:
        return "-", "-"
    x_peer = f"{best_peer / row.seconds:.2f}" if best_peer else "-"
    x_hand = f"{handwritten / row.seconds:.2f}" if handwritten else "-"
    return x_peer, x_hand


def table_cells(rows: list[Row], ntasks: int) -> list[list[str]]:
    peer_times = [r.seconds for r in rows if r.peer and r.seconds is not None]
    best_peer = min(peer_times) if peer_times else None
    hand = next((r.seconds for r in rows if r.name.startswith("hand-written")), None)
    cells = []
    for r in rows:
        rate = f"{ntasks / r.seconds:,.0f}" if r.seconds else "-"
        secs = f"{r.seconds:.2f}" if r.seconds else "-"
        cells.append([r.name, secs, rate, *ratios(r, best_peer, hand), r.results])
    return cells


HEADER = ["system", "seconds", "tasks/s", "x best peer", "x hand-written", "results"]


def verdict(rows: list[Row]) -> str:
    mine = rows[-1]
    peers = [r for r in rows if r.peer and r.seconds is not None]
    hand = next((r for r in rows if r.name.startswith("hand-written")), None)
    if mine.seconds is None or not peers or hand is None or hand.seconds is None:
        return "verdict: not measured (a row failed)"
    best = min(peers, key=lambda r: r.seconds)
    x_peer, x_hand = best.seconds / mine.seconds, hand.seconds / mine.seconds
    ok = x_peer >= 3 and x_hand >= 1 / 1.5 and mine.results == "equal"
    return (
        f"verdict: mpibatch is {x_peer:.2f}x the best peer ({best.name}) and "
        f"{x_hand:.2f}x hand-written -> targets {'met' if ok else 'NOT met'}"
    )


def footnotes(args) -> list[str]:
    prefix = min(args.serial_prefix, args.tasks)
    notes = [
        f"Pool chunksize = N // (np*8) = {max(1, args.tasks // (args.np * 8)):,}; "
        "futures chunksize = N // (workers*8); ratios: x best peer = rate / best peer "
        "rate, x hand-written = hand-written time / this time"
    ]
    if prefix < args.tasks:
        notes.insert(
            0,
            f"* timed on the first {prefix:,} tasks and extrapolated; results "
            "checked on that prefix",
        )
    return notes


def measure(args, ref: np.ndarray) -> list[Row]:
    rows = [
        time_serial(args.seed, args.tasks, args.serial_prefix, ref),
        time_pool(args.seed, args.tasks, args.np, ref),
    ]
    with tempfile.TemporaryDirectory(prefix="mpibatch-overhead-") as tmpdir:
        tmp = Path(tmpdir)
        for nranks in (args.np, args.np + 1):
            if nranks >= 2:  # python -m mpi4py.futures needs at least one worker rank
                rows.append(time_futures(args, nranks, tmp, ref))
        rows.append(time_handwritten(args, tmp, ref))
        rows.append(time_mpibatch(args, tmp, ref))
    return rows


def main(argv=None) -> None:
    args = parse_args(argv)
    begin(
        f"overhead: {args.tasks:,} tiny tasks (one normal draw each), np={args.np}, "
        f"seed={args.seed}"
    )
    checked = prove_cheap_derivation(args.seed, args.tasks)
    t0 = time.perf_counter()
    ref = cheap_block(args.seed, 0, args.tasks)
    print(
        f"reference: cheap derivation == Generator(PCG64(seed).jumped(i)) on {checked} ids "
        f"(up to 2**63-1); {args.tasks:,} reference values in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    rows = measure(args, ref)
    print_table(HEADER, table_cells(rows, args.tasks), args.markdown, footnotes(args))
    print(TARGETS)
    print(verdict(rows))


if __name__ == "__main__":
    main()
