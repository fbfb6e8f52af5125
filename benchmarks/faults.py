"""What fault safety costs: flush intervals, and how fast a stop request becomes a resumable exit.

    python benchmarks/faults.py [--tasks N] [--repeat R] [--markdown]

1. Throughput of the core overhead workload (N tiny tasks, one normal draw each, np=2)
   with the default flush interval (30 s), a flush every 0.1 s, and flushing never
   (--flush-seconds 1e9), as whole commands (best of R). Target: the default costs
   <= 5% against never.
2. Time from SIGUSR1 (sent to mpiexec, which forwards it to every rank) to a resumable
   exit (exit code 3, file closed) at np=4, for short tasks (50 ms) and for long tasks
   (10 s each, interrupted when --grace 2 runs out). Target: within the grace period + 2 s.
3. ``--ragged-kills K``: K kill trials while ragged arrays, strings and bytes are written
   (tests/mpi/tasks/ragged.py, 400 tasks of ~240 kB, np=3, --flush-seconds 0.1): SIGKILL
   to rank 0 at a random moment over the whole run, the close included; then every row
   marked done is read back (``read_values``) and compared with an uninterrupted run, and
   the run is resumed and compared whole. Half the kills are aimed at the close (sent
   when the file grows past the first ragged key's values, which it holds in its tail
   while tasks run: only moving the other keys' values in at close grows it more). The table
   counts where the kills landed, from the state they left.
   ``--ragged-kills K`` alone skips 1. and 2.
4. ``--task-kills K``: K trials of the same study at np=3 in which 3 task processes
   (the children of the ranks, where tasks run) are SIGKILLed at random moments. Each
   killed task must fail alone, every row marked done must equal the uninterrupted
   run's, and a resume must complete the file identically. ``--task-kills K`` alone
   skips 1. and 2.
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
import numpy as np
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


RAGGED = HERE.parent / "tests" / "mpi" / "tasks" / "ragged.py"
RAGGED_ENV = {"RAGGED_MODE": "declared", "RAGGED_ROWS": "20000"}
RAGGED_KEYS = ("rewards", "xy", "model", "names", "blob", "code")


def _ragged_cmd(np_: int, out: Path, *extra: str) -> list[str]:
    cmd = mpibatch_run(np_, RAGGED, 400, 3, out) + list(extra)
    return [c for c in cmd if c != "--overwrite"] if "--resume" in extra else cmd


def _ragged_read(path: Path):
    from mpibatch._ragged import read_values

    for _ in range(200):  # a killed writer's lock goes a moment after the process
        try:
            with h5py.File(path, "r", locking=False) as f:
                status = f["tasks/status"][()]
                if "rewards" not in f["results"]:  # killed before any result: none done
                    return {}, status, "before any result"
                vals = {k: [_comparable(v) for v in read_values(f, k)] for k in RAGGED_KEYS}
                return vals, status, _phase(f, path)
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{path} stayed unreadable")


def _comparable(v):
    if hasattr(v, "dtype"):
        return v.tobytes() if v.dtype != object else [repr(x) for x in v.ravel()]
    return v


def _phase(f, path: Path) -> str:
    """Where the kill landed, from the state the file was left in."""
    from mpibatch.layout import values_path

    if not values_path(path, "rewards").parent.exists():
        return "after the close"
    if "values" in f["results/rewards"] or isinstance(f["results/model"], h5py.Dataset):
        return "inside the close"
    return "while writing"


def _wait_for_growth(out: Path, p: subprocess.Popen, then: float, tail: int) -> None:
    """Until ``out`` grows past its size when tasks began plus ``tail`` bytes (the close),
    then ``then`` s."""
    size = None
    while p.poll() is None:
        try:
            now = out.stat().st_size
        except OSError:
            now = None
        if size is None and now is not None:
            time.sleep(0.2)  # the declared datasets are made with the file
            size = out.stat().st_size + tail
        elif now is not None and now > size:
            time.sleep(then)
            return
        time.sleep(0.001)


def _reference(path: Path, env: dict) -> tuple[float, tuple]:
    """An uninterrupted run of the ragged study: (its seconds, what ``_ragged_read`` reads)."""
    t = time.perf_counter()
    subprocess.run(_ragged_cmd(2, path), env=env, capture_output=True, timeout=TIMEOUT)
    return time.perf_counter() - t, _ragged_read(path)


def ragged_kills(tmp: Path, trials: int, seed: int = 0, at_close: bool = False) -> list:
    import random

    env, ref_path = {**os.environ, **RAGGED_ENV}, tmp / "ref.h5"
    took, (ref, ref_status, _) = _reference(ref_path, env)
    with h5py.File(ref_path, "r") as f:  # the tail: the first key's values, past a MiB or so
        tail = f["results/rewards/values"].nbytes + (3 << 19)
    rng, counts = random.Random(seed), {}
    for _ in range(trials):
        out = tmp / "k.h5"
        for old in (out, tmp / "k.h5.failures"):
            old.unlink(missing_ok=True)
        cmd = _ragged_cmd(3, out, "--flush-seconds", "0.1", "--block-size", "3")
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if at_close:  # past its tail, the file grows only when the close moves values in
            pid = _rank0_pid(p.pid)
            _wait_for_growth(out, p, rng.uniform(0.0, 0.02), tail)
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass  # it had ended
        else:
            time.sleep(rng.uniform(0.1, took))
            _kill_rank0(p.pid)
        p.wait(timeout=120)
        if not out.exists():
            phase, done, bad = "before the file", 0, 0
        else:
            got, status, phase = _ragged_read(out)
            rows = np.flatnonzero(status == 1)
            done = len(rows)
            bad = sum(got[k][i] != ref[k][i] for k in got for i in rows)
        again = ["--resume"] if out.exists() else []
        subprocess.run(_ragged_cmd(2, out, *again), env=env, capture_output=True, timeout=TIMEOUT)
        got, status, _ = _ragged_read(out)
        same = bool((status == ref_status).all()) and got == ref
        c = counts.setdefault(phase, [0, 0, 0, 0])
        c[0], c[1], c[2], c[3] = c[0] + 1, c[1] + done, c[2] + bad, c[3] + (not same)
    return [[ph, str(n), f"{d:,}", str(b), str(r)] for ph, (n, d, b, r) in counts.items()]


def _task_processes(launcher: int) -> list[int]:
    """The task processes under ``launcher``: children of a rank (a PMI_RANK process)."""
    ranks, found = set(), []
    for pid in _descendants(launcher):
        try:
            if b"PMI_RANK=" not in Path(f"/proc/{pid}/environ").read_bytes():
                continue
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent in ranks:
            found.append(pid)
        ranks.add(pid)
    return found


def task_kills(tmp: Path, trials: int, seed: int = 2) -> list[str]:
    import random

    env, ref_path = {**os.environ, **RAGGED_ENV}, tmp / "ref.h5"
    took, (ref, ref_status, _) = _reference(ref_path, env)
    rng, kills, failed, done, bad, differ = random.Random(seed), 0, 0, 0, 0, 0
    for _ in range(trials):
        out = tmp / "t.h5"
        for old in (out, tmp / "t.h5.failures"):
            old.unlink(missing_ok=True)
        cmd = _ragged_cmd(3, out, "--flush-seconds", "0.1", "--block-size", "3")
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.perf_counter()
        for at in sorted(rng.uniform(0.3, took) for _ in range(3)):
            time.sleep(max(0.0, started + at - time.perf_counter()))
            victims = _task_processes(p.pid)
            if victims:
                try:
                    os.kill(rng.choice(victims), signal.SIGKILL)
                    kills += 1
                except OSError:
                    pass
        p.wait(timeout=300)
        got, status, _ = _ragged_read(out)
        rows = np.flatnonzero(status == 1)
        done += len(rows)
        failed += int((status == 2).sum() - (ref_status == 2).sum())  # beyond the reference's
        bad += sum(got[k][i] != ref[k][i] for k in got for i in rows)
        subprocess.run(
            _ragged_cmd(2, out, "--resume"), env=env, capture_output=True, timeout=TIMEOUT
        )
        got, status, _ = _ragged_read(out)
        differ += not (bool((status == ref_status).all()) and got == ref)
    return [str(trials), str(kills), str(failed), f"{done:,}", str(bad), str(differ)]


def _rank0_pid(launcher: int) -> int | None:
    """The rank-0 process under ``launcher`` (found by PMI_RANK=0), waiting up to 30 s."""
    for _ in range(3000):
        for pid in _descendants(launcher):
            try:
                if b"PMI_RANK=0\0" in Path(f"/proc/{pid}/environ").read_bytes():
                    return pid
            except OSError:
                continue
        time.sleep(0.01)
    return None


def _kill_rank0(launcher: int) -> None:
    """SIGKILL the rank-0 process under ``launcher``."""
    for pid in _descendants(launcher):
        try:
            if b"PMI_RANK=0\0" in Path(f"/proc/{pid}/environ").read_bytes():
                os.kill(pid, signal.SIGKILL)
                return
        except OSError:
            continue


def _descendants(root: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(root)], capture_output=True, text=True).stdout
    kids = [int(x) for x in out.split()]
    return kids + [d for k in kids for d in _descendants(k)]


def kill_table(tmp: Path, args) -> None:
    half = args.ragged_kills // 2
    cells = ragged_kills(tmp, args.ragged_kills - half)
    cells += [[c[0] + " (aimed at the close)", *c[1:]] for c in ragged_kills(tmp, half, 1, True)]
    print("kill trials: SIGKILL of rank 0 while ragged and string results are written, np=3")
    header = ["kill landed", "trials", "rows done at the kill", "wrong done rows"]
    header.append("resume differs")
    notes = ["target: 0 wrong done rows, 0 resumes that differ from the uninterrupted run"]
    print_table(header, cells, args.markdown, notes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    ap.add_argument("--ragged-kills", type=int, default=0, help="kill trials (3. above) only")
    ap.add_argument("--task-kills", type=int, default=0, help="task process kills (4.) only")
    args = ap.parse_args()
    if args.task_kills:
        begin(f"faults: {args.task_kills} trials killing task processes, np=3")
        with tempfile.TemporaryDirectory() as d:
            cells = [task_kills(Path(d), args.task_kills)]
        header = ["trials", "task processes killed", "more tasks failed than the reference"]
        header += ["rows done"]
        header += ["wrong done rows", "resume differs"]
        notes = ["target: failed <= killed, 0 wrong done rows, 0 resumes that differ"]
        print_table(header, cells, args.markdown, notes)
        return
    if args.ragged_kills:
        begin(f"faults: {args.ragged_kills} kill trials with ragged and string results")
        with tempfile.TemporaryDirectory() as d:
            kill_table(Path(d), args)
        return
    begin(f"faults: {args.tasks:,} tiny tasks, best of {args.repeat}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        flush_table(tmp, args)
        print()
        stop_table(tmp, args)


if __name__ == "__main__":
    main()
