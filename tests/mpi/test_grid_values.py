"""Grid values as written (issue 22, item 5) under real ``mpiexec -n 2``: a ``lin`` range's
points are the short decimals in the tasks, /params and a command's words; True/False are
bools; ``--resume`` without ``--grid``/``--reps`` takes the file's grid, and never
recomputes a grid an older mpibatch recorded."""

import textwrap

import h5py
import numpy as np
from conftest import mpibatch

TASK = textwrap.dedent(
    """
    import os

    import numpy as np


    def grid():  # only where the run gives no --grid: an older file's linspace doubles
        return {"a": np.linspace(0, 1, 11)}


    def task(params, rng):
        if os.environ.get("FAIL_ODD") and params["rep"] % 2:
            raise RuntimeError("fails until resumed")
        return {"a": params["a"], "a_text": repr(params["a"]),
                "flag_is_bool": type(params.get("flag", True)) is bool}
    """
)


def _file(out):
    with h5py.File(out, "r") as f:
        return (
            {k: ds[()] for k, ds in f["params"].items()},
            {k: ds[()] for k, ds in f["results"].items()},
            f["tasks/status"][()],
            f.attrs["grid"],
        )


def _ok(r):
    assert r.returncode == 0, r.stderr
    return r


def test_a_lin_grid_is_short_decimals_in_tasks_params_and_bools(tmp_path):
    (tmp_path / "t.py").write_text(TASK)
    out = tmp_path / "r.h5"
    grid = ("--grid", "a=0:1:11lin", "--grid", "flag=True,False")
    _ok(mpibatch(2, "run", tmp_path / "t.py", *grid, "--seed", 1, "--out", out, "--quiet"))
    params, results, status, _ = _file(out)
    assert (status == 1).all() and len(status) == 22
    assert params["a"].tolist()[::2] == [i / 10 for i in range(11)] and params["a"][6] == 0.3
    assert params["flag"].dtype == np.bool_ and params["flag"].tolist()[:2] == [True, False]
    assert results["a"].tolist() == params["a"].tolist()  # the task saw that double
    texts = [t.decode() if isinstance(t, bytes) else t for t in results["a_text"].tolist()]
    assert texts[6] == "0.3" and "0.30000000000000004" not in texts
    assert results["flag_is_bool"].all()


def test_a_command_template_gets_the_short_decimals(tmp_path):
    out = tmp_path / "c.h5"
    r = mpibatch(
        2, "run", "--command", "echo {a} {flag}", "--grid", "a=0:1:11lin",
        "--grid", "flag=True,False", "--keep-output", "--out", out, "--quiet",
        cwd=tmp_path,
    )  # fmt: skip
    _ok(r)
    words = [(tmp_path / f"c.h5.output/{i:06d}.out").read_text().split() for i in range(22)]
    assert words[6] == ["0.3", "True"] and words[7] == ["0.3", "False"]
    assert [w[0] for w in words[::2]] == [str(i / 10) for i in range(11)]
    params, _, _, _ = _file(out)
    assert params["a"][6] == 0.3 and params["flag"].dtype == np.bool_


FLAKY = '[ -z "$FAIL_ODD" ] || [ $(( {rep} % 2 )) = 0 ] || exit 3; echo {a} {rep}'


def test_a_resume_without_grid_or_reps_takes_the_file_grid(tmp_path):
    out = tmp_path / "c.h5"
    cmd = ("--command", FLAKY, "--shell", "--keep-output", "--out", out, "--quiet")
    grid = ("--grid", "a=0:1:3lin", "--reps", 4, "--seed", 5)
    first = mpibatch(2, "run", *cmd, *grid, env={"FAIL_ODD": "1"}, cwd=tmp_path)
    assert first.returncode == 1, first.stderr  # the odd reps failed
    _, _, status, grid_json = _file(out)
    assert status.tolist() == [1, 2] * 6
    _ok(mpibatch(2, "run", *cmd, "--resume", cwd=tmp_path))  # no --grid, no --reps, no --seed
    params, _, status, after = _file(out)
    assert (status == 1).all() and after == grid_json
    assert params["a"].tolist() == [0.0] * 4 + [0.5] * 4 + [1.0] * 4
    assert (tmp_path / "c.h5.output/000007.out").read_text() == "0.5 3\n"  # a resumed task


def test_a_resume_keeps_the_grid_an_older_mpibatch_recorded(tmp_path):
    """The task file's grid() holds linspace's doubles, as a file made before the short
    decimals does; resuming with --grid a=0:1:11lin (and no --reps) keeps them."""
    (tmp_path / "t.py").write_text(TASK)
    out = tmp_path / "old.h5"
    r = mpibatch(
        2, "run", tmp_path / "t.py", "--reps", 2, "--seed", 3, "--out", out, "--quiet",
        env={"FAIL_ODD": "1"},
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    params, _, status, grid = _file(out)
    assert params["a"][6] == 0.30000000000000004 and status.tolist() == [1, 2] * 11
    _ok(mpibatch(2, "run", tmp_path / "t.py", "--grid", "a=0:1:11lin", "--resume", "--out", out))
    params, results, status, grid_after = _file(out)
    assert (status == 1).all() and grid_after == grid
    assert results["a"][7] == 0.30000000000000004 == params["a"][7]  # a resumed task
    r = mpibatch(2, "run", tmp_path / "t.py", "--grid", "a=0:1:12lin", "--resume", "--out", out)
    assert r.returncode == 2 and "the grid differs" in r.stderr
