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


DECLARED = {
    "est": "float64",
    "k": "int64",
    "rewards": "ragged float64",
    "model": "str",
    "coef": ("float64", (3,)),
    "blob": "bytes",
}
GRID = {"n": [10, 100], ("a", "b"): [(0.1, "x"), (0.2, "y")]}


def _study(params, rng):
    """Deterministic in the task's params, so every way of running it gives one answer."""
    i = params["n"] // 10 + 2 * int(params["a"] * 10) + params["rep"]
    if params["n"] == 100 and params["b"] == "y" and params["rep"] == 1:
        raise ValueError("told to fail")
    return {
        "est": params["a"] + 0.01 * params["rep"],
        "k": i,
        "rewards": np.arange(i % 4, dtype=float) + params["rep"],
        "model": ["ols", "lasso é"][i % 2],
        "coef": np.full(3, float(i)),
        "blob": b"\x00" * (i % 3),
    }


def _expected(res, key, row):
    return _study({k: v[row] for k, v in res.params.items()}, None)[key]


def test_declared_ragged_and_string_results_read_back_end_to_end(tmp_path):
    out = tmp_path / "r.h5"
    mpibatch.run(_study, GRID, reps=3, seed=1, out=out, results=DECLARED, quiet=True)
    res = mpibatch.open(out)
    failed = 10  # n=100, b=y, rep=1
    assert res.types()["rewards"] == "ragged float64[*]" and res.types()["coef"] == "float64[3]"
    assert res.done.tolist() == [i != failed for i in range(12)]
    for key in DECLARED:
        col = res.results[key][:]
        for row in range(12):
            if row == failed:
                assert np.ma.is_masked(col[row]) or np.isnan(col[row]).all()
                continue
            assert np.array_equal(np.asarray(col[row]), np.asarray(_expected(res, key, row)))
    assert res.results["model"][0] == "lasso é" and res.results["blob"][1] == b"\x00"
    df = res.to_pandas()
    assert df["rewards"][4].tolist() == list(np.arange(_expected(res, "k", 4) % 4) + 1.0)
    assert df.loc[failed, ["k", "rewards", "model", "coef", "blob"]].isna().all()
    with pytest.warns(UserWarning, match="left out results rewards"):
        ds = res.to_xarray()
    assert ds["est"].mean("rep").values.round(6).tolist() == [[0.11, 0.21], [0.11, 0.21]]
    text = cli_info(out)
    for line in ("rewards ragged float64[*]", "model str", "coef float64[3]", "blob bytes"):
        assert f"  {line}\n" in text


def cli_info(path) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(["info", str(path)]) == 0
    return buf.getvalue()


def test_a_running_or_killed_study_reads_values_from_the_sidecar(tmp_path):
    """While a run goes (or after a kill) ragged values and strings wait beside the file."""
    from mpibatch import _ragged

    closed, running = tmp_path / "closed.h5", tmp_path / "running.h5"
    mpibatch.run(_study, GRID, reps=3, seed=1, out=closed, results=DECLARED, quiet=True)
    mpibatch.run(_study, GRID, reps=3, seed=1, out=running, results=DECLARED, quiet=True)
    with h5py.File(running, "r+") as f:  # back to the state of a run still writing it
        for key in ("rewards", "model", "blob"):
            _ragged.move_out(f["results"], key, 12, running)
        assert isinstance(f["results/model"], h5py.Group) and "values" not in f["results/rewards"]
    want, got = mpibatch.open(closed), mpibatch.open(running)
    assert got.types() == want.types()
    for key in ("rewards", "model", "blob"):
        a, b = want.results[key][:], got.results[key][:]
        assert b.mask.tolist() == a.mask.tolist() and b.mask.sum() == 1
        for x, y in zip(a.compressed(), b.compressed(), strict=True):
            assert np.array_equal(np.asarray(x), np.asarray(y))
    assert got.results["model"][[3, 0]].tolist() == want.results["model"][[3, 0]].tolist()
