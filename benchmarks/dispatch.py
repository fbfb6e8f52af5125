"""How many block requests per second rank 0 serves, with empty tasks and blocks of one task.

Run from the repository root, with the project's virtual environment active::

    python benchmarks/dispatch.py [--tasks 20000] [--np 4] [--repeat 3] [--markdown]

Runs ``mpiexec -n NP mpibatch run benchmarks/_empty_task.py --reps N --schedule dynamic
--block-size 1`` (every task is one request to rank 0), once with rank 0 running tasks too and
once with ``--dedicated-root``, plus ``--schedule static`` for reference. At np=4 on a 2-core
machine the ranks are oversubscribed, so workers and rank 0 share the CPUs.

Rates per row, from the best (fastest) of ``--repeat`` whole-command runs:

- requests/s = n_blocks / (whole-command seconds - start-up), start-up being the same command
  with one task per rank (best-of as well): what the workers actually got;
- n_blocks / wall_seconds (the file's own run time, without interpreter start-up);
- capacity = n_blocks / dispatch_seconds (rank 0's time spent serving requests): how fast rank
  0 could serve if it did nothing else.

Results are checked: every task done with value 0.0; the table shows tasks per rank.
"""

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from _bench import (
    HERE,
    begin,
    file_attrs,
    mpibatch_run,
    print_table,
    run_command,
    warn_without_schedule,
)

HEADER = [
    "system",
    "seconds",
    "start-up s",
    "n_blocks",
    "requests/s",
    "blocks / wall_seconds",
    "dispatch_seconds",
    "capacity /s",
    "results",
]


@dataclass
class Row:
    name: str
    flags: list[str]
    seconds: float | None = None
    startup: float | None = None
    attrs: dict = field(default_factory=dict)
    results: str = ""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=20_000, help="number of empty tasks N")
    p.add_argument("--np", type=int, default=4, help="MPI ranks")
    p.add_argument("--repeat", type=int, default=3, help="runs per command; best-of is shown")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per command")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = p.parse_args(argv)
    if args.tasks < args.np or args.np < 2 or args.repeat < 1:
        p.error("need --np >= 2, --tasks >= --np and --repeat >= 1")
    return args


def check(path: Path, ntasks: int, nranks: int, attrs: dict) -> str:
    try:
        with h5py.File(path, "r") as f:
            status, ranks = f["tasks/status"][()], f["tasks/rank"][()]
            values = f["results/value"][()]
    except (OSError, KeyError) as exc:
        return f"DIFFERENT (cannot read output: {exc})"
    if status.shape != (ntasks,) or not (status == 1).all():
        return f"DIFFERENT ({int((status == 1).sum())} of {ntasks} tasks done)"
    if not (values == 0.0).all():
        return "DIFFERENT (values)"
    per_rank = np.bincount(ranks, minlength=nranks)
    attrs["per_rank"] = [int(k) for k in per_rank]
    return "ok; tasks per rank 0/1/.. " + "/".join(str(int(k)) for k in per_rank)


def measure(args, row: Row, tmp: Path) -> Row:
    out = tmp / "dispatch.h5"
    task = HERE / "_empty_task.py"
    for _ in range(args.repeat):
        for ntasks in (args.tasks, args.np):
            out.unlink(missing_ok=True)
            cmd = mpibatch_run(args.np, task, ntasks, args.seed, out) + row.flags
            seconds, error = run_command(cmd, args.timeout)
            if seconds is None:
                row.results, row.seconds = error, None  # a failed run voids the row
                return row
            if ntasks == args.np:
                row.startup = min(row.startup or seconds, seconds)
            elif row.seconds is None or seconds < row.seconds:
                row.seconds, row.attrs = seconds, file_attrs(out)
                result = check(out, args.tasks, args.np, row.attrs)
                row.results = result if not row.results.startswith("DIFF") else row.results
    return row


def rates(row: Row) -> dict:
    """requests/s (net of start-up), blocks per wall_seconds, and capacity, where known."""
    a, out = row.attrs, {}
    blocks = a.get("n_blocks")
    if row.seconds is None or row.startup is None or not blocks:
        return out
    net = row.seconds - row.startup
    out["requests"] = blocks / net if net > 0 else None
    if a.get("wall_seconds"):
        out["wall"] = blocks / a["wall_seconds"]
    if a.get("dispatch_seconds"):
        out["capacity"] = blocks / a["dispatch_seconds"]
    return out


def cells(rows: list[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        if r.seconds is None or r.startup is None:
            out.append([r.name] + ["-"] * 7 + [r.results])
            continue
        x, a = rates(r) if "dynamic" in r.flags else {}, r.attrs  # static: no requests

        def num(v, fmt="{:,.0f}"):
            return fmt.format(v) if v is not None else "-"

        out.append(
            [
                r.name,
                f"{r.seconds:.2f}",
                f"{r.startup:.2f}",
                num(a.get("n_blocks")),
                num(x.get("requests")),
                num(x.get("wall")),
                num(a.get("dispatch_seconds"), "{:.3f}"),
                num(x.get("capacity")),
                r.results,
            ]
        )
    return out


def reasoning(rows: list[Row], args) -> list[str]:
    """Three or four lines: what rank 0 served, its cost per request, how many ranks it feeds."""
    shared, dedicated = rows[0], rows[1]
    lines = []
    per_rank = shared.attrs.get("per_rank")
    if per_rank is not None and shared.seconds is not None:
        lines.append(
            f"{shared.name}: rank 0 ran {per_rank[0]:,} of {args.tasks:,} tasks itself and "
            f"handed {args.tasks - per_rank[0]:,} to the other ranks; its blocks/s is mostly "
            "its own tasks, not requests served."
        )
    x = rates(dedicated)
    if "capacity" in x and x.get("requests"):
        busy = dedicated.attrs["dispatch_seconds"] / dedicated.attrs["wall_seconds"]
        lines.append(
            f"{dedicated.name}: {x['requests']:,.0f} requests/s end to end; rank 0 was serving "
            f"{100 * busy:.0f}% of wall_seconds at {1e6 / x['capacity']:,.0f} us per request "
            f"(capacity {x['capacity']:,.0f}/s)."
        )
        lines.append(
            "With 1-s tasks at block size 1 each worker asks once a second, so rank 0 can feed "
            f"about capacity x 1 s = {x['capacity']:,.0f} ranks (end-to-end figure: "
            f"{x['requests']:,.0f}); beyond that requests queue and workers idle."
        )
    lines.append(
        f"Caveat: np={args.np} on this machine; workers share its cores with rank 0, and "
        "message latency between nodes is not in these figures."
    )
    return lines


def main(argv=None) -> None:
    args = parse_args(argv)
    begin(f"dispatch: {args.tasks:,} empty tasks, np={args.np}, best of {args.repeat}")
    warn_without_schedule()
    dyn = ["--schedule", "dynamic", "--block-size", "1"]
    rows = [
        Row("dynamic, block 1", dyn),
        Row("dynamic, block 1, --dedicated-root", dyn + ["--dedicated-root"]),
        Row("static (reference)", ["--schedule", "static"]),
    ]
    with tempfile.TemporaryDirectory(prefix="mpibatch-dispatch-") as tmpdir:
        for row in rows:
            measure(args, row, Path(tmpdir))
            print(f"  ... {row.name}: {row.seconds}", file=sys.stderr)
    notes = [
        "requests/s = n_blocks / (seconds - start-up); capacity = n_blocks / dispatch_seconds; "
        "start-up = same command with one task per rank",
        *reasoning(rows, args),
    ]
    print_table(HEADER, cells(rows), args.markdown, notes)


if __name__ == "__main__":
    main()
