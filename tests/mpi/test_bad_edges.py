"""Bad input at the edges (issue 21) under real ``mpiexec``: exit 2 with exactly one
``error:`` line (rank 0's), no traceback, and every rank ended (mpirun's timeout fails a
hang). The same cases in one process: tests/test_usage_edges.py."""

import h5py
import pytest
from conftest import TASKS, mpibatch

BOOT = TASKS / "mixed.py"


def _check(r, words):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr[-3000:])
    lines = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1 and lines[0].startswith("mpibatch: error:"), r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "Abort" not in r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.mark.parametrize("np_", [2, 3])
def test_a_grid_that_raises_ends_every_rank_with_one_line(tmp_path, np_):
    task = tmp_path / "study.py"
    task.write_text(
        "def grid():\n    raise KeyError('runs.csv')\n\n\ndef task(params, rng):\n    return 1.0\n"
    )
    r = mpibatch(np_, "run", task, "--out", tmp_path / "r.h5", timeout=60)
    _check(r, ["study.py'", "grid() raised KeyError: 'runs.csv'"])
    assert not (tmp_path / "r.h5").exists()


def test_a_seed_past_its_range_ends_every_rank_with_one_line(tmp_path):
    r = mpibatch(2, "run", BOOT, "--seed", 2**64, "--out", tmp_path / "r.h5", timeout=60)
    _check(r, ["seed", "< 2**64"])
    r = mpibatch(2, "run", BOOT, "--task-timeout", "1e30", "--out", tmp_path / "r.h5", timeout=60)
    _check(r, ["task_timeout", "at most 1e9"])


@pytest.mark.parametrize(("np_", "key"), [(1, "status"), (2, "elapsed"), (3, "start")])
def test_a_result_key_that_collides_ends_every_rank_with_one_line(tmp_path, np_, key):
    task = tmp_path / "study.py"
    task.write_text(f"def task(params, rng):\n    return {{'v': 1.0, {key!r}: 2.0}}\n")
    r = mpibatch(np_, "run", task, "--reps", 8, "--out", tmp_path / "r.h5", timeout=60)
    _check(r, [f"key {key!r}", "the file's own columns", f"{key}_value"])


@pytest.mark.parametrize("kind", ["empty", "truncated", "foreign"])
def test_resume_on_a_bad_file_ends_every_rank_with_one_line(tmp_path, kind):
    out = tmp_path / "r.h5"
    if kind == "foreign":
        with h5py.File(out, "w") as f:
            f["data"] = [1.0, 2.0]
    else:
        assert mpibatch(2, "run", BOOT, "--seed", 1, "--out", out, "--quiet").returncode == 0
        data = out.read_bytes()
        out.write_bytes(b"" if kind == "empty" else data[: len(data) // 2])
    before = out.read_bytes()
    r = mpibatch(2, "run", BOOT, "--seed", 1, "--out", out, "--resume", timeout=60)
    _check(r, [f"'{out}'", "expected an mpibatch results file"])
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]
