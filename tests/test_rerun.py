"""``rerun``: one stored task again in this process, compared with its stored row."""

import bdb
import importlib
import io
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import mpibatch
from mpibatch.errors import UsageError
from mpibatch.rerun import _fmt, rerun
from mpibatch.streams import task_generator

TASKS = textwrap.dedent(
    """
    import numpy as np

    SCALE = 1.0
    FAIL = True


    def grid():
        return {"mu": [0.0, 1.0, 2.0]}


    def task(params, rng):
        if FAIL and params["mu"] == 2.0 and params["rep"] == 1:
            raise ValueError(f"bad mu {params['mu']}")
        x = rng.normal(params["mu"], size=4) * SCALE
        return {"mean": x.mean(), "x": x, "n": np.int64(x.size)}


    def bare(params, rng):
        return rng.normal(params["mu"]) * SCALE


    def with_ctx(params, rng, ctx):
        return ctx.task_id * 10.0 + ctx.size + rng.random() * SCALE
    """
)


def study(tmp_path, function="task", **kw):
    """A task file and the results file of running it (6 tasks; task 5 fails)."""
    src = tmp_path / "tasks.py"
    src.write_text(TASKS)
    out = tmp_path / "r.h5"
    kw = {"reps": 2, "seed": 7, "quiet": True, **kw}
    mpibatch.run(str(src), None, out=out, function=function, **kw)
    return out, src


def edit(src, old, new):
    """Change the task file (its size changes too, so no stale bytecode is reused)."""
    text = src.read_text()
    assert old in text
    src.write_text(text.replace(old, new))


def call(path, task_id, **kw):
    buf = io.StringIO()
    rc = rerun(str(path), task_id, out=buf, **kw)
    return rc, buf.getvalue()


def test_a_done_dict_task_matches_and_prints_params_and_result(tmp_path):
    out, _ = study(tmp_path)
    stored = mpibatch.open(out).results
    rc, text = call(out, 3)
    assert rc == 0, text
    assert "task 3: mu=1.0, rep=1" in text
    assert f"  mean: {stored['mean'][3].item()!r}" in text
    assert "  x: array([" in text and "  n: 4" in text
    assert text.rstrip().endswith("matches the stored result")


def test_a_bare_return_is_compared_under_value(tmp_path):
    out, _ = study(tmp_path, function="bare")
    rc, text = call(out, 4)
    assert rc == 0, text
    expected = task_generator(7, 4).normal(2.0)
    assert f"  value: {expected!r}" in text and "matches the stored result" in text


def test_a_task_taking_ctx_gets_its_task_id_and_a_single_rank_context(tmp_path):
    out, _ = study(tmp_path, function="with_ctx")
    rc, text = call(out, 2)
    assert rc == 0, text
    assert f"value: {20.0 + 1 + task_generator(7, 2).random()!r}" in text


def test_an_edited_file_is_refused_unless_forced_and_then_differs(tmp_path):
    out, src = study(tmp_path)
    edit(src, "SCALE = 1.0", "SCALE = 2.0  # edited")  # exact: x2
    with pytest.raises(UsageError, match="changed since the run.*pass --force"):
        call(out, 0)
    stored = mpibatch.open(out).results["mean"][0].item()
    rc, text = call(out, 0, force=True)
    assert rc == 1
    assert "DIFFERS from the stored result:" in text
    assert f"  mean:\n    stored  {stored!r}  [float64]\n    now     {stored * 2!r}" in text
    diffs = text.split("DIFFERS")[1]
    assert "  x:\n" in diffs and "  n:" not in diffs  # only the keys that differ


def test_a_done_task_that_raises_now_differs(tmp_path):
    out, src = study(tmp_path)
    edit(src, "x = rng.normal", "raise KeyError('gone')\n    x = rng.normal")
    rc, text = call(out, 1, force=True)
    assert rc == 1
    assert "raised KeyError: 'gone'" in text and "Traceback (most recent call last)" in text
    assert "DIFFERS from the stored result: the run finished this task, now it raised" in text


def test_a_failed_task_shows_the_stored_error_and_fails_again(tmp_path):
    out, _ = study(tmp_path)
    assert mpibatch.open(out).status[5] == 2
    rc, text = call(out, 5)
    assert rc == 1
    assert "stored: task 5 failed with ValueError: bad mu 2.0" in text
    assert "now: it failed again with ValueError: bad mu 2.0 (the same error)" in text
    assert 'raise ValueError(f"bad mu' in text  # the new traceback, with the source line
    assert "Traceback" in text and "mpibatch/rerun.py" not in text  # from the task's frame on


def test_a_failed_task_that_now_succeeds_is_reported(tmp_path):
    out, src = study(tmp_path)
    edit(src, "FAIL = True", "FAIL = False  # fixed")
    rc, text = call(out, 5, force=True)
    assert rc == 1
    assert "  mean: " in text and "now: it did not fail - DIFFERS from the stored failure" in text


def test_a_pending_task_runs_and_says_nothing_is_stored(tmp_path):
    out, _ = study(tmp_path)
    with h5py.File(out, "r+") as f:
        f["tasks/status"][2] = 0
    rc, text = call(out, 2)
    assert rc == 0
    assert "task 2 has no stored result" in text and "  mean: " in text


def test_ids_outside_the_file_are_refused_with_the_range_it_holds(tmp_path):
    out, _ = study(tmp_path, tasks="2:5")
    with pytest.raises(UsageError, match=r"task 99 is not in .*holds tasks 2 to 4"):
        call(out, 99)
    with pytest.raises(UsageError, match="task 0 is not in"):
        call(out, 0)
    with pytest.raises(UsageError, match="'3' is not in"):
        call(out, "3")
    rc, text = call(out, 4)  # row 2 of this file
    assert rc == 0 and "task 4: mu=2.0, rep=0" in text


def test_a_missing_task_file_is_refused_naming_where_it_was(tmp_path):
    out, src = study(tmp_path)
    src.rename(tmp_path / "moved.py")
    with pytest.raises(UsageError, match=f"task file '{src}' not found"):
        call(out, 0)


def test_rank_streams_cannot_be_rerun(tmp_path):
    out, _ = study(tmp_path, streams="rank")
    with pytest.raises(UsageError, match="--streams rank.*cannot be reproduced.*--streams task"):
        call(out, 1)


def test_pdb_runs_the_task_under_runcall_with_its_params_and_stream(tmp_path, monkeypatch):
    out, src = study(tmp_path)
    seen = []

    def runcall(fn, *args):
        seen.append((fn, args, args[1].bit_generator.state))
        return fn(*args)

    monkeypatch.setattr("pdb.runcall", runcall)
    rc, text = call(out, 3, pdb=True)
    assert rc == 0 and "matches the stored result" in text
    ((fn, args, state),) = seen
    assert fn.__name__ == "task" and fn.__code__.co_filename == str(src)
    assert len(args) == 2 and args[0] == {"mu": 1.0, "rep": 1}
    assert state == task_generator(7, 3).bit_generator.state


def test_quitting_the_debugger_returns_1_without_a_traceback(tmp_path, monkeypatch):
    out, _ = study(tmp_path)

    def runcall(fn, *args):
        raise bdb.BdbQuit

    monkeypatch.setattr("pdb.runcall", runcall)
    rc, text = call(out, 0, pdb=True)
    assert rc == 1 and "debugger quit before task 0 finished" in text
    assert "Traceback" not in text


def test_a_python_api_function_is_found_by_module_and_qualname(tmp_path, monkeypatch):
    (tmp_path / "rerun_api_mod.py").write_text(
        "class Sim:\n"
        "    @staticmethod\n"
        "    def run(params, rng):\n"
        "        return rng.normal(params['mu'], size=3)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "rerun_api_mod", raising=False)
    mod = importlib.import_module("rerun_api_mod")
    out = tmp_path / "api.h5"
    mpibatch.run(mod.Sim.run, {"mu": [0.0, 3.0]}, reps=2, seed=1, out=out, quiet=True)
    assert mpibatch.open(out).attrs["function"] == "rerun_api_mod:Sim.run"
    rc, text = call(out, 2)
    assert rc == 0 and "value: array([" in text and "matches the stored result" in text
    monkeypatch.delitem(sys.modules, "rerun_api_mod")


def test_a_function_defined_inside_another_is_refused(tmp_path):
    def local(params, rng):
        return rng.random()

    out = tmp_path / "local.h5"
    mpibatch.run(local, {"a": [1]}, seed=1, out=out, quiet=True)
    with pytest.raises(UsageError, match="defined inside another function"):
        call(out, 0)


SCRIPT = """
import logging
import mpibatch

log = logging.getLogger(__name__)


def task(params, rng):
    return rng.normal(params["mu"])


{main}mpibatch.run(task, {{"mu": [0.0, 1.0]}}, reps=2, seed=5, out={out!r}, quiet=True)
"""


def test_rerun_never_runs_a_scripts_study_again(tmp_path):
    out = tmp_path / "script.h5"
    src = tmp_path / "study_script.py"
    src.write_text(SCRIPT.format(main="", out=str(out)))
    r = subprocess.run([sys.executable, str(src)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert mpibatch.open(out).attrs["function"] == "__main__:task"
    before = out.read_bytes()
    with pytest.raises(UsageError, match="runs a study .mpibatch.run. when imported"):
        call(out, 1)  # the script mentions __name__, yet its study is not under the guard
    assert out.read_bytes() == before  # the results file was not written again
    src.write_text(SCRIPT.format(main="if __name__ == '__main__':\n    ", out=str(out)))
    rc, text = call(out, 1, force=True)
    assert rc == 0 and "matches the stored result" in text
    assert out.read_bytes() == before
    assert "run" not in vars(mpibatch)  # the guard is gone again: mpibatch.run is lazy


def test_long_arrays_print_summarised_and_scalars_as_values():
    long = _fmt(np.arange(10_000.0))
    assert long.startswith("array([0.000e+00") and "..." in long and len(long) < 200
    assert _fmt(np.float64(0.25)) == "0.25" and _fmt(3) == "3"
    assert _fmt([[1, 2], [3]]) == "[[1, 2], [3]]"  # ragged: as given
