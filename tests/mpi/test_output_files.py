"""What users expect of the output file: a symlinked --out is written through the link, a
plain h5py reader opens the file mid-run, and a task that deletes or replaces it ends the
run with one line, never "done"."""

import os

import h5py
import pytest
from conftest import TASKS, mpibatch

from mpibatch._output import lock_path


def _run(np_, out, env, *extra, timeout=60):
    args = ("run", TASKS / "touches_out.py", "--reps", 40, "--seed", 2, "--out", out, *extra)
    return mpibatch(np_, *args, env={"TOUCH_OUT": str(out), **env}, timeout=timeout)


# at np >= 2 the error found by rank 0 is raised on every rank once all have stopped
@pytest.mark.parametrize(
    "np_, what", [(1, "delete"), (1, "overwrite"), (2, "delete"), (3, "overwrite")]
)
def test_a_task_that_deletes_or_replaces_the_output_ends_the_run_with_one_line(tmp_path, np_, what):
    timeout = 60
    out = tmp_path / "r.h5"
    r = _run(np_, out, {"TOUCH": what, "TOUCH_AT": "5"}, timeout=timeout)
    assert r.returncode == 2, r.stdout + r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("mpibatch: error:")]
    word = "deleted" if what == "delete" else "replaced by another file"
    assert len(errors) == 1 and f"'{out}' was {word} while this run wrote it" in errors[0]
    assert "done" not in r.stdout + r.stderr.replace(errors[0], "")
    assert not lock_path(out).exists()
    if what == "overwrite":
        assert out.read_bytes() == b"not the results"  # the other file is left alone


def test_a_symlinked_out_is_written_through_the_link_and_the_link_stays(tmp_path):
    real = tmp_path / "data"
    real.mkdir()
    link = tmp_path / "r.h5"
    link.symlink_to(real / "target.h5")  # dangling until the run writes it
    r = _run(2, link, {})
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == str(real / "target.h5")
    with h5py.File(link, "r") as f:
        assert (f["tasks/status"][()] == 1).all()
    assert sorted(p.name for p in real.iterdir()) == ["target.h5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "r.h5"]
    r = _run(2, link, {}, "--resume")  # nothing left: a resume reopens through the link too
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and sorted(p.name for p in real.iterdir()) == ["target.h5"]


def test_a_plain_h5py_reader_opens_the_file_while_the_run_writes_it(tmp_path):
    out = tmp_path / "r.h5"
    r = _run(2, out, {"READ_AT": "20"})
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        seen = f["results/seen"][()]
    assert seen[20] == 40  # it opened, and read /tasks/status whole
    assert (seen[:20] == -1).all() and (seen[21:] == -1).all()
