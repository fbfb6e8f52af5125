"""Makespan of skewed workloads: mpibatch's schedules against the lower bound and the peers.

Run from the repository root, with the project's virtual environment active::

    python benchmarks/skew.py [--np 2,4] [--tasks 1000] [--repeat 3] [--seed 1] [--markdown]

Two workloads of sleeping tasks (``benchmarks/_skew_task.py``; they sleep rather than spin so
that np=4 on a 2-core machine still has 4 "virtual cores" and the bound below is reachable):

(a) log-normal: N tasks (default 1,000), durations log-normal with sigma 1.5 and mean 20 ms
    (mu = ln(0.020) - sigma**2 / 2), drawn from ``default_rng(DURATION_SEED)`` in task-id order;
(b) 4 slow + 12 fast: tasks 0-3 sleep 1.0 s and tasks 4-15 sleep 0.05 s, so contiguous static
    blocks put all four slow tasks on rank 0 at np=2 and at np=4.

Systems at each np = p: ``mpiexec -n p mpibatch run --schedule static|dynamic|auto``;
``mpi4py.futures.MPIPoolExecutor().map`` (chunksize 1) launched as
``mpiexec -n p+1 python -m mpi4py.futures`` (rank 0 is the client, so it has p workers);
``multiprocessing.Pool(p).map`` with chunksize 1 and with map's default chunksize
(ceil(N / 4p)), launched as ``python benchmarks/_skew_peer.py``.

Every row is a whole command (``time.perf_counter()`` around ``subprocess.run``), so start-up
(interpreter, imports, MPI_Init, ~0.3-0.4 s for an MPI Python command) and writing results are
included. Lower bound = max(sum of durations / p, longest duration), from the drawn durations.
Start-up = the same command on the same number of zero-duration tasks; net = makespan -
start-up, and net / bound is the schedule's own ratio. Each command runs ``--repeat`` times
(makespan and start-up runs interleaved) and the best (minimum) of each is shown. Results are
checked: every task done, ids in task order, draws equal to Generator(PCG64(seed).jumped(i)).
"""

import argparse
import heapq
import math
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from _bench import (
    HERE,
    format_table,
    machine_line,
    mpibatch_run,
    mpiexec,
    note,
    run_command,
    schedule_supported,
)
from _skew_task import ENV
from _streams import numpy_draw

DURATION_SEED = 20240611
SCHEDULES = ("static", "dynamic", "auto")
TARGETS = (
    "targets: dynamic and auto within 1.10x of the lower bound on both workloads "
    "and never slower than the best peer"
)
HEADER = [
    "system",
    "np",
    "makespan s",
    "x bound",
    "start-up s",
    "net s",
    "net x bound",
    "results",
]


@dataclass
class Workload:
    name: str
    durations: np.ndarray
    path: Path  # the durations as .npy
    zeros: Path  # as many zero durations, for the start-up runs
    ref: np.ndarray = field(init=False)  # reference draws, task order

    def bound(self, nprocs: int) -> float:
        return max(float(self.durations.sum()) / nprocs, float(self.durations.max()))

    def greedy(self, nprocs: int) -> float:
        """Makespan of tasks taken in id order by whichever worker is free first, no overhead."""
        free = [0.0] * nprocs
        for d in self.durations:
            heapq.heappush(free, heapq.heappop(free) + float(d))
        return max(free)


@dataclass
class System:
    name: str
    nprocs: int
    command: Callable[[Path], list[str]]  # output path -> argv
    suffix: str  # output file suffix
    peer: bool


@dataclass
class Row:
    system: System
    makespan: float | None = None
    startup: float | None = None
    results: str = ""
    info: dict = field(default_factory=dict)  # from the mpibatch file: schedule, blocks, ...


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--np", default="2,4", help="comma-separated process counts")
    p.add_argument("--tasks", type=int, default=1000, help="tasks in the log-normal workload")
    p.add_argument("--mean-ms", type=float, default=20.0, help="log-normal mean duration")
    p.add_argument("--sigma", type=float, default=1.5, help="log-normal sigma")
    p.add_argument("--slow", type=float, default=1.0, help="seconds of each of the 4 slow tasks")
    p.add_argument("--fast", type=float, default=0.05, help="seconds of each of the 12 fast ones")
    p.add_argument("--repeat", type=int, default=3, help="runs per command; best-of is shown")
    p.add_argument("--seed", type=int, default=1, help="root seed of the tasks' streams")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per command")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    args = p.parse_args(argv)
    args.np = [int(x) for x in args.np.split(",")]
    if args.tasks < 1 or args.repeat < 1 or min(args.np) < 1:
        p.error("--tasks, --repeat and --np must be positive")
    return args


def make_workloads(args, tmp: Path) -> list[Workload]:
    mu = math.log(args.mean_ms / 1000) - args.sigma**2 / 2
    lognormal = np.random.default_rng(DURATION_SEED).lognormal(mu, args.sigma, args.tasks)
    slow_fast = np.array([args.slow] * 4 + [args.fast] * 12)
    names = [f"(a) log-normal, {args.tasks:,} tasks", "(b) 4 slow + 12 fast"]
    works = []
    for k, (name, d) in enumerate(zip(names, [lognormal, slow_fast], strict=True)):
        np.save(tmp / f"durations{k}.npy", d)
        np.save(tmp / f"zeros{k}.npy", np.zeros_like(d))
        w = Workload(name, d, tmp / f"durations{k}.npy", tmp / f"zeros{k}.npy")
        w.ref = np.array([numpy_draw(args.seed, i) for i in range(d.size)])
        works.append(w)
    return works


def systems(args, nprocs: int, ntasks: int) -> list[System]:
    skew_task, peer = HERE / "_skew_task.py", str(HERE / "_skew_peer.py")
    seed = str(args.seed)
    rows = [
        System(
            f"mpibatch {s}",
            nprocs,
            lambda out, s=s: (
                mpibatch_run(nprocs, skew_task, ntasks, args.seed, out) + ["--schedule", s]
            ),
            ".h5",
            False,
        )
        for s in SCHEDULES
    ]
    futures = mpiexec(nprocs + 1) + [sys.executable, "-m", "mpi4py.futures", peer, "futures"]
    rows.append(
        System(
            f"mpi4py.futures, -n {nprocs + 1}, chunksize 1",
            nprocs,
            lambda out: futures + ["-", "1", seed, str(out)],
            ".npz",
            True,
        )
    )
    default_chunk = math.ceil(ntasks / (4 * nprocs))
    for chunk, label in ((1, "chunksize 1"), (0, f"default chunksize {default_chunk}")):
        pool = [sys.executable, peer, "pool", str(nprocs), str(chunk), seed]
        rows.append(
            System(
                f"Pool({nprocs}).map, {label}",
                nprocs,
                lambda out, c=pool: c + [str(out)],
                ".npz",
                True,
            )
        )
    return rows


def check_npz(path: Path, work: Workload) -> str:
    with np.load(path) as z:
        ids, draws = z["id"], z["draw"]
    if not np.array_equal(ids, np.arange(work.ref.size)):
        return "DIFFERENT (ids are not 0..N-1 in order)"
    return "ok" if np.array_equal(draws, work.ref) else "DIFFERENT (draws)"


def check_h5(path: Path, work: Workload, info: dict) -> str:
    """Check an mpibatch file; fill ``info`` with its schedule attrs and summed task time."""
    with h5py.File(path, "r") as f:
        if "results/id" not in f or "results/draw" not in f:
            return "DIFFERENT (no /results/id or /results/draw)"
        status, ids, draws = f["tasks/status"][()], f["results/id"][()], f["results/draw"][()]
        info["task_seconds"] = float(f["tasks/elapsed"][()].sum())
        for key in ("schedule_used", "schedule_reason", "n_blocks", "dispatch_seconds"):
            if key in f.attrs:
                value = f.attrs[key]
                info[key] = value.item() if isinstance(value, np.generic) else value
    n = work.ref.size
    if status.shape != (n,) or not (status == 1).all():
        return f"DIFFERENT ({int((status == 1).sum())} of {n} tasks done)"
    if not np.array_equal(ids, np.arange(n)):
        return "DIFFERENT (ids are not 0..N-1 in order)"
    if not np.array_equal(draws, work.ref):
        return "DIFFERENT (draws)"
    extra = [f"used {info['schedule_used']}"] if "schedule_used" in info else []
    extra += [f"{info['n_blocks']} blocks"] if "n_blocks" in info else []
    return "; ".join(["ok", *extra])


def check(system: System, out: Path, work: Workload, info: dict) -> str:
    try:
        if system.suffix == ".h5":
            return check_h5(out, work, info)
        return check_npz(out, work)
    except (OSError, KeyError, ValueError) as exc:
        return f"DIFFERENT (cannot read output: {exc})"


def measure(system: System, work: Workload, args, tmp: Path) -> Row:
    """Run makespan and start-up commands --repeat times each, interleaved; keep the best."""
    row = Row(system)
    out = tmp / f"out{system.suffix}"
    times = {"run": [], "zero": []}
    for _ in range(args.repeat):
        for kind, durations in (("run", work.path), ("zero", work.zeros)):
            out.unlink(missing_ok=True)
            seconds, error = run_command(
                system.command(out), args.timeout, env={ENV: str(durations)}
            )
            if seconds is None:
                row.results = error
                return row
            times[kind].append(seconds)
            if kind == "run":
                result = check(system, out, work, row.info)
                if not row.results or row.results.startswith("ok"):
                    row.results = result
    row.makespan, row.startup = min(times["run"]), min(times["zero"])
    return row


def cells(rows: list[Row], work: Workload) -> list[list[str]]:
    out = []
    for r in rows:
        bound = work.bound(r.system.nprocs)
        if r.makespan is None:
            nums = ["-"] * 5
        else:
            net = r.makespan - r.startup
            nums = [
                f"{r.makespan:.3f}",
                f"{r.makespan / bound:.2f}",
                f"{r.startup:.3f}",
                f"{net:.3f}",
                f"{net / bound:.2f}",
            ]
        out.append([r.system.name, str(r.system.nprocs), *nums, r.results])
    return out


def verdict(rows: list[Row], work: Workload) -> tuple[bool, list[str]]:
    """Per np: dynamic and auto net <= 1.10x bound, and makespan <= the best peer's."""
    lines, ok = [], True
    for nprocs in sorted({r.system.nprocs for r in rows}):
        mine = [r for r in rows if r.system.nprocs == nprocs]
        peers = [r for r in mine if r.system.peer and r.makespan is not None]
        best_peer = min(r.makespan for r in peers) if peers else None
        best_net = min(r.makespan - r.startup for r in peers) if peers else None
        for r in mine:
            if r.system.name not in ("mpibatch dynamic", "mpibatch auto"):
                continue
            if r.makespan is None or best_peer is None or not r.results.startswith("ok"):
                ok = False
                lines.append(f"  np={nprocs} {r.system.name}: not measured or wrong results")
                continue
            ratio = (r.makespan - r.startup) / work.bound(nprocs)
            fine = ratio <= 1.10 and r.makespan <= best_peer
            ok &= fine
            lines.append(
                f"  np={nprocs} {r.system.name}: net {ratio:.2f}x bound, makespan "
                f"{r.makespan / best_peer:.2f}x best peer's (net "
                f"{(r.makespan - r.startup) / best_net:.2f}x) -> {'met' if fine else 'NOT met'}"
            )
    return ok, lines


def bound_line(work: Workload, nps: list[int]) -> str:
    d = work.durations
    parts = [f"np={p}: {work.bound(p):.3f} s" for p in nps]
    greedy = [
        f"np={p}: {work.greedy(p):.3f} s ({work.greedy(p) / work.bound(p):.2f}x)" for p in nps
    ]
    return (
        f"durations: {d.size:,} tasks, total {d.sum():.3f} s, mean {1000 * d.mean():.1f} ms, "
        f"longest {d.max():.3f} s (task {int(d.argmax())})\n"
        "lower bound max(total/np, longest): " + ", ".join(parts) + "\n"
        "for reference, tasks in id order to the first free worker, zero overhead "
        "(an ideal Pool(np) with chunksize 1): " + ", ".join(greedy)
    )


def footnotes(rows: list[Row], work: Workload) -> list[str]:
    notes = []
    for r in rows:
        info = r.info
        if "schedule_reason" in info:
            notes.append(
                f"np={r.system.nprocs} {r.system.name}: schedule_used={info.get('schedule_used')}"
                f", reason: {info['schedule_reason']}"
            )
    summed = [r.info["task_seconds"] for r in rows if "task_seconds" in r.info]
    if summed:
        notes.append(
            f"task time measured by mpibatch (/tasks/elapsed, summed): {min(summed):.3f}-"
            f"{max(summed):.3f} s vs {work.durations.sum():.3f} s planned (sleep overshoot)"
        )
    return notes


def run_workload(work: Workload, args, tmp: Path) -> bool:
    print(f"\n{work.name}", flush=True)
    print(bound_line(work, args.np), flush=True)
    rows = []
    for nprocs in args.np:
        for system in systems(args, nprocs, work.durations.size):
            rows.append(measure(system, work, args, tmp))
            print(f"  ... {system.name} np={nprocs}: {rows[-1].makespan}", file=sys.stderr)
    print()
    print(format_table(HEADER, cells(rows, work), args.markdown))
    print()
    for line in footnotes(rows, work):
        print(note(line, args.markdown))
    ok, lines = verdict(rows, work)
    print(TARGETS + f" -> {work.name}:")
    print("\n".join(lines))
    return ok


def main(argv=None) -> None:
    args = parse_args(argv)
    print(
        f"skew: sleeping tasks, np={args.np}, best of {args.repeat}, seed={args.seed}, "
        f"{machine_line()}",
        flush=True,
    )
    if not schedule_supported():
        print("note: this mpibatch has no --schedule dynamic/--block-size yet; rows will fail")
    with tempfile.TemporaryDirectory(prefix="mpibatch-skew-") as tmpdir:
        tmp = Path(tmpdir)
        oks = [run_workload(w, args, tmp) for w in make_workloads(args, tmp)]
    print()
    print(
        "Futures rows run p+1 ranks (rank 0 is the client) so they have p workers; "
        "'net' = makespan - start-up (same command, zero-duration tasks); best of "
        f"{args.repeat} for both."
    )
    print(f"verdict: targets {'met' if all(oks) else 'NOT met'} on both workloads")


if __name__ == "__main__":
    main()
