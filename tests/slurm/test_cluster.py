"""Smoke tests of the Slurm test cluster itself: check what jobs wrote, not only exit codes."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

PY = shlex.quote(sys.executable)
MPIEXEC = shlex.quote(str(Path(sys.executable).parent / "mpiexec"))
# Each rank writes one file: rank, size, SLURM_PROCID (if any) and an allreduce of ranks.
RANK_PY = """
import os
from mpi4py import MPI
c = MPI.COMM_WORLD
s = c.allreduce(c.rank)
with open(f"rank{c.rank}.txt", "w") as f:
    f.write(f"{c.rank} {c.size} {s} {os.environ.get('SLURM_PROCID', '-')}\\n")
"""


def script(tmp_path: Path, body: str, name: str = "job.sbatch") -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/bash\nset -eu\n" + body.strip() + "\n")
    return path


def job_output(tmp_path: Path) -> str:
    """All slurm-*.out files, for assertion messages."""
    return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(tmp_path.glob("slurm-*")))


def read_ranks(tmp_path: Path) -> list[list[str]]:
    return sorted(p.read_text().split() for p in tmp_path.glob("rank*.txt"))


def test_srun_pmi2_one_world_of_4(slurm, tmp_path):
    (tmp_path / "rank.py").write_text(RANK_PY)
    path = script(tmp_path, f"srun --mpi=pmi2 {PY} rank.py")
    job, rc = slurm.sbatch(path, "-n", "4", "-t", "2", "--chdir", tmp_path, timeout=60)
    out = job_output(tmp_path)
    assert rc == 0, out
    ranks = read_ranks(tmp_path)
    assert ranks == [[str(r), "4", "6", str(r)] for r in range(4)], out
    assert (tmp_path / f"slurm-{job}.out").exists()


def test_mpiexec_inside_batch_job(slurm, tmp_path):
    (tmp_path / "rank.py").write_text(RANK_PY)
    path = script(tmp_path, f"{MPIEXEC} -n 2 {PY} rank.py")
    job, rc = slurm.sbatch(path, "-n", "2", "-t", "2", "--chdir", tmp_path, timeout=60)
    out = job_output(tmp_path)
    assert rc == 0, out
    # mpiexec launches through srun here: one world of 2.
    assert [r[:3] for r in read_ranks(tmp_path)] == [["0", "2", "1"], ["1", "2", "1"]], out


def test_job_array_elements(slurm, tmp_path):
    body = 'echo "$SLURM_ARRAY_TASK_ID $SLURM_ARRAY_JOB_ID" > "task_$SLURM_ARRAY_TASK_ID.txt"'
    path = script(tmp_path, body)
    job, rc = slurm.sbatch(
        path, "--array=0-2", "-n", "1", "-t", "1", "--chdir", tmp_path, timeout=60
    )
    out = job_output(tmp_path)
    assert rc == 0, out
    got = {p.name: p.read_text().split() for p in tmp_path.glob("task_*.txt")}
    assert got == {f"task_{i}.txt": [str(i), job] for i in range(3)}, out


def test_scancel_usr1_reaches_batch_trap(slurm, tmp_path):
    body = """
        on_usr1() { echo "usr1 $(date +%s.%N)" > got_usr1; kill "$child" 2>/dev/null || true; }
        trap on_usr1 USR1
        sleep 120 &
        child=$!
        echo started > started
        wait "$child" || echo "wait returned $?" >> got_usr1
        echo done > finished
    """
    path = script(tmp_path, "\n".join(ln.strip() for ln in body.strip().splitlines()))
    job, rc = slurm.sbatch(path, "-n", "1", "-t", "2", "--chdir", tmp_path, wait=False)
    assert rc == 0
    slurm.wait_state(job, "RUNNING", timeout=30)
    for _ in range(300):  # up to ~30 s
        if (tmp_path / "started").exists():
            break
        time.sleep(0.1)
    assert (tmp_path / "started").exists(), job_output(tmp_path)
    slurm.scancel("--signal=USR1", "--batch", job)
    state = slurm.wait_state(job, {"COMPLETED", "FAILED", "CANCELLED", None}, timeout=30)
    out = job_output(tmp_path)
    assert state in ("COMPLETED", None), out
    marker = (tmp_path / "got_usr1").read_text()
    assert marker.startswith("usr1 "), out
    assert "wait returned 138" in marker, marker  # 128 + SIGUSR1 (10): wait cut by the trap
    assert (tmp_path / "finished").exists(), out


def test_why_unavailable_reasons(monkeypatch):
    """The skip reasons, without Slurm: not root; packages missing and no apt-get."""
    import cluster

    monkeypatch.setattr(cluster.os, "geteuid", lambda: 1000)
    assert "needs root" in cluster.why_unavailable.__wrapped__()
    monkeypatch.setattr(cluster.os, "geteuid", lambda: 0)
    monkeypatch.setattr(cluster, "missing_packages", lambda: ["slurmd"])
    monkeypatch.setattr(cluster.shutil, "which", lambda name: None)
    assert cluster.install() == "Slurm packages missing (slurmd) and no apt-get"
