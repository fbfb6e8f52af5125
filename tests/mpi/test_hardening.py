"""User code and user input that must never hang a run, lose work or destroy a file.

Every launch has a timeout (conftest.mpirun): a hang fails the test.
"""

from __future__ import annotations

import shutil

from conftest import mpibatch


def _one_error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("mpibatch: error:")]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def test_out_naming_the_task_file_is_refused_even_with_overwrite(tmp_path):
    task = tmp_path / "study.py"
    text = "def task(params, rng):\n    return rng.random()\n"
    task.write_text(text)
    for extra in ([], ["--overwrite"]):
        r = mpibatch(2, "run", task, "--reps", 4, "--out", task, *extra, timeout=60)
        assert r.returncode == 2, r.stderr
        assert "is a Python file" in _one_error_line(r)
        assert task.read_text() == text


def test_overwrite_replaces_only_a_previous_results_file(tmp_path):
    task = tmp_path / "study.py"
    task.write_text("def task(params, rng):\n    return rng.random()\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    r = mpibatch(2, "run", task, "--reps", 4, "--out", notes, "--overwrite", timeout=60)
    assert r.returncode == 2 and "not an mpibatch results file" in _one_error_line(r)
    assert notes.read_text() == "my notes"
    out = tmp_path / "r.h5"
    assert mpibatch(2, "run", task, "--reps", 4, "--out", out, timeout=60).returncode == 0
    r = mpibatch(2, "run", task, "--reps", 6, "--out", out, "--overwrite", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "6 tasks: 6 done" in r.stdout


def test_more_tasks_than_the_disk_holds_is_one_line_before_anything_is_written(tmp_path):
    task = tmp_path / "study.py"
    task.write_text("def task(params, rng):\n    return rng.random()\n")
    reps = 2 * shutil.disk_usage(tmp_path).free // 30  # a task row takes more than 30 bytes
    out = tmp_path / "huge.h5"
    r = mpibatch(2, "run", task, "--reps", reps, "--out", out, timeout=60)
    assert r.returncode == 2, r.stderr
    line = _one_error_line(r)
    assert f"{reps:,} tasks need" in line and "--tasks START:STOP" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.py"]
