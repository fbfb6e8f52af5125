"""What fault safety costs: flush intervals, and how fast a stop request becomes a resumable exit.

    python benchmarks/faults.py [--tasks N] [--repeat R]

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
from _bench import compile_sources

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SLEEPY = HERE / "_sleep_task.py"


def _run(np_: int, task: Path, reps: int, out: Path, *extra: str) -> list[str]:
    return [
        str(BIN / "mpiexec"),
        "-n",
        str(np_),
        str(BIN / "mpibatch"),
        "run",
        str(task),
        "--reps",
        str(reps),
        "--seed",
        "1",
        "--out",
        str(out),
        "--overwrite",
        "--quiet",
        *extra,
    ]


def _best(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return min(times)


def flush_costs(tmp: Path, n: int, repeat: int) -> list[tuple[str, float]]:
    rows = []
    for label, flush in (
        ("never (--flush-seconds 1e9)", "1e9"),
        ("default (30 s)", "30"),
        ("every 0.1 s", "0.1"),
    ):
        cmd = _run(2, HERE / "tiny_task.py", n, tmp / "f.h5", "--flush-seconds", flush)
        rows.append((label, n / _best(cmd, repeat)))
    return rows


def stop_time(tmp: Path, task_ms: float, grace: float) -> tuple[float, int, int]:
    """Seconds from SIGUSR1 to exit, the exit code, and tasks left pending."""
    out = tmp / "stop.h5"
    env = {**os.environ, "SLEEP_MS": str(task_ms)}
    cmd = _run(4, SLEEPY, 4000, out, "--grace", str(grace), "--schedule", "dynamic")
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3.0)
    t = time.perf_counter()
    p.send_signal(signal.SIGUSR1)
    code = p.wait(timeout=120)
    took = time.perf_counter() - t
    with h5py.File(out, "r") as f:
        pending = int((f["tasks/status"][()] == 0).sum())
    return took, code, pending


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    compile_sources()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = flush_costs(tmp, args.tasks, args.repeat)
        never = rows[0][1]
        print(f"flush cost: {args.tasks:,} tiny tasks at np=2, best of {args.repeat}")
        print(f"{'flush interval':30s} {'tasks/s':>10s} {'vs never':>9s}")
        for label, rate in rows:
            print(f"{label:30s} {rate:10,.0f} {rate / never - 1:+8.1%}")
        print("target: the default costs <= 5% of throughput")
        print()
        print("stop: SIGUSR1 to mpiexec at np=4 -> resumable exit")
        print(f"{'tasks':24s} {'grace':>6s} {'seconds':>8s} {'exit':>5s} {'pending':>8s} target")
        for task_ms, grace in ((50, 30.0), (10_000, 2.0)):
            took, code, pending = stop_time(tmp, task_ms, grace)
            ok = "met" if took <= grace + 2 and code == 3 else "MISSED"
            print(
                f"{f'{task_ms:g} ms each':24s} {grace:6g} {took:8.2f} {code:5d} {pending:8d} "
                f"<= {grace + 2:g} s: {ok}"
            )


if __name__ == "__main__":
    main()
