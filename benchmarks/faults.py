"""What fault safety costs: flush intervals, and how fast a stop request becomes a resumable exit.

    python benchmarks/faults.py [--tasks N] [--repeat R] [--markdown]

1. Throughput of the core overhead workload (N tiny tasks, one normal draw each, np=2)
   with the default flush interval (30 s), a flush every 0.1 s, and flushing never
   (--flush-seconds 1e9), as whole commands (best of R). Target: the default costs
   <= 5% against never.
2. Time from SIGUSR1 (sent to mpiexec, which forwards it to every rank) to a resumable
   exit (exit code 3, file closed) at np=4, for short tasks (50 ms) and for long tasks
   (10 s each, interrupted when --grace 2 runs out). Target: within the grace period + 2 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
from _bench import HERE, begin, mpibatch_run, print_table, run_command

SLEEPY = HERE / "_sleep_task.py"
TIMEOUT = 1800.0  # seconds per command


def _best(cmd: list[str], repeat: int) -> float:
    """The best of ``repeat`` whole runs of ``cmd``, in seconds; exits if one fails."""
    times = []
    for _ in range(repeat):
        seconds, error = run_command(cmd, TIMEOUT)
        if seconds is None:
            sys.exit(f"{' '.join(cmd)}: {error}")
        times.append(seconds)
    return min(times)


def flush_costs(tmp: Path, n: int, repeat: int) -> list[tuple[str, float]]:
    rows = []
    for label, flush in (
        ("never (--flush-seconds 1e9)", "1e9"),
        ("default (30 s)", "30"),
        ("every 0.1 s", "0.1"),
    ):
        cmd = mpibatch_run(2, HERE / "tiny_task.py", n, 1, tmp / "f.h5")
        cmd += ["--flush-seconds", flush]
        rows.append((label, n / _best(cmd, repeat)))
    return rows


def stop_time(tmp: Path, task_ms: float, grace: float) -> tuple[float, int, int]:
    """Seconds from SIGUSR1 to exit, the exit code, and tasks left pending."""
    out = tmp / "stop.h5"
    env = {**os.environ, "SLEEP_MS": str(task_ms)}
    cmd = mpibatch_run(4, SLEEPY, 4000, 1, out) + ["--grace", str(grace), "--schedule", "dynamic"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3.0)
    t = time.perf_counter()
    p.send_signal(signal.SIGUSR1)
    code = p.wait(timeout=120)
    took = time.perf_counter() - t
    with h5py.File(out, "r") as f:
        pending = int((f["tasks/status"][()] == 0).sum())
    return took, code, pending


def flush_table(tmp: Path, args) -> None:
    rows = flush_costs(tmp, args.tasks, args.repeat)
    never = rows[0][1]
    cells = [[label, f"{rate:,.0f}", f"{rate / never - 1:+.1%}"] for label, rate in rows]
    print(f"flush cost: {args.tasks:,} tiny tasks at np=2, best of {args.repeat}")
    notes = ["target: the default costs <= 5% of throughput"]
    print_table(["flush interval", "tasks/s", "vs never"], cells, args.markdown, notes)


def stop_table(tmp: Path, args) -> None:
    cells = []
    for task_ms, grace in ((50, 30.0), (10_000, 2.0)):
        took, code, pending = stop_time(tmp, task_ms, grace)
        ok = "met" if took <= grace + 2 and code == 3 else "MISSED"
        cells.append(
            [f"{task_ms:g} ms each", f"{grace:g}", f"{took:.2f}", str(code), str(pending)]
            + [f"<= {grace + 2:g} s: {ok}"]
        )
    print("stop: SIGUSR1 to mpiexec at np=4 -> resumable exit")
    header = ["tasks", "grace", "seconds", "exit", "pending", "target"]
    print_table(header, cells, args.markdown)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    args = ap.parse_args()
    begin(f"faults: {args.tasks:,} tiny tasks, best of {args.repeat}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        flush_table(tmp, args)
        print()
        stop_table(tmp, args)


if __name__ == "__main__":
    main()
