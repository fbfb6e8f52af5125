"""One run per results file: ``<out>.lock`` held while a run writes it."""

import os

import pytest

from mpibatch import run
from mpibatch._output import lock_output, lock_path
from mpibatch.errors import OutputError


def test_a_held_lock_refuses_a_second_holder_naming_the_first(tmp_path):
    out = tmp_path / "r.h5"
    first = lock_output(out)
    assert first is not None and lock_path(out).exists()
    with pytest.raises(OutputError, match=f"being written by another run .*pid {os.getpid()}"):
        lock_output(out)
    first.release()
    assert not lock_path(out).exists()
    again = lock_output(out)  # free once released
    assert again is not None
    again.release()
    again.release()  # twice is harmless


def test_a_lock_file_a_killed_run_left_is_taken_over(tmp_path):
    out = tmp_path / "r.h5"
    lock_path(out).write_text("mpibatch on host gone, pid 1")  # no process holds it
    lock = lock_output(out)
    assert lock is not None and "pid 1\n" not in lock_path(out).read_text()
    lock.release()


def test_no_lock_where_no_file_can_be_made_leaves_the_message_to_the_output_checks(tmp_path):
    assert lock_output(tmp_path / "missing" / "r.h5") is None


def _task(params, rng):
    return {"x": rng.random()}


def test_runs_in_one_process_release_the_lock_even_on_errors(tmp_path):
    out = tmp_path / "r.h5"
    run(_task, {"a": [1, 2]}, out=str(out), quiet=True)
    assert out.exists() and not lock_path(out).exists()
    with pytest.raises(OutputError, match="already exists"):
        run(_task, {"a": [1, 2]}, out=str(out), quiet=True)
    assert not lock_path(out).exists()
    summary = run(_task, {"a": [1, 2]}, out=str(out), quiet=True, overwrite=True)
    assert summary is not None and summary.done == 2
    assert not lock_path(out).exists()
