"""The sbatch templates, sized down to this machine and submitted to a real Slurm.

Each test renders a template with `mpibatch slurm KIND ... -- run ...` (the same function
that wrote slurm/*.sbatch), submits it, and checks the job's output and HDF5 file against
the same study run with plain mpiexec. The gpu template needs GPUs (GRES), which this
Slurm does not have; its rendering is checked in tests/test_slurm.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py

BIN = Path(sys.executable).parent
TASKS = Path(__file__).resolve().parents[1] / "mpi" / "tasks"
MIXED = ["run", str(TASKS / "mixed.py"), "--reps", "6", "--seed", "7"]


def _render(tmp_path: Path, kind: str, opts: list[str], cmd: list[str]) -> Path:
    text = subprocess.run(
        [str(BIN / "mpibatch"), "slurm", kind, *opts, "--", *cmd],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    path = tmp_path / f"{kind}.sbatch"
    path.write_text(text)
    return path


def _plain(tmp_path: Path, cmd: list[str], name: str = "plain.h5") -> Path:
    out = tmp_path / name
    subprocess.run(
        [
            str(BIN / "mpiexec"),
            "-n",
            "2",
            str(BIN / "mpibatch"),
            *cmd,
            "--out",
            str(out),
            "--quiet",
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    return out


def _results(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        out = {k: ds[()].tobytes() for k, ds in f["results"].items()}
        out["status"] = f["tasks/status"][()].tobytes()
        return out


def _log(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in sorted(tmp_path.glob("*.out")))


def test_cpu_template_matches_plain_mpiexec_and_records_the_job(slurm, tmp_path):
    script = _render(
        tmp_path,
        "cpu",
        ["--ntasks-per-node", "3", "--time", "00:05:00"],
        [*MIXED, "--out", "study.h5"],
    )
    jid, rc = slurm.sbatch(script, "--chdir", str(tmp_path), timeout=180)
    assert rc == 0, _log(tmp_path)
    assert "36 tasks: 36 done" in _log(tmp_path)
    assert _results(tmp_path / "study.h5") == _results(_plain(tmp_path, MIXED))
    with h5py.File(tmp_path / "study.h5", "r") as f:
        job = json.loads(f.attrs["slurm"])
        assert str(job["job_id"]) == jid and job["nodes"] == [slurm.host]
        assert job["end_time"] is not None  # read from squeue: the job had -t
        assert f.attrs["n_ranks"] == 3


def test_hybrid_template_runs_ranks_times_threads(slurm, tmp_path):
    script = _render(
        tmp_path,
        "hybrid",
        ["--ntasks-per-node", "2", "--cpus-per-task", "2", "--time", "00:05:00"],
        ["run", str(TASKS / "blas.py"), "--reps", "4", "--out", "h.h5"],
    )
    jid, rc = slurm.sbatch(script, "--chdir", str(tmp_path), timeout=180)
    assert rc == 0, _log(tmp_path)
    with h5py.File(tmp_path / "h.h5", "r") as f:
        assert f.attrs["threads_per_rank"] == 2 and f.attrs["n_ranks"] == 2
        assert (f["results/omp_env"][()] == 2).all()


def test_array_template_then_merge_equals_a_single_run(slurm, tmp_path):
    script = _render(
        tmp_path,
        "array",
        ["--array", "0-2", "--ntasks-per-node", "2", "--time", "00:05:00"],
        [*MIXED, "--out", "study.h5"],
    )
    jid, rc = slurm.sbatch(script, "--chdir", str(tmp_path), timeout=240)
    assert rc == 0, _log(tmp_path)
    parts = sorted(str(p) for p in tmp_path.glob("study.part*.h5"))
    assert len(parts) == 3, _log(tmp_path)
    r = subprocess.run(
        [str(BIN / "mpibatch"), "merge", *parts, "-o", str(tmp_path / "m.h5")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert _results(tmp_path / "m.h5") == _results(_plain(tmp_path, MIXED))


def test_resume_template_requeues_after_usr1_and_finishes_identically(slurm, tmp_path):
    env = {"SLEEPY_MS": "40"}
    study = ["run", str(TASKS / "sleepy.py"), "--reps", "120", "--seed", "3"]
    script = _render(
        tmp_path,
        "resume",
        ["--ntasks-per-node", "2", "--time", "00:10:00", "--signal-lead", "60", "--grace", "5"],
        [*study, "--out", "study.h5"],
    )
    jid, _ = slurm.sbatch(script, "--chdir", str(tmp_path), wait=False, env=env)
    _wait_for_progress(tmp_path / "study.h5")
    slurm.scancel("--signal=USR1", "--batch", jid)
    slurm.wait_state(jid, "PENDING", timeout=90)  # requeued by the script itself
    slurm.scontrol("update", f"JobId={jid}", "StartTime=now")
    slurm.wait_state(jid, {"COMPLETED", None}, timeout=180)
    log = _log(tmp_path)
    assert "stopped early; requeueing" in log and "round 2 of at most 10" in log, log
    plain = _plain(tmp_path, study)  # the uninterrupted run, for comparison
    os.environ.update(env)
    assert _results(tmp_path / "study.h5") == _results(plain)
    with h5py.File(tmp_path / "study.h5", "r") as f:
        assert len(json.loads(f.attrs["sessions"])) == 2


def _wait_for_progress(path: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with h5py.File(path, "r", locking=False) as f:
                if (f["tasks/status"][()] == 1).sum() >= 10:
                    return
        except (OSError, KeyError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"no progress in {path} within {timeout} s")
