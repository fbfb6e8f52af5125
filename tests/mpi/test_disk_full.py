"""A full disk (a small tmpfs the test mounts): one line naming the file, exit 74, every
rank ends, nothing finished is lost, and --resume completes identically once there is room.
Needs root (mount); CI runs as root."""

from __future__ import annotations

import subprocess

import h5py
import pytest
from conftest import file_columns, mpibatch

TASK = """
import numpy as np
def task(params, rng):
    return {"trace": rng.random(4096)}  # 32 KiB a task: 1,000 tasks overflow 8 MiB
"""


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)])


@pytest.mark.parametrize("np_", [1, 2])
def test_a_full_disk_is_one_line_and_resume_completes_identically(tmp_path, small_disk, np_):
    task = tmp_path / "big.py"
    task.write_text(TASK)
    args = ("run", task, "--reps", 1000, "--seed", 3, "--flush-seconds", 0.2)
    ref = tmp_path / "ref.h5"
    assert mpibatch(np_, *args, "--out", ref, "--quiet").returncode == 0
    out = small_disk / "r.h5"
    r = mpibatch(np_, *args, "--out", out, "--quiet", timeout=120)
    assert r.returncode == 74, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("mpibatch: error:")]
    assert len(errors) == 1 and f"no space left for {out}" in errors[0], r.stderr
    assert "--resume" in errors[0] and "Traceback" not in r.stderr
    with h5py.File(out, "r") as f:  # what was written is readable
        done = int((f["tasks/status"][()] == 1).sum())
    assert done < 1000
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    r = mpibatch(np_, *args, "--out", out, "--resume", "--quiet", timeout=120)
    assert r.returncode == 0, r.stderr
    assert file_columns(out) == file_columns(ref)
