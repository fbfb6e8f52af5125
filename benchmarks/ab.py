"""This tree's mpibatch against another tree's, side by side in one run: overhead and dispatch.

Run from the repository root, with the project's virtual environment active::

    git worktree add /tmp/base <commit>          # the code to compare against
    python benchmarks/ab.py --base /tmp/base [--rounds 5] [--markdown]

Both trees run under the same ``mpiexec`` and virtual environment; only ``PYTHONPATH``
differs (``<tree>/src``), and the two alternate round by round (A B, B A, ...) so that a
machine that slows down or speeds up during the run affects both alike. Two workloads:

- overhead: ``--reps 1000000`` tiny tasks (one normal draw each) at np=2, whole command;
- dispatch: ``--reps 20000`` empty tasks at np=4, ``--schedule dynamic --block-size 1
  --dedicated-root`` (one request to rank 0 per task): whole command, and rank 0's
  capacity ``n_blocks / dispatch_seconds`` from the file.

The table shows best-of and median for each tree and the median of the per-round ratios
(this tree / base: above 1 is slower for times, faster for rates). Results are checked:
``/results`` of both trees must be byte-identical for the same seed.
"""

import argparse
import compileall
import statistics
import tempfile
from pathlib import Path

import h5py
import numpy as np
from _bench import HERE, begin, file_attrs, mpibatch_run, print_table, run_command

ROOT = HERE.parent
WORKLOADS = {  # name -> (task file, np, tasks, extra flags)
    "overhead": (HERE / "tiny_task.py", 2, 1_000_000, ["--schedule", "auto"]),
    "dispatch": (
        HERE / "_empty_task.py",
        4,
        20_000,
        ["--schedule", "dynamic", "--block-size", "1", "--dedicated-root"],
    ),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, required=True, help="root of the tree to compare with")
    p.add_argument("--rounds", type=int, default=5, help="A/B rounds per workload")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per command")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    return p.parse_args(argv)


def results_bytes(path: Path) -> bytes:
    with h5py.File(path, "r") as f:
        return b"".join(np.ascontiguousarray(f["results"][k][()]).tobytes() for k in f["results"])


def one(tree: Path, workload: str, seed: int, out: Path, timeout: float) -> tuple:
    """(whole-command seconds, capacity requests/s or None, results bytes) for one run."""
    task, nranks, ntasks, flags = WORKLOADS[workload]
    cmd = mpibatch_run(nranks, task, ntasks, seed, out) + flags
    seconds, error = run_command(cmd, timeout, env={"PYTHONPATH": str(tree / "src")})
    if seconds is None:
        raise SystemExit(f"{workload} on {tree}: {error}")
    attrs = file_attrs(out)
    blocks, serving = attrs.get("n_blocks"), attrs.get("dispatch_seconds")
    capacity = blocks / serving if blocks and serving else None
    return seconds, capacity, results_bytes(out)


def compare(trees: dict, workload: str, args, tmp: Path) -> list[list[str]]:
    runs: dict = {name: [] for name in trees}
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))
        for name in order:
            runs[name].append(
                one(trees[name], workload, args.seed, tmp / f"{name}.h5", args.timeout)
            )
    same = all(x[2] == runs["base"][0][2] for name in trees for x in runs[name])
    rows = []
    for metric, k, fmt in (("seconds", 0, "{:.3f}"), ("capacity req/s", 1, "{:,.0f}")):
        if workload == "overhead" and k == 1:
            continue
        values = {name: [x[k] for x in runs[name]] for name in trees}
        best = min if k == 0 else max
        ratios = [a / b for a, b in zip(values["this"], values["base"], strict=True)]
        rows.append(
            [workload, metric]
            + [fmt.format(best(values[n])) for n in trees]
            + [fmt.format(statistics.median(values[n])) for n in trees]
            + [f"{statistics.median(ratios):.3f}", "identical" if same else "DIFFER"]
        )
    return rows


def main(argv=None) -> None:
    args = parse_args(argv)
    trees = {"base": args.base.resolve(), "this": ROOT}
    for tree in trees.values():  # every rank would compile the sources anew otherwise
        compileall.compile_dir(tree / "src", quiet=1)
    begin(f"mpibatch A/B: this tree against {trees['base']} ({args.rounds} rounds each)")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row for w in WORKLOADS for row in compare(trees, w, args, Path(tmp))]
    header = ["workload", "metric", "best base", "best this", "median base", "median this"]
    print_table(header + ["median ratio this/base", "results"], rows, args.markdown)


if __name__ == "__main__":
    main()
