"""A task that raises is recorded with its traceback; the run goes on; exit code 1."""

import h5py
from conftest import TASKS, mpibatch


def test_failed_tasks_are_recorded_and_the_rest_complete(tmp_path):
    out = tmp_path / "flaky.h5"
    r = mpibatch(3, "run", TASKS / "flaky.py", "--reps", 4, "--seed", 1, "--out", out)
    assert r.returncode == 1, r.stderr
    assert "16 done, 4 failed" in r.stdout
    assert r.stdout.count("4 tasks failed") == 1  # printed by rank 0 only
    with h5py.File(out, "r") as f:
        status = f["tasks/status"][()]
        x = f["params/x"][()]
        assert (status[x == 3] == 2).all() and (status[x != 3] == 1).all()
        errs = f["errors"]
        assert sorted(errs["task"][()].tolist()) == [8, 9, 10, 11]
        assert set(errs["type"].asstr()[()]) == {"ValueError"}
        tb = errs["traceback"].asstr()[0]
        assert "rank " in tb and " on " in tb and "x=3 is not allowed" in tb
        assert "raise ValueError" in tb
        assert f["results/size"][0] == 3  # ctx.size
        ranks = f["results/rank"][status == 1]  # ctx.rank: the rank that ran the task
        assert (ranks == f["tasks/rank"][status == 1]).all() and set(ranks.tolist()) <= {0, 1, 2}


def test_errors_command_lists_failed_tasks(tmp_path):
    out = tmp_path / "flaky.h5"
    mpibatch(2, "run", TASKS / "flaky.py", "--seed", 1, "--out", out, "--quiet")
    r = mpibatch(None, "errors", out)
    assert r.returncode == 0
    assert "1 failed task(s)" in r.stdout
    assert "task 2 " in r.stdout and "x=3" in r.stdout
    assert "ValueError: x=3 is not allowed" in r.stdout


def test_all_tasks_failing_still_gives_a_valid_file(tmp_path):
    out = tmp_path / "all.h5"
    r = mpibatch(2, "run", TASKS / "flaky.py", "--grid", "x=3", "--reps", 5, "--out", out)
    assert r.returncode == 1
    assert "0 done, 5 failed" in r.stdout
    with h5py.File(out, "r") as f:
        assert (f["tasks/status"][()] == 2).all()
        assert len(f["results"]) == 0
