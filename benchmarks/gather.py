"""Bytes per second of results landed in the HDF5 file, and rank 0's peak memory.

Run from the repository root, with the project's virtual environment active::

    python benchmarks/gather.py [--gb 4] [--np 2] [--schedules auto,static,dynamic]
                                [--repeat 5] [--dir /tmp] [--markdown]

Tasks (``benchmarks/_gather_task.py``) each return 1 MiB (131,072 float64, all equal to the task
id), so ``--gb G`` runs 1024 * G tasks and lands G GiB of results; the work per task is ~0.1 ms.

Rows:

1. local limit: this process alone writes the same (N, 131072) float64 array with h5py, in
   blocks of ``--block-mb`` rows (default 64, mpibatch's MPIBATCH_GATHER_MB), filling each
   block first; timed from opening the file to closing it. Two layouts: chunked as mpibatch's
   store chunked results (rows of ~1 MiB: one row per chunk here) and contiguous (as the
   fixed-layout store allocates them); the faster of the two is "the limit".
2. ``mpiexec -n NP python benchmarks/_rss_probe.py ... run _gather_task.py --schedule S``
   for each schedule: the mpibatch console entry point unchanged, plus an exit hook that reads
   each rank's ``VmHWM`` (peak RSS) from ``/proc/self/status`` after mpibatch and MPI_Finalize
   are done. That is exact and needs no change to mpibatch. As a cross-check the parent also
   polls ``/proc/<pid>/status`` of the rank-0 Python process every 10 ms while the command runs
   (found among mpiexec's descendants by ``PMI_RANK=0`` in ``/proc/<pid>/environ``); polling
   can only miss a peak reached in the last few ms, so it should be at most the exit value.

3. ``--ragged``: instead of the rows above, the same bytes as ragged results (the key
   declared ``ragged float64``, rows of ROW -/+ 4096 values, ``GATHER_MODE=ragged``) against
   fixed-shape results, at ``--np`` with ``--schedules``' first schedule; printed side by
   side with the ratio of their net rates and rank 0's peak RSS. Targets: ragged >= 80% of
   the fixed-shape rate, rank 0 under 0.5 GiB at 1 GiB. Every ragged file is read back.

Rates: whole command (time.perf_counter around it), net of start-up (start-up = the same
command with one task per rank), and by the file's own ``wall_seconds`` attribute. The
``--repeat`` rounds are interleaved (each round runs every row once, in an order rotated from
round to round); times are best-of (minimum), peak RSS is the worst (maximum), and "paired" is
the median over rounds of (net rate / that round's limit), which a lucky or unlucky single run
on either side cannot move much.
Every timed write starts from the same state (not timed): the page cache synced
(``os.sync()``), so one run's dirty pages are not written back during the next, then
``--settle`` seconds of rest. The rest matters on virtual machines that hand freed memory back
to the hypervisor (free page reporting, after ~2 s; this project's Firecracker VM does): a 4 GiB
write right after a 4 GiB file was deleted reuses still-backed pages and took 3-5 s here, the
same write 5 s later 7-10 s. Without the rest, whichever row happened to follow a delete won.
Every file is read back and checked (every row equals its task id, all tasks done) on the first
run. Writes land in the page cache, for the limit and mpibatch alike. Files go in a temporary
directory under ``--dir`` that is deleted at the end.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import h5py
import numpy as np
from _bench import (
    HERE,
    begin,
    last_stderr_line,
    mpiexec,
    print_table,
    run_args,
    warn_without_schedule,
)
from _gather_task import ROW

MIB = 1 << 20
RSS_LIMIT_BYTES = 10**9
TARGETS = (
    "targets: net rate >= 70% of the local limit (best of each, and paired); "
    "at 4 GiB rank 0's peak RSS < 1 GB (1e9 B)"
)
HEADER = [
    "system",
    "seconds",
    "GiB/s",
    "start-up s",
    "net GiB/s",
    "net x limit",
    "wall_seconds GiB/s",
    "rank 0 peak RSS MiB",
    "paired x limit",
    "results",
]


@dataclass
class Row:
    name: str
    seconds: list = field(default_factory=list)
    startup: list = field(default_factory=list)
    wall_attr: list = field(default_factory=list)
    rss_kib: list = field(default_factory=list)  # rank 0 VmHWM at exit, per run
    polled_kib: list = field(default_factory=list)  # largest VmHWM polled from outside
    rank1_kib: list = field(default_factory=list)
    paired: list = field(default_factory=list)  # net rate / the same round's limit rate
    results: str = ""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gb", type=float, default=4.0, help="GiB of results (1024 tasks per GiB)")
    p.add_argument("--np", type=int, default=2, help="MPI ranks")
    p.add_argument("--schedules", default="auto,static,dynamic", help="comma-separated")
    p.add_argument("--block-mb", type=int, default=64, help="rows per write of the local limit")
    p.add_argument("--repeat", type=int, default=5, help="runs per command; best-of is shown")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--settle", type=float, default=3.0, help="seconds of rest before every timed write"
    )
    p.add_argument("--dir", default=None, help="where the temporary directory goes")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per command")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--ragged", action="store_true", help="ragged against fixed-shape (3. above)")
    args = p.parse_args(argv)
    args.ntasks = max(args.np, round(args.gb * 1024))
    args.schedules = args.schedules.split(",")
    if args.np < 1 or args.repeat < 1 or args.block_mb < 1:
        p.error("--np, --repeat and --block-mb must be positive")
    return args


def chunk_rows(ntasks: int) -> int:
    """Rows per chunk as mpibatch's store chooses them: ~1 MiB chunks along rows."""
    return max(1, min(ntasks, MIB // (ROW * 8)))


def settle(seconds: float) -> None:
    """Write back dirty pages, then rest so freed memory is where it will be (see above)."""
    os.sync()
    time.sleep(seconds)


def write_local(path: Path, ntasks: int, block_rows: int, chunked: bool, rest: float) -> float:
    buf = np.empty((block_rows, ROW))
    chunks = (chunk_rows(ntasks), ROW) if chunked else None
    settle(rest)  # the same start as every timed command
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("value", shape=(ntasks, ROW), dtype="f8", chunks=chunks)
        for a in range(0, ntasks, block_rows):
            b = min(ntasks, a + block_rows)
            buf[: b - a] = np.arange(a, b, dtype=np.float64)[:, None]
            ds[a:b] = buf[: b - a]
    return time.perf_counter() - t0


def check_rows(ds: h5py.Dataset, ntasks: int) -> str:
    if ds.shape != (ntasks, ROW) or ds.dtype != np.float64:
        return f"DIFFERENT (shape {ds.shape}, dtype {ds.dtype})"
    for a in range(0, ntasks, 64):
        b = min(ntasks, a + 64)
        if not (ds[a:b] == np.arange(a, b, dtype=np.float64)[:, None]).all():
            return f"DIFFERENT (rows {a}..{b - 1})"
    return f"ok, {'chunks ' + str(ds.chunks) if ds.chunks else 'contiguous'}"


def check_file(path: Path, ntasks: int) -> str:
    try:
        with h5py.File(path, "r") as f:
            if "results" not in f:
                return check_rows(f["value"], ntasks)
            status = f["tasks/status"][()]
            if not (status == 1).all():
                return f"DIFFERENT ({int((status == 1).sum())} of {ntasks} tasks done)"
            keys = list(f["results"])
            return check_rows(f["results"][keys[0]], ntasks) if len(keys) == 1 else "no key"
    except (OSError, KeyError) as exc:
        return f"DIFFERENT (cannot read output: {exc})"


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def rank0_pid(root: int) -> int | None:
    for pid in descendants(root):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"PMI_RANK=0" in env:
            return pid
    return None


def vm_hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")), None)
    except OSError:
        return None


def run_polled(cmd: list[str], timeout: float) -> tuple[float | None, str, int | None]:
    """Time a whole command while polling rank 0's VmHWM; (seconds, error, largest KiB seen)."""
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        peak, pid = None, None
        while proc.poll() is None:
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                proc.wait()
                return None, f"failed: timed out after {timeout:.0f} s", peak
            pid = pid or rank0_pid(proc.pid)
            kib = vm_hwm_kib(pid) if pid else None
            peak = max(peak or 0, kib) if kib else peak
            time.sleep(0.01)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            err.seek(0)
            return None, f"failed: {last_stderr_line(err.read())}", peak
    return seconds, "", peak


def mpibatch_cmd(args, schedule: str, ntasks: int, out: Path, rss_dir: Path) -> list[str]:
    probe = [sys.executable, str(HERE / "_rss_probe.py"), str(rss_dir)]
    task = HERE / "_gather_task.py"
    return (
        mpiexec(args.np) + probe + run_args(task, ntasks, args.seed, out) + ["--schedule", schedule]
    )


def read_kib(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def run_mpibatch_once(args, row: Row, schedule: str, tmp: Path, first: bool, check=None) -> bool:
    """One full run (checked on the first) and one start-up run; False if a command failed."""
    out, rss_dir = tmp / "mpibatch.h5", tmp / "rss"
    for ntasks in (args.ntasks, args.np):
        shutil.rmtree(rss_dir, ignore_errors=True)
        rss_dir.mkdir()
        out.unlink(missing_ok=True)
        settle(args.settle if ntasks == args.ntasks else 0.0)
        seconds, error, polled = run_polled(
            mpibatch_cmd(args, schedule, ntasks, out, rss_dir), args.timeout
        )
        if seconds is None:
            row.results = error
            return False
        if ntasks == args.np:
            row.startup.append(seconds)
            continue
        row.seconds.append(seconds)
        row.polled_kib.append(polled)
        row.rss_kib.append(read_kib(rss_dir / "rank0.kib"))
        row.rank1_kib.append(read_kib(rss_dir / "rank1.kib"))
        with h5py.File(out, "r") as f:
            row.wall_attr.append(float(f.attrs.get("wall_seconds", np.nan)))
            used = f.attrs.get("schedule_used", schedule)
        if first:
            row.results = f"{(check or check_file)(out, args.ntasks)}; used {used}"
    out.unlink(missing_ok=True)
    return True


def measure(args, tmp: Path) -> list[Row]:
    limits = [Row(f"local limit: 1 process, h5py, {lay}") for lay in ("chunked", "contiguous")]
    rows = [Row(f"mpibatch np={args.np} --schedule {s}") for s in args.schedules]
    failed: set = set()
    for rep in range(args.repeat):
        order = [None, *args.schedules]  # None: the two limit writes
        order = order[rep % len(order) :] + order[: rep % len(order)]
        limit_s = None
        for what in order:
            if what is None:
                limit_s = run_limits(args, limits, tmp, rep == 0)
                continue
            row = rows[args.schedules.index(what)]
            if what not in failed and not run_mpibatch_once(args, row, what, tmp, rep == 0):
                failed.add(what)
            print(f"  ... {row.name}: {row.seconds[-1:]}", file=sys.stderr)
        for row, what in zip(rows, args.schedules, strict=True):
            if what not in failed:  # this round's net time against this round's limit
                row.paired.append(limit_s / (row.seconds[-1] - row.startup[-1]))
    return [*limits, *rows]


def run_limits(args, limits: list[Row], tmp: Path, first: bool) -> float:
    """Both local writes once; the faster one's seconds."""
    path = tmp / "local.h5"
    for limit, chunked in zip(limits, (True, False), strict=True):
        limit.seconds.append(write_local(path, args.ntasks, args.block_mb, chunked, args.settle))
        if first:
            limit.results = check_file(path, args.ntasks)
        path.unlink()
    print(f"  ... limits: {[round(r.seconds[-1], 2) for r in limits]}", file=sys.stderr)
    return min(r.seconds[-1] for r in limits)


def is_limit(row: Row) -> bool:
    return row.name.startswith("local limit")


def fmt_rss(row: Row) -> str:
    exits = [k for k in row.rss_kib if k is not None]
    polled = [k for k in row.polled_kib if k is not None]
    if not exits and not polled:
        return "-"
    text = f"{max(exits) / 1024:.0f}" if exits else "?"
    return text + (f" (polled {max(polled) / 1024:.0f})" if polled else "")


def cells(rows: list[Row], gib: float) -> list[list[str]]:
    limit_rate = gib / min(min(r.seconds) for r in rows if is_limit(r))
    out = []
    for r in rows:
        if not r.seconds or (not is_limit(r) and not r.startup):
            out.append([r.name] + ["-"] * 8 + [r.results])
            continue
        best = min(r.seconds)
        nums = [f"{best:.2f}", f"{gib / best:.2f}"]
        if is_limit(r):
            nums += ["-", f"{gib / best:.2f}", f"{gib / best / limit_rate:.2f}", "-", "-", "-"]
        else:
            net = best - min(r.startup)
            wall = min(r.wall_attr)
            nums += [f"{min(r.startup):.2f}", f"{gib / net:.2f}", f"{gib / net / limit_rate:.2f}"]
            nums += [f"{gib / wall:.2f}" if wall == wall else "-", fmt_rss(r)]
            nums.append(f"{median(r.paired):.2f}" if r.paired else "-")
        out.append([r.name, *nums, r.results])
    return out


def verdict(rows: list[Row], gib: float) -> list[str]:
    limit_rate = gib / min(min(r.seconds) for r in rows if is_limit(r))
    lines = []
    for r in rows:
        if is_limit(r):
            continue
        if not r.seconds or not r.startup or not r.results.startswith("ok"):
            lines.append(f"  {r.name}: not measured or wrong results")
            continue
        frac = gib / (min(r.seconds) - min(r.startup)) / limit_rate
        rss = [k * 1024 for k in r.rss_kib + r.polled_kib if k is not None]
        peak = max(rss) if rss else None
        rss_ok = peak is not None and peak < RSS_LIMIT_BYTES
        rss_txt = f"{peak / 1e9:.3f} GB" if peak else "unknown"
        paired = median(r.paired) if r.paired else 0.0
        ok = min(frac, paired) >= 0.70 and (rss_ok or gib < 4)
        lines.append(
            f"  {r.name}: {100 * frac:.0f}% of the limit (best of each), {100 * paired:.0f}% "
            f"paired (median over rounds), rank 0 peak RSS {rss_txt}"
            f"{'' if gib >= 4 else ' (RSS target applies at 4 GiB)'} -> "
            f"{'met' if ok else 'NOT met'}"
        )
    return lines


def check_ragged(path: Path, ntasks: int) -> str:
    """Every task's row: its length, every value its task id."""
    from _gather_task import length

    from mpibatch._ragged import read_values

    with h5py.File(path, "r") as f:
        if not (f["tasks/status"][()] == 1).all():
            return "DIFFERENT (not every task done)"
        for a in range(0, ntasks, 64):
            rows = read_values(f, "value", np.arange(a, min(ntasks, a + 64)))
            for i, v in enumerate(rows, a):
                if v is None or len(v) != length(i, "ragged") or not (v == i).all():
                    return f"DIFFERENT (task {i})"
        return f"ok, ragged ({f['results/value/values'].shape[0]:,} values)"


def ragged_rows(args, tmp: Path) -> list[Row]:
    """Fixed-shape and ragged runs of the same bytes, interleaved rounds."""
    schedule = args.schedules[0]
    rows = {m: Row(f"mpibatch np={args.np} {m}") for m in ("fixed", "ragged")}
    for rep in range(args.repeat):
        for mode in ("fixed", "ragged") if rep % 2 == 0 else ("ragged", "fixed"):
            os.environ["GATHER_MODE"] = mode
            row = rows[mode]
            check = check_ragged if mode == "ragged" else check_file
            run_mpibatch_once(args, row, schedule, tmp, rep == 0, check)
            print(f"  ... {row.name}: {row.seconds[-1:]}", file=sys.stderr)
    os.environ.pop("GATHER_MODE", None)
    return list(rows.values())


def ragged_main(args, gib: float, base: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="mpibatch-gather-", dir=base) as tmpdir:
        fixed, ragged = ragged_rows(args, Path(tmpdir))
    head = ["results", "seconds", "start-up s", "net GiB/s", "rank 0 peak RSS MiB", "check"]
    cells, rates = [], []
    for r in (fixed, ragged):
        if not r.seconds or not r.startup:
            cells.append([r.name, "-", "-", "-", "-", r.results])
            rates.append(float("nan"))
            continue
        net = min(r.seconds) - min(r.startup)
        rates.append(gib / net)
        cells.append(
            [r.name, f"{min(r.seconds):.2f}", f"{min(r.startup):.2f}", f"{gib / net:.2f}"]
            + [fmt_rss(r), r.results]
        )
    ratio = rates[1] / rates[0]
    rss = [k * 1024 for k in ragged.rss_kib + ragged.polled_kib if k is not None]
    peak = max(rss) if rss else float("nan")
    print_table(head, cells, args.markdown, [f"ragged / fixed-shape net rate: {ratio:.2f}"])
    ok = ratio >= 0.8 and peak < 0.5 * 2**30
    print(
        f"targets: ragged >= 80% of the fixed-shape rate ({100 * ratio:.0f}%), rank 0 peak RSS "
        f"< 0.5 GiB ({peak / 2**30:.2f} GiB) -> {'met' if ok else 'NOT met'}"
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.ragged:
        args.ntasks += args.ntasks % 2  # an even number: the same bytes in both
        begin(f"gather --ragged: {args.ntasks / 1024:g} GiB, np={args.np}, best of {args.repeat}")
        ragged_main(args, args.ntasks / 1024, Path(args.dir or tempfile.gettempdir()))
        return
    gib = args.ntasks / 1024
    base = Path(args.dir or tempfile.gettempdir())
    free = shutil.disk_usage(base).free
    begin(
        f"gather: {args.ntasks:,} tasks x 1 MiB = {gib:g} GiB of results, np={args.np}, best of "
        f"{args.repeat}"
    )
    print(f"{free / 2**30:.0f} GiB free in {base}", flush=True)
    if free < 2 * gib * 2**30 + 2**30:
        sys.exit(f"not enough free disk in {base} for two {gib:g} GiB files; use --dir or --gb")
    warn_without_schedule()
    with tempfile.TemporaryDirectory(prefix="mpibatch-gather-", dir=base) as tmpdir:
        rows = measure(args, Path(tmpdir))
    notes = [
        "rank 0 peak RSS: VmHWM at exit, worst of the runs; in brackets: the largest VmHWM "
        "polled from outside during the run",
        f"rank 1 peak RSS (at exit, worst): {rank1_text(rows)}",
    ]
    print_table(HEADER, cells(rows, gib), args.markdown, notes)
    print(TARGETS)
    print("\n".join(verdict(rows, gib)))


def rank1_text(rows: list[Row]) -> str:
    parts = []
    for r in rows:
        if is_limit(r):
            continue
        kib = [k for k in r.rank1_kib if k is not None]
        parts.append(f"{r.name.split()[-1]} {max(kib) / 1024:.0f} MiB" if kib else "-")
    return ", ".join(parts)


if __name__ == "__main__":
    main()
