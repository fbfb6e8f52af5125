"""Ragged arrays, strings and declared types through real mpiexec runs (issue 13)."""

import h5py
import numpy as np
import pytest
from conftest import TASKS, mpibatch

from mpibatch._ragged import describe_key, read_values
from mpibatch.layout import TASK_STATUS, values_path

KEYS = ("rewards", "xy", "model", "names", "blob", "code")


def _run(tmp_path, np_, *extra, mode="declared", name=None, reps=30):
    out = tmp_path / (name or f"np{np_}-{'-'.join(map(str, extra))}.h5")
    r = mpibatch(
        np_,
        "run",
        TASKS / "ragged.py",
        "--reps",
        reps,
        "--seed",
        7,
        "--out",
        out,
        "--quiet",
        "--block-size",
        2,
        *extra,
        env={"RAGGED_MODE": mode},
        timeout=180,
    )
    assert r.returncode == 1 and not r.stderr, r.stderr  # 1: some tasks failed
    return out


def _values(path):
    """Every key's per-task values (None where not done) and the statuses."""
    with h5py.File(path, "r") as f:
        status = f[TASK_STATUS.path][()]
        out = {"status": status.tolist()}
        for key in f["results"]:
            vals = read_values(f, key)
            out[key] = [_plain(v) if s == 1 else None for v, s in zip(vals, status, strict=True)]
    return out


def _plain(v):
    if isinstance(v, np.ndarray):
        return (v.dtype.str, v.shape, v.tobytes() if v.dtype != object else v.tolist())
    return v


@pytest.mark.parametrize("mode", ["declared", "undeclared"])
def test_values_are_identical_for_np_1_to_4_and_every_schedule(tmp_path, mode):
    cases = [(1, "auto"), (2, "static"), (3, "dynamic"), (4, "auto"), (4, "static")]
    files = [_run(tmp_path, n, "--schedule", s, mode=mode) for n, s in cases]
    ref = _values(files[0])
    for path in files[1:]:
        assert _values(path) == ref, path
    assert not values_path(files[0], "model").parent.exists()  # moved into the file
    status = np.array(ref["status"])
    assert (status[np.arange(30) % 7 == 3] == 2).all()
    if mode == "declared":
        assert status[5] == 2 and status[11] == 2  # a value that does not fit fails alone
        assert (status == 1).sum() == 30 - 4 - 2
        done = np.flatnonzero(status == 1)
        assert len({ref["rewards"][i][1] for i in done}) > 2  # lengths vary (0 included)
        assert ref["model"][0] == "ridge" and ref["names"][2][2][0] == "élastique"
        assert ref["blob"][1] == bytes([1, 0, 0])[:1] + ref["blob"][1][1:]  # NUL bytes kept
        assert ref["blob"][1][1:2] == b"\x00"
    else:
        assert (status == 1).sum() == 30 - 4


def test_the_closed_file_is_plain_h5py(tmp_path):
    path = _run(tmp_path, 2, name="plain.h5")
    with h5py.File(path, "r") as f:
        r = f["results/rewards"]
        assert r.attrs["mpibatch_type"] == "ragged" and r.attrs["dtype"] == "float64"
        start, length, values = r["start"][()], r["length"][()], r["values"]
        status = f["tasks/status"][()]
        assert ((start >= 0) == (status == 1)).all() and (length[status != 1] == -1).all()
        assert values.shape == (length[status == 1].sum(),)
        i = int(np.flatnonzero(status == 1)[0])
        assert np.array_equal(
            values[start[i] : start[i] + length[i]], read_values(f, "rewards", [i])[0]
        )
        assert f["results/xy/values"].shape[1:] == (2,)
        model = f["results/model"]
        assert model.attrs["mpibatch_type"] == "str" and h5py.check_string_dtype(model.dtype)
        assert model.asstr()[0] == "ridge" and model.shape == (30,)
        assert f["results/names"].shape == (30, 2)
        blob = f["results/blob"]  # bytes: variable-length uint8 (binary-safe, NULs kept)
        assert blob.attrs["mpibatch_type"] == "bytes" and blob[1].tobytes()[:2] == b"\x01\x00"
        assert f["results/code"].dtype.itemsize == 8 and f["results/code"].asstr()[4] == "c4"
        kinds = {k: describe_key(f["results"][k]) for k in f["results"]}
    assert kinds["rewards"] == ("ragged", "float64", ())
    assert kinds["xy"] == ("ragged", "float32", (2,))
    assert kinds["names"] == ("str", "str", (2,)) and kinds["code"] == ("str", "str8", ())
    assert kinds["blob"] == ("bytes", "bytes", ())


def test_a_resumed_file_appends_after_the_values_it_holds(tmp_path):
    whole = _values(_run(tmp_path, 2, name="whole.h5"))
    part = _run(tmp_path, 2, "--tasks", "0:30", name="part.h5")
    with h5py.File(part, "r+") as f:  # as if the run had stopped: half the rows pending
        f["tasks/status"][15:] = 0
    r = mpibatch(
        3,
        "run",
        TASKS / "ragged.py",
        "--reps",
        30,
        "--seed",
        7,
        "--out",
        part,
        "--quiet",
        "--resume",
        "--force",
        env={"RAGGED_MODE": "declared"},
        timeout=180,
    )
    assert r.returncode == 1, r.stderr
    assert _values(part) == whole
