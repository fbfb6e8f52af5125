"""Reading results files back: anything that is not one is a one-line error, exit 2."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import mpibatch
from mpibatch import cli
from mpibatch.errors import UsageError


def _not_results(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1, 2, 3]
    return {"not an HDF5 file": text, "mpibatch did not write": other}


@pytest.mark.parametrize("command", ["info", "errors", "plot"])
def test_commands_on_a_file_mpibatch_did_not_write_are_one_line(command, tmp_path, capsys):
    for problem, path in _not_results(tmp_path).items():
        assert cli.main([command, str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "expected an mpibatch results file" in err and problem in err


def test_open_raises_a_usage_error(tmp_path):
    for problem, path in _not_results(tmp_path).items():
        with pytest.raises(UsageError, match=problem):
            mpibatch.open(path)


def test_a_file_open_for_writing_elsewhere_still_opens(tmp_path):
    out = tmp_path / "r.h5"
    mpibatch.run(lambda p, rng: rng.random(), {"a": [1, 2]}, seed=1, out=out, quiet=True)
    with h5py.File(out, "r+"):  # another handle holds the file, with HDF5 locking
        assert mpibatch.open(out).n_tasks == 2


def _task(params, rng):
    if params["n"] % 3 == 0:
        raise ValueError("every third fails")
    return {"k": params["n"] * 10, "ok": True, "x": float(params["n"]), "v": [params["n"]] * 2}


def test_failed_rows_are_missing_in_every_view_never_0_or_false(tmp_path):
    out = tmp_path / "r.h5"
    mpibatch.run(_task, {"n": [1, 2, 3, 4, 5, 6]}, seed=1, out=out, quiet=True)
    res = mpibatch.open(out)
    k, ok = res.results["k"], res.results["ok"]
    assert k.mask.tolist() == [False, False, True, False, False, True]
    assert k.mean() == (10 + 20 + 40 + 50) / 4  # not dragged down by zeros
    assert ok.count() == 4 and ok.all()
    assert np.isnan(res.results["x"][[2, 5]]).all()
    assert res.results["v"].mask[2].all() and not res.results["v"].mask[0].any()
    df = res.to_pandas()
    assert str(df["k"].dtype) == "Int64" and df["k"].isna().tolist() == [0, 0, 1, 0, 0, 1]
    assert str(df["ok"].dtype) == "boolean" and df["ok"].isna().sum() == 2
    assert df["k"].mean() == 30.0


def test_plain_h5py_readers_find_failed_int_rows_by_the_fillvalue_attribute(tmp_path):
    out = tmp_path / "r.h5"
    mpibatch.run(_task, {"n": [1, 2, 3, 4, 5, 6]}, seed=1, out=out, quiet=True)
    with h5py.File(out, "r") as f:
        ds = f["results/k"]
        k, fill = ds[()], ds.attrs["fillvalue"]
        assert ds.dtype == np.int64 and fill == np.iinfo(np.int64).min == ds.fillvalue
        assert (k == fill).tolist() == (f["tasks/status"][()] == 2).tolist()
        assert k[k != fill].mean() == mpibatch.open(out).results["k"].mean() == 30.0
        assert "mask by /tasks/status" in f["results/ok"].attrs["missing"]
