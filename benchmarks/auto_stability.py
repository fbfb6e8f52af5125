"""How predictable ``--schedule auto`` is: the same workload run N times, its choices counted.

Run from the repository root, with the project's virtual environment active::

    python benchmarks/auto_stability.py [--runs 20] [--np 2] [--only abcs] [--src DIR]

Workloads: skew.py's (a) log-normal (draw 0), (b) 4 slow + 12 fast and (c) the GBM grid,
exactly as skew.py makes them, and (s) the stratified study (examples/stratified.py; its
groups keep 10,000 rows each, as in the full study, but there are --groups of them).
Each run is ``mpiexec -n NP mpibatch run ... --schedule auto``, run to its end (the tasks of
(a)-(c) sleep, so the 20 runs of (a) take about 200 s at np=2 but little CPU); the file's
``schedule_used`` and ``schedule_reason`` are read. ``--src DIR`` runs another
tree's mpibatch (``PYTHONPATH=DIR``, e.g. ``/work/main/src``) for a before/after pair.

Target (issue 26, item 5): at least 19 of 20 identical runs choose the same schedule.
"""

import argparse
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

import skew
from _bench import BINDIR, begin, file_attrs, mpiexec, print_table, run_command
from _skew_task import ENV

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HEADER = ["workload", "np", "runs", "static", "dynamic", "same choice", "probe cv", "verdict"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20, help="runs of each workload")
    p.add_argument("--np", default="2", help="comma-separated process counts")
    p.add_argument("--only", default="abcs", help="workloads, e.g. cs")
    p.add_argument("--groups", type=int, default=100, help="(s): groups of 10,000 rows")
    p.add_argument("--src", default="", help="run the mpibatch package of this directory")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    args.np = [int(x) for x in args.np.split(",")]
    return args


def commands(args, tmp: Path) -> list[tuple[str, list[str], dict]]:
    """(name, argv before --out, env) of each workload."""
    sk = skew.parse_args(["--draws", "1"])
    works = [w for w in skew.make_workloads(sk, tmp) if w.name[1] in args.only]
    task = skew.HERE / "_skew_task.py"
    out = [
        (w.name, ["run", str(task), "--reps", str(w.size)], {ENV: str(w.paths[0])}) for w in works
    ]
    if "s" in args.only:
        rows = {"STRATIFIED_ROWS": str(10_000 * args.groups), "STRATIFIED_GROUPS": str(args.groups)}
        out.append(
            (
                f"(s) stratified, {args.groups} groups",
                ["run", str(EXAMPLES / "stratified.py")],
                rows,
            )
        )
    return out


def one_run(nprocs: int, argv: list[str], env: dict, out: Path) -> tuple[str, str]:
    cmd = mpiexec(nprocs) + [str(BINDIR / "mpibatch"), *argv, "--seed", "1", "--out", str(out)]
    cmd += ["--overwrite", "--quiet", "--schedule", "auto"]
    out.unlink(missing_ok=True)
    _, error = run_command(cmd, 120, env=env)
    attrs = file_attrs(out)
    if "schedule_used" not in attrs:
        return "failed", error or "no schedule_used in the file"
    return str(attrs["schedule_used"]), str(attrs.get("schedule_reason", ""))


def main(argv=None) -> None:
    args = parse_args(argv)
    begin(f"auto stability: {args.runs} runs of each workload, np={args.np}")
    cells, ok = [], True
    with tempfile.TemporaryDirectory(prefix="mpibatch-auto-") as tmpdir:
        tmp = Path(tmpdir)
        for name, cmd, env in commands(args, tmp):
            env = {**env, "PYTHONPATH": args.src} if args.src else env
            for nprocs in args.np:
                got = [one_run(nprocs, cmd, env, tmp / "out.h5") for _ in range(args.runs)]
                counts = Counter(kind for kind, _ in got)
                cvs = [
                    float(m.group(1)) for _, why in got if (m := re.search(r"cv (\d+\.\d+)", why))
                ]
                same = max(counts.values())
                fine = same >= 0.95 * args.runs and not {"failed", "auto"} & set(counts)
                ok &= fine
                cv = f"{min(cvs):.2f}-{max(cvs):.2f}" if cvs else "-"
                row = [name, str(nprocs), str(args.runs), str(counts["static"])]
                row += [
                    str(counts["dynamic"]),
                    f"{same}/{args.runs}",
                    cv,
                    "met" if fine else "NOT met",
                ]
                cells.append(row)
                print(f"  ... {name} np={nprocs}: {dict(counts)}", file=sys.stderr, flush=True)
    print_table(HEADER, cells, args.markdown)
    print("probe cv: the range over the runs whose choice came from the probe's CV")
    print(f"verdict: >= 95% of runs choose the same schedule -> {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
