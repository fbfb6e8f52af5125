"""Result dtypes, bytes and the exit code do not depend on -np, the schedule or timing.

Tasks return each result with varying widths and Python/NumPy types (mixed_types.py);
whichever task ends first, every integer stores as int64, every float as float64, ...
"""

import h5py
import numpy as np
import pytest
from conftest import TASKS, mpibatch

import mpibatch as mb

RUNS = [(1, "auto"), (2, "static"), (2, "dynamic"), (3, "auto"), (3, "static"), (4, "dynamic")]
STORED = {"i": "<i8", "f": "<f8", "b": "|b1", "c": "<c16", "v": "<i8"}


def _run(tmp_path, np_, schedule, mode):
    out = tmp_path / f"{mode}-np{np_}-{schedule}.h5"
    r = mpibatch(
        np_,
        "run",
        TASKS / "mixed_types.py",
        "--reps",
        40,
        "--seed",
        11,
        "--schedule",
        schedule,
        "--out",
        out,
        "--quiet",
        env={"TYPES_MODE": mode},
        timeout=120,
    )
    return r, out


def _results(path):
    with h5py.File(path, "r") as f:
        out = {"tasks/status": f["tasks/status"][()].tobytes()}
        for key, ds in f["results"].items():
            out[key] = (ds.dtype.str, ds.shape, ds[()].tobytes(), dict(ds.attrs).keys())
        return out


def test_dtypes_bytes_and_exit_code_are_the_same_at_any_np_and_schedule(tmp_path):
    seen = []
    for np_, schedule in RUNS:
        r, out = _run(tmp_path, np_, schedule, "widths")
        assert r.returncode == 1, r.stderr  # the failed rows, nothing else
        seen.append((np_, schedule, _results(out)))
    ref = seen[0][2]
    assert {k: v[0] for k, v in ref.items() if k != "tasks/status"} == STORED
    for np_, schedule, got in seen[1:]:
        assert got == ref, (np_, schedule)


def test_failed_rows_hold_the_fill_value_and_read_back_as_missing(tmp_path):
    r, out = _run(tmp_path, 2, "dynamic", "widths")
    assert r.returncode == 1, r.stderr
    failed = np.arange(40) % 7 == 3
    with h5py.File(out, "r") as f:
        assert (f["tasks/status"][()] == 2).tolist() == failed.tolist()
        low = np.iinfo(np.int64).min
        for key in ("i", "v"):
            ds = f["results"][key]
            assert ds.attrs["fillvalue"] == low and ds.fillvalue == low
            assert (ds[()][failed] == low).all() and (ds[()][~failed] != low).all()
        assert np.isnan(f["results/f"][()][failed]).all()
        assert np.isnan(f["results/c"][()][failed].real).all()
        assert "fillvalue" not in f["results/b"].attrs
        assert "/tasks/status" in f["results/b"].attrs["missing"]
    res = mb.open(out)
    assert res.results["i"].mask.tolist() == failed.tolist()
    assert res.to_pandas()["i"].isna().tolist() == failed.tolist()


@pytest.mark.parametrize("np_, schedule", [(1, "auto"), (2, "dynamic"), (4, "static")])
def test_an_int_in_some_tasks_and_a_float_in_others_fails_whatever_the_order(
    tmp_path, np_, schedule
):
    r, _ = _run(tmp_path, np_, schedule, "mean")
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "'m'" in line and "int" in line and "float" in line, line
    assert "results = {'m': 'float64'}" in line, line  # the same advice from either side


def test_declared_types_store_compactly_and_fail_only_the_tasks_that_do_not_fit(tmp_path):
    got = []
    for np_, schedule in [(1, "auto"), (3, "dynamic")]:
        r, out = _run(tmp_path, np_, schedule, "declared")
        assert r.returncode == 1, r.stderr  # the tasks whose n is 200, nothing else
        got.append(_results(out))
        with h5py.File(out, "r") as f:
            assert f["results/m"].dtype == np.float32 and f["results/n"].dtype == np.int8
            failed = (f["tasks/status"][()] == 2).tolist()
            assert failed == (np.arange(40) % 9 == 4).tolist()
            assert (f["results/n"][()][failed] == -128).all()
            msgs = f["errors/message"].asstr()[()]
        assert all("'n' = 200; the task file declares it int8" in m for m in msgs)
    assert got[0] == got[1]
