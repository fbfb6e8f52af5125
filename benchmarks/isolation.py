"""What task processes cost: ``--isolation on`` against ``off`` on the same build, one run.

    python benchmarks/isolation.py [--rounds 7] [--tasks 1000000] [--markdown]

Rows, each the median of ``--rounds`` alternating rounds (on, off, off, on, ...; the
``benchmarks/ab.py`` protocol), np=2:

- whole command: ``--reps N`` tiny tasks (one normal draw each), into HDF5;
- start-up: one task per rank, whole command (the task process's fork included);
- per-task path: whole command minus start-up, as tasks per second;
- restart after a crash: 400 tasks of which every 20th calls ``os._exit``, whole
  command minus the same 400 tasks with none crashing, per crash (isolation on only:
  with it off the first crash ends the job).

Results are checked: ``/results`` of both modes must be byte-identical for one seed.
"""

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from _bench import HERE, begin, compile_sources, last_stderr_line, mpibatch_run, print_table

TINY, CRASH = HERE / "tiny_task.py", HERE / "_crash_task.py"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--tasks", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--markdown", action="store_true")
    return p.parse_args(argv)


def timed(task: Path, n: int, mode: str, out: Path, args, codes=(0,)) -> float:
    """Seconds of one whole command (its exit code must be one of ``codes``)."""
    cmd = mpibatch_run(2, task, n, args.seed, out) + ["--isolation", mode]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    seconds = time.perf_counter() - t0
    if done.returncode not in codes:
        raise SystemExit(f"{task.name} --isolation {mode}: {last_stderr_line(done.stderr)}")
    return seconds


def results(path: Path) -> bytes:
    with h5py.File(path, "r") as f:
        return b"".join(np.ascontiguousarray(f["results"][k][()]).tobytes() for k in f["results"])


def main(argv=None) -> None:
    args = parse_args(argv)
    compile_sources()
    begin(f"task processes: --isolation on / off, np=2, median of {args.rounds} rounds")
    runs: dict = {m: {"whole": [], "start": [], "bytes": []} for m in ("on", "off")}
    crash, clean = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.h5"
        for r in range(args.rounds):
            for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
                runs[mode]["whole"].append(timed(TINY, args.tasks, mode, out, args))
                runs[mode]["bytes"].append(results(out))
                runs[mode]["start"].append(timed(TINY, 2, mode, out, args))
            crash.append(timed(CRASH, 400, "on", out, args, codes=(1,)))  # 1: tasks failed
            clean.append(timed(TINY, 400, "on", out, args))
    same = len({b for m in runs.values() for b in m["bytes"]}) == 1
    med = {
        m: {k: statistics.median(v) for k, v in d.items() if k != "bytes"} for m, d in runs.items()
    }
    rate = {m: args.tasks / max(1e-9, med[m]["whole"] - med[m]["start"]) for m in med}
    ratios = [b / a for a, b in zip(runs["on"]["whole"], runs["off"]["whole"], strict=True)]
    rows = [
        [
            f"whole command, {args.tasks:,} tiny tasks",
            f"{med['on']['whole']:.3f} s",
            f"{med['off']['whole']:.3f} s",
            f"{statistics.median(ratios):.3f}x",
        ],
        [
            "start-up (one task per rank)",
            f"{med['on']['start']:.3f} s",
            f"{med['off']['start']:.3f} s",
            f"{med['off']['start'] / med['on']['start']:.3f}x",
        ],
        [
            "per-task path (tasks/s)",
            f"{rate['on']:,.0f}",
            f"{rate['off']:,.0f}",
            f"{rate['on'] / rate['off']:.3f}x",
        ],
        [
            "restart after a crash (per crash)",
            f"{1000 * (statistics.median(crash) - statistics.median(clean)) / 20:.1f} ms",
            "-",
            "-",
        ],
    ]
    print_table(["row", "isolation on", "isolation off", "rate on/off"], rows, args.markdown)
    print(f"results: {'identical' if same else 'DIFFER'} across modes and rounds")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
