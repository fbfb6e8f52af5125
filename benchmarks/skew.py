"""Task span of skewed workloads: mpibatch's schedules against the lower bound and the peers.

Run from the repository root, with the project's virtual environment active::

    python benchmarks/skew.py [--np 2,4] [--tasks 1000] [--draws 5] [--repeat 3] [--markdown]

Two workloads of sleeping tasks (``benchmarks/_skew_task.py``; they sleep rather than spin so
that np=4 on a 2-core machine still has 4 "virtual cores" and the bound below is reachable):

(a) log-normal: N tasks (default 1,000), durations log-normal with sigma 1.5 and mean 20 ms
    (mu = ln(0.020) - sigma**2 / 2), in task-id order, drawn ``--draws`` times (default 5) from
    ``default_rng(DURATION_SEED + k)``. One draw is luck: with sigma 1.5 a few tasks take
    50x the mean, and where the last of them sits decides the tail. In draw 0 a 1-s task is
    the 951st of 1,000, so even an ideal in-order scheduler needs 1.10x the bound at np=4,
    while over 200 draws it needs 1.03x on average. Each draw runs once; the table shows
    the mean and the worst over the draws;
(b) 4 slow + 12 fast: tasks 0-3 sleep 1.0 s and tasks 4-15 sleep 0.05 s, so contiguous static
    blocks put all four slow tasks on rank 0 at np=2 and at np=4;
(c) the joblib talk's GBM grid: 54 points, n_estimators = 100, 200, 300 outermost (x 3 depths
    x 6 learning rates), each task sleeping ``--ms-per-tree`` x n_estimators (default 0.5 ms:
    50, 100, 150 ms). Static gives rank 0 the cheap rows and the last rank the dear ones;
    ``auto`` used to probe only the first (100-tree) tasks and pick static.

Results cells give, for mpibatch, the schedule used and the imbalance: the busiest rank's
summed task time over the mean rank's (1.00 = perfectly even).

Systems at each np = p: ``mpiexec -n p mpibatch run --schedule static|dynamic|auto``;
``mpi4py.futures.MPIPoolExecutor().map`` (chunksize 1) launched as
``mpiexec -n p+1 python -m mpi4py.futures`` (rank 0 is the client, so it has p workers);
``multiprocessing.Pool(p).map`` with chunksize 1 and with map's default chunksize
(ceil(N / 4p)), launched as ``python benchmarks/_skew_peer.py``.

Each run is timed twice. The whole command (``time.perf_counter()`` around ``subprocess.run``)
includes start-up (interpreter, imports, MPI_Init: a few tenths of a second for p MPI
ranks that each import numpy and mpi4py, against a fork for a Pool), collecting the last
results and exiting. The task span, from the first task's start to the last task's end
(wall-clock times every system records per task: mpibatch in /tasks/start and
/tasks/elapsed, the peers through ``_skew_task.peer_task``), is what the schedule decides,
and is what the lower bound max(sum of durations / p, longest duration) bounds. The
verdict compares task spans: with the bound, and with the best peer's. Results are
checked: every task done, ids in task order, draws equal to Generator(PCG64(seed).jumped(i)).
The mpibatch package's .pyc files are written first, as an installed package has them.
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
    begin,
    file_attrs,
    mpibatch_run,
    mpiexec,
    print_table,
    run_command,
    warn_without_schedule,
)
from _skew_task import ENV
from _streams import numpy_draw

DURATION_SEED = 20240611
SCHEDULES = ("static", "dynamic", "auto")
SCHEDULED = ("mpibatch dynamic", "mpibatch auto")
TARGETS = (
    "targets: dynamic and auto within 1.10x of the lower bound on every workload "
    "and never slower than the best peer (task spans, mean over draws)"
)
HEADER = [
    "system",
    "np",
    "command s",
    "outside tasks s",
    "task span s",
    "span x bound",
    "worst draw",
    "span x best peer",
    "results",
]


@dataclass
class Workload:
    name: str
    draws: list[np.ndarray]  # durations (seconds) in task order, one array per draw
    paths: list[Path]  # the same as .npy files
    runs: int  # runs per draw (the best counts)
    ref: np.ndarray = field(init=False)  # reference draws, task order

    @property
    def size(self) -> int:
        return self.draws[0].size

    def bound(self, nprocs: int, k: int) -> float:
        d = self.draws[k]
        return max(float(d.sum()) / nprocs, float(d.max()))

    def greedy(self, nprocs: int, k: int) -> float:
        """Makespan of tasks taken in id order by whichever worker is free first, no overhead."""
        free = [0.0] * nprocs
        for d in self.draws[k]:
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
    makespans: list[float] = field(default_factory=list)  # whole command, one per draw
    spans: list[float] = field(default_factory=list)  # first task start to last task end
    ratios: list[float] = field(default_factory=list)  # span / bound, one per draw
    results: str = ""
    info: dict = field(default_factory=dict)  # from the mpibatch file: schedule, blocks, ...

    @property
    def measured(self) -> bool:
        return bool(self.spans)

    @property
    def makespan(self) -> float:
        return float(np.mean(self.makespans))

    @property
    def span(self) -> float:
        return float(np.mean(self.spans))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--np", default="2,4", help="comma-separated process counts")
    p.add_argument("--tasks", type=int, default=1000, help="tasks in the log-normal workload")
    p.add_argument("--draws", type=int, default=5, help="log-normal duration draws")
    p.add_argument("--mean-ms", type=float, default=20.0, help="log-normal mean duration")
    p.add_argument("--sigma", type=float, default=1.5, help="log-normal sigma")
    p.add_argument("--slow", type=float, default=1.0, help="seconds of each of the 4 slow tasks")
    p.add_argument("--fast", type=float, default=0.05, help="seconds of each of the 12 fast ones")
    p.add_argument("--repeat", type=int, default=3, help="runs of (b), (c); the best is shown")
    p.add_argument("--ms-per-tree", type=float, default=0.5, help="(c): ms per n_estimators")
    p.add_argument("--only", default="abc", help="workloads to run, e.g. c")
    p.add_argument("--seed", type=int, default=1, help="root seed of the tasks' streams")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per command")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    args = p.parse_args(argv)
    args.np = [int(x) for x in args.np.split(",")]
    if min(args.tasks, args.repeat, args.draws, *args.np) < 1:
        p.error("--tasks, --draws, --repeat and --np must be positive")
    return args


def _workload(name: str, draws: list[np.ndarray], runs: int, tmp: Path, tag: str) -> Workload:
    paths = []
    for k, d in enumerate(draws):
        paths.append(tmp / f"durations-{tag}{k}.npy")
        np.save(paths[-1], d)
    return Workload(name, draws, paths, runs)


def make_workloads(args, tmp: Path) -> list[Workload]:
    mu = math.log(args.mean_ms / 1000) - args.sigma**2 / 2
    lognormal = [
        np.random.default_rng(DURATION_SEED + k).lognormal(mu, args.sigma, args.tasks)
        for k in range(args.draws)
    ]
    slow_fast = np.array([args.slow] * 4 + [args.fast] * 12)
    draws = "1 draw" if args.draws == 1 else f"{args.draws} draws"
    gbm = np.array([t * args.ms_per_tree / 1000 for t in (100, 200, 300) for _ in range(18)])
    works = [
        _workload(f"(a) log-normal, {args.tasks:,} tasks, {draws}", lognormal, 1, tmp, "a"),
        _workload("(b) 4 slow + 12 fast", [slow_fast], args.repeat, tmp, "b"),
        _workload("(c) GBM grid, 54 tasks, n_estimators outermost", [gbm], args.repeat, tmp, "c"),
    ]
    works = [w for w in works if w.name[1] in args.only]
    for w in works:
        w.ref = np.array([numpy_draw(args.seed, i) for i in range(w.size)])
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


def span(start: np.ndarray, end: np.ndarray) -> float:
    """Seconds from the first task's start to the last task's end."""
    return float(end.max() - start.min())


def check_npz(path: Path, work: Workload) -> tuple[str, float | None]:
    with np.load(path) as z:
        ids, draws, start, end = z["id"], z["draw"], z["start"], z["end"]
    if not np.array_equal(ids, np.arange(work.ref.size)):
        return "DIFFERENT (ids are not 0..N-1 in order)", None
    if not np.array_equal(draws, work.ref):
        return "DIFFERENT (draws)", None
    return "ok", span(start, end)


def check_h5(path: Path, work: Workload, info: dict) -> tuple[str, float | None]:
    """Check an mpibatch file and measure its task span; fill ``info`` with its attrs."""
    with h5py.File(path, "r") as f:
        if "results/id" not in f or "results/draw" not in f:
            return "DIFFERENT (no /results/id or /results/draw)", None
        status, ids, draws = f["tasks/status"][()], f["results/id"][()], f["results/draw"][()]
        start, elapsed = f["tasks/start"][()], f["tasks/elapsed"][()]
        busy = np.bincount(f["tasks/rank"][()].clip(0), weights=elapsed)
    attrs = file_attrs(path)
    for key in ("schedule_used", "schedule_reason", "n_blocks", "dispatch_seconds"):
        if key in attrs:
            info[key] = attrs[key]
    n = work.ref.size
    if status.shape != (n,) or not (status == 1).all():
        return f"DIFFERENT ({int((status == 1).sum())} of {n} tasks done)", None
    if not np.array_equal(ids, np.arange(n)):
        return "DIFFERENT (ids are not 0..N-1 in order)", None
    if not np.array_equal(draws, work.ref):
        return "DIFFERENT (draws)", None
    extra = [f"used {info['schedule_used']}"] if "schedule_used" in info else []
    extra += [f"{info['n_blocks']} blocks"] if "n_blocks" in info else []
    extra += [f"imbalance {busy.max() / busy.mean():.2f}"]
    return "; ".join(["ok", *extra]), span(start, start + elapsed)


def check(system: System, out: Path, work: Workload, info: dict) -> tuple[str, float | None]:
    try:
        if system.suffix == ".h5":
            return check_h5(out, work, info)
        return check_npz(out, work)
    except (OSError, KeyError, ValueError) as exc:
        return f"DIFFERENT (cannot read output: {exc})", None


def measure(system: System, work: Workload, args, tmp: Path) -> Row:
    """Each draw's makespan and task span (each the best of work.runs)."""
    row = Row(system)
    out = tmp / f"out{system.suffix}"
    for k, path in enumerate(work.paths):
        times, spans = [], []
        for _ in range(work.runs):
            out.unlink(missing_ok=True)
            seconds, error = run_command(system.command(out), args.timeout, env={ENV: str(path)})
            if seconds is None:
                row.results, row.spans = error, []
                return row
            result, seconds_span = check(system, out, work, row.info)
            if seconds_span is None:
                row.results, row.spans = result, []
                return row
            row.results = result
            times.append(seconds)
            spans.append(seconds_span)
        row.makespans.append(min(times))
        row.spans.append(min(spans))
        row.ratios.append(row.spans[-1] / work.bound(system.nprocs, k))
    return row


def _mean_bound(work: Workload, nprocs: int) -> float:
    return float(np.mean([work.bound(nprocs, k) for k in range(len(work.draws))]))


def _best_peer(rows: list[Row], nprocs: int) -> Row | None:
    peers = [r for r in rows if r.system.nprocs == nprocs and r.system.peer and r.measured]
    return min(peers, key=lambda r: r.span) if peers else None


def cells(rows: list[Row], work: Workload) -> list[list[str]]:
    out = []
    for r in rows:
        best = _best_peer(rows, r.system.nprocs)
        if not r.measured:
            nums = ["-"] * 6
        else:
            nums = [
                f"{r.makespan:.3f}",
                f"{r.makespan - r.span:.3f}",
                f"{r.span:.3f}",
                f"{np.mean(r.ratios):.3f}",
                f"{max(r.ratios):.3f}",
                f"{r.span / best.span:.3f}" if best else "-",
            ]
        out.append([r.system.name, str(r.system.nprocs), *nums, r.results])
    return out


def verdict(rows: list[Row], work: Workload) -> tuple[bool, list[str]]:
    """Per np: dynamic and auto spans <= 1.10x bound (mean over draws) and <= best peer's."""
    lines, ok = [], True
    for nprocs in sorted({r.system.nprocs for r in rows}):
        best = _best_peer(rows, nprocs)
        for r in rows:
            if r.system.nprocs != nprocs or r.system.name not in SCHEDULED:
                continue
            if not r.measured or best is None or not r.results.startswith("ok"):
                ok = False
                lines.append(f"  np={nprocs} {r.system.name}: not measured or wrong results")
                continue
            ratio = float(np.mean(r.ratios))
            fine = ratio <= 1.10 and r.span <= best.span
            ok &= fine
            lines.append(
                f"  np={nprocs} {r.system.name}: task span {ratio:.3f}x bound, "
                f"{r.span / best.span:.3f}x the best peer's ({best.system.name}); whole "
                f"command {r.makespan / best.makespan:.2f}x -> {'met' if fine else 'NOT met'}"
            )
    return ok, lines


def bound_line(work: Workload, nps: list[int]) -> str:
    lines = []
    for k, d in enumerate(work.draws):
        ideal = ", ".join(
            f"np={p}: {work.bound(p, k):.3f} s, ideal {work.greedy(p, k) / work.bound(p, k):.2f}x"
            for p in nps
        )
        lines.append(
            f"{'draw ' + str(k) + ': ' if len(work.draws) > 1 else ''}total {d.sum():.3f} s, "
            f"mean {1000 * d.mean():.1f} ms, longest {d.max():.3f} s (task {int(d.argmax())}); "
            f"bound {ideal}"
        )
    return (
        "\n".join(lines) + "\nbound = max(total/np, longest); ideal = tasks in id order to the "
        "first free worker with zero overhead (an ideal Pool(np) with chunksize 1), x bound"
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
    return notes


def run_workload(work: Workload, args, tmp: Path) -> bool:
    print(f"\n{work.name}", flush=True)
    print(bound_line(work, args.np), flush=True)
    rows = []
    for nprocs in args.np:
        for system in systems(args, nprocs, work.size):
            rows.append(measure(system, work, args, tmp))
            print(f"  ... {system.name} np={nprocs}: {rows[-1].makespans}", file=sys.stderr)
    print_table(HEADER, cells(rows, work), args.markdown, footnotes(rows, work))
    ok, lines = verdict(rows, work)
    print(TARGETS + f" -> {work.name}:")
    print("\n".join(lines))
    return ok


def main(argv=None) -> None:
    args = parse_args(argv)
    begin(
        f"skew: sleeping tasks, np={args.np}, {args.draws} log-normal draws, (b) best of "
        f"{args.repeat}, seed={args.seed}"
    )
    warn_without_schedule()
    with tempfile.TemporaryDirectory(prefix="mpibatch-skew-") as tmpdir:
        tmp = Path(tmpdir)
        oks = [run_workload(w, args, tmp) for w in make_workloads(args, tmp)]
    print()
    print(
        "Futures rows run p+1 ranks (rank 0 is the client) so they have p workers. command: "
        "the whole command; task span: first task start to last task end; outside tasks = "
        "command - task span (start-up, last results, exit); each a mean over draws, each "
        f"draw the best of its runs ({args.repeat} for (b)); worst draw: the largest span x "
        "bound of one draw."
    )
    print(f"verdict: targets {'met' if all(oks) else 'NOT met'} on every workload")


if __name__ == "__main__":
    main()
