"""mpibatch.merge: the parts of a job array (one --tasks slice each) become one file."""

import json
import os
import random
from pathlib import Path

import h5py
import numpy as np
import pytest

import mpibatch
from mpibatch import merge as merge_mod
from mpibatch.errors import OutputError, UsageError
from mpibatch.merge import merge

TASK_FILE = """
import os


def grid():
    return {"mu": [0.0, 1.5], "name": ["a", "bbb", "\\u00e9t\\u00e9"]}


def task(params, rng):
    if os.environ.get("MERGE_FAIL") == params["name"] and params["rep"] == 0:
        raise ValueError("told to fail")
    x = rng.normal(params["mu"], size=int(os.environ.get("MERGE_SIZE", "3")))
    return {"mean": x.mean(), "draws": x, "count": rng.integers(0, 1000)}
"""
N = 12  # 2 x 3 grid points x 2 reps
COMPARED = ("tasks/id", "tasks/status", "params/mu", "params/name", "params/rep")


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "study.py"
    path.write_text(TASK_FILE)
    return path


def _run(study, out, tasks=None, seed=5, **kw):
    mpibatch.run(str(study), reps=2, seed=seed, out=str(out), tasks=tasks, quiet=True, **kw)
    return str(out)


def _parts(study, tmp_path, slices=("0:5", "5:9", "9:12"), **kw):
    return [_run(study, tmp_path / f"part{k}.h5", s, **kw) for k, s in enumerate(slices)]


def _bytes(path) -> dict:
    """dtype, HDF5 string type, shape and raw bytes of every compared dataset."""
    out = {}
    with h5py.File(path, "r") as f:
        names = list(COMPARED) + [f"results/{k}" for k in f["results"]]
        for name in names:
            ds = f[name]
            info = h5py.check_string_dtype(ds.dtype)
            out[name] = (ds.dtype.str, info, ds.shape, ds[()].tobytes())
    return out


@pytest.mark.parametrize("slice_bytes", [64 << 20, 50])  # 50: one row per slice
def test_merged_parts_are_byte_identical_to_one_run(study, tmp_path, monkeypatch, slice_bytes):
    monkeypatch.setattr(merge_mod, "_SLICE_BYTES", slice_bytes)
    full = _run(study, tmp_path / "single.h5")
    parts = _parts(study, tmp_path)
    shuffled = parts[1:] + parts[:1]
    random.Random(1).shuffle(shuffled)
    out = str(tmp_path / "merged.h5")
    s = merge(shuffled, out)
    assert (s.n_parts, s.n_tasks, s.done, s.failed, s.pending, s.gaps) == (3, N, N, 0, 0, [])
    assert str(s) == f"merged 3 parts -> {out}: 12 tasks, 12 done, 0 failed, 0 pending"
    got, want = _bytes(out), _bytes(full)
    assert set(want) >= {"results/mean", "results/draws", "results/count"}
    assert got == want
    with h5py.File(out, "r") as f:
        assert f["params/name"].asstr()[:6:2].tolist() == ["a", "bbb", "été"]


def test_merged_file_records_its_parts_and_a_command_without_tasks(study, tmp_path):
    full = mpibatch.open(_run(study, tmp_path / "single.h5"))
    parts = _parts(study, tmp_path)
    out = str(tmp_path / "merged.h5")
    merge(parts[::-1], out)
    res = mpibatch.open(out)
    assert res.attrs["tasks"] == "0:12" and res.attrs["seed"] == 5
    assert res.attrs["command"] == full.attrs["command"].replace(full.path, out)
    assert "--tasks" not in res.attrs["command"]
    assert json.loads(res.attrs["merged_from"]) == [
        {"path": p, "tasks": t} for p, t in zip(parts, ("0:5", "5:9", "9:12"), strict=True)
    ]
    assert len(json.loads(res.attrs["sessions"])) == 3
    assert "ranks" in h5py.File(out, "r") and not (tmp_path / "merged.h5.failures").exists()
    for path, (a, b) in zip(parts, ((0, 5), (5, 9), (9, 12)), strict=True):
        part = mpibatch.open(path)
        assert (res.rank[a:b] == part.rank).all()
        took, part_took = res.elapsed[a:b], part.elapsed
        assert (took == part_took).all()
        shift = part.attrs["t0"] - res.attrs["t0"]  # start times share the earliest origin
        assert np.allclose(res.start[a:b], part.start + shift, rtol=0, atol=1e-9)


def test_a_union_not_from_zero_keeps_tasks_in_the_command(study, tmp_path):
    parts = _parts(study, tmp_path, ("6:9", "3:6"))
    out = str(tmp_path / "m.h5")
    s = merge(parts, out, allow_partial=True)
    assert (s.n_tasks, s.done) == (6, 6)
    res = mpibatch.open(out)
    assert res.attrs["tasks"] == "3:9" and " --tasks 3:9 --out " in res.attrs["command"]
    assert json.loads(res.attrs["partial"]) == [[0, 3], [9, 12]]
    assert res.task_id.tolist() == list(range(3, 9))


def test_a_different_seed_is_refused_naming_the_part(study, tmp_path):
    a = _run(study, tmp_path / "a.h5", "0:6")
    b = _run(study, tmp_path / "b.h5", "6:12", seed=6)
    with pytest.raises(UsageError, match=r"part '.*b\.h5' is of another study .*expected seed 5"):
        merge([a, b], str(tmp_path / "m.h5"))
    assert not (tmp_path / "m.h5").exists()


def test_a_different_grid_is_refused(study, tmp_path):
    a = _run(study, tmp_path / "a.h5", "0:6")
    other = {"mu": [0.0, 1.5], "name": ["a", "bbb", "x"]}
    b = _run(study, tmp_path / "b.h5", "6:12", grid=other)
    with pytest.raises(UsageError, match=r"b\.h5' is of another study .*expected grid "):
        merge([b, a], str(tmp_path / "m.h5"))


def test_a_different_result_shape_is_refused(study, tmp_path, monkeypatch):
    a = _run(study, tmp_path / "a.h5", "0:6")
    monkeypatch.setenv("MERGE_SIZE", "4")
    b = _run(study, tmp_path / "b.h5", "6:12")
    with pytest.raises(UsageError, match=r"stores other results .*draws: float64\[4\]"):
        merge([a, b], str(tmp_path / "m.h5"))


def test_overlapping_ranges_are_refused_naming_both_parts(study, tmp_path):
    parts = _parts(study, tmp_path, ("0:6", "5:12"))
    with pytest.raises(UsageError, match=r"part0\.h5' \(tasks 0:6\) and .*part1\.h5' .*5:6"):
        merge(parts, str(tmp_path / "m.h5"))


def test_an_existing_output_needs_overwrite(study, tmp_path):
    parts = _parts(study, tmp_path, ("0:6", "6:12"))
    out = tmp_path / "m.h5"
    out.write_text("old")
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        merge(parts, str(out))
    assert out.read_text() == "old"
    with pytest.raises(OutputError, match="not an mpibatch results file"):
        merge(parts, str(out), overwrite=True)  # --overwrite replaces only results files
    assert out.read_text() == "old"
    out.write_bytes(Path(parts[1]).read_bytes())
    assert merge(parts, str(out), overwrite=True).done == N
    with pytest.raises(UsageError, match="other than the parts"):
        merge(parts, parts[0], overwrite=True)


def test_missing_or_foreign_parts_are_refused(tmp_path):
    with pytest.raises(UsageError, match="at least one part"):
        merge([], str(tmp_path / "m.h5"))
    with pytest.raises(UsageError, match="no such file"):
        merge([str(tmp_path / "nope.h5")], str(tmp_path / "m.h5"))
    (tmp_path / "x.h5").write_text("not hdf5")
    with pytest.raises(UsageError, match="expected an mpibatch results file, got not an HDF5"):
        merge([str(tmp_path / "x.h5")], str(tmp_path / "m.h5"))


def test_a_gap_leaves_tasks_pending_with_a_warning(study, tmp_path):
    full = _bytes(_run(study, tmp_path / "single.h5"))
    parts = _parts(study, tmp_path, ("9:12", "0:5"))
    out = str(tmp_path / "m.h5")
    with pytest.raises(UsageError, match=r"4 tasks \(5:9\) are in no part"):
        merge(parts, out)
    s = merge(parts, out, allow_partial=True)
    assert (s.n_tasks, s.done, s.pending, s.gaps) == (N, 8, 4, [(5, 9)])
    assert "tasks 5:9 are in no part" in str(s) and str(s).count("\nwarning: ") == 1
    res = mpibatch.open(out)
    assert res.status.tolist() == [1] * 5 + [0] * 4 + [1] * 3
    assert (res.rank[5:9] == -1).all() and np.isnan(res.start[5:9]).all()
    got = _bytes(out)
    for name in ("tasks/id", "params/mu", "params/name", "params/rep"):
        assert got[name] == full[name]  # the layout of a full run, gap included


def test_a_part_with_pending_tasks_is_merged_with_a_resume_warning(study, tmp_path):
    parts = _parts(study, tmp_path, ("0:6", "6:12"))
    with h5py.File(parts[1], "r+") as f:  # as if the element was stopped after 2 tasks
        f["tasks/status"][2:] = 0
    s = merge(parts, str(tmp_path / "m.h5"))
    assert (s.done, s.pending, s.gaps) == (8, 4, [])
    assert f"part '{parts[1]}' has 4 pending tasks; resume that element" in str(s)
    assert "--resume" in s.warnings[0]


@pytest.mark.parametrize("in_sidecar", [False, True])
def test_failures_are_carried_into_errors(study, tmp_path, monkeypatch, in_sidecar):
    a = _run(study, tmp_path / "a.h5", "0:6")
    monkeypatch.setenv("MERGE_FAIL", "bbb")
    b = _run(study, tmp_path / "b.h5", "6:12")  # task 8: mu=1.5, name=bbb, rep=0
    if in_sidecar:  # as if the element was killed: failures still beside the file
        rows = mpibatch.open(b).errors
        record = {k: v[0].item() if hasattr(v[0], "item") else v[0] for k, v in rows.items()}
        (tmp_path / "b.h5.failures").write_text(json.dumps(record) + "\n")
        with h5py.File(b, "r+") as f:
            del f["errors"]
    s = merge([b, a], str(tmp_path / "m.h5"))
    assert (s.done, s.failed, s.pending) == (11, 1, 0)
    res = mpibatch.open(tmp_path / "m.h5")
    assert res.status[8] == 2 and np.isnan(res.results["mean"][8])
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f["errors/task"][()].tolist() == [8]
        assert f["errors/type"].asstr()[0] == "ValueError"
        assert "told to fail" in f["errors/traceback"].asstr()[0]


@pytest.mark.parametrize(
    "slices, lost",
    [(("0:5",), "7 tasks (5:12)"), (("9:12",), "9 tasks (0:9)"), (("3:5", "5:9"), "(0:3, 9:12)")],
)
def test_parts_that_miss_the_first_or_last_tasks_are_refused(study, tmp_path, slices, lost):
    parts = _parts(study, tmp_path, slices)
    out = tmp_path / "m.h5"
    with pytest.raises(UsageError, match="expected parts covering all tasks 0:12") as info:
        merge(parts, str(out))
    assert lost in str(info.value) and "--allow-partial" in str(info.value)
    assert not out.exists()


def test_a_complete_merge_records_that_it_is_not_partial(study, tmp_path):
    out = str(tmp_path / "m.h5")
    merge(_parts(study, tmp_path), out)
    assert mpibatch.open(out).attrs["partial"] == ""


TYPED_FILE = """
import os

import numpy as np

results = {
    "rewards": "ragged float64",
    "path": ("ragged int32", (2,)),
    "model": os.environ.get("MERGE_MODEL", "str"),
    "blob": "bytes",
    "names": ("str", (2,)),
}


def grid():
    return {"mu": [0.0, 1.5], "name": ["a", "bbb", "\\u00e9t\\u00e9"]}


def task(params, rng):
    if params["name"] == "bbb" and params["rep"] == 1:
        raise ValueError("told to fail")
    k = int(rng.integers(0, 4))
    return {
        "rewards": rng.normal(params["mu"], size=k),
        "path": np.arange(2 * k, dtype=np.int32).reshape(k, 2),
        "model": params["name"] * k,
        "blob": bytes(range(k)),
        "names": [params["name"], str(k)],
    }
"""


@pytest.fixture
def typed(tmp_path):
    path = tmp_path / "typed.py"
    path.write_text(TYPED_FILE)
    return path


def _same_values(a: str, b: str, rows=slice(None)) -> None:
    ra, rb = mpibatch.open(a), mpibatch.open(b)
    assert ra.types() == rb.types() and rb.types()["path"] == "ragged int32[*,2]"
    assert (ra.status[rows] == rb.status[rows]).all()
    for key in ra.results:
        x, y = ra.results[key][rows], rb.results[key][rows]
        assert x.mask.tolist() == y.mask.tolist()
        for u, v in zip(x.compressed(), y.compressed(), strict=True):
            assert np.array_equal(np.asarray(u), np.asarray(v)), key


def test_ragged_and_string_results_merge_to_those_of_one_run(typed, tmp_path):
    from mpibatch import _ragged

    full = _run(typed, tmp_path / "single.h5")
    parts = _parts(typed, tmp_path)
    with h5py.File(parts[1], "r+") as f:  # a killed part: its values still in the sidecar
        for key in ("rewards", "model"):
            _ragged.move_out(f["results"], key, 4, parts[1])
    out = str(tmp_path / "merged.h5")
    s = merge(parts[::-1], out)
    assert (s.n_tasks, s.done, s.failed) == (N, 10, 2)
    _same_values(out, full)
    with h5py.File(out, "r") as f:  # the closed layout, for plain h5py readers
        g = f["results/rewards"]
        start, length, status = g["start"][()], g["length"][()], f["tasks/status"][()]
        assert g.attrs["mpibatch_type"] == "ragged" and (start[status != 1] == -1).all()
        assert g["values"].shape == (length[status == 1].sum(),)
        assert json.loads(f["results"].attrs["keys"]) == [
            "rewards",
            "path",
            "model",
            "blob",
            "names",
        ]
        assert f["results/model"].attrs["mpibatch_type"] == "str"
    text = _info(out)
    assert "  rewards ragged float64[*]\n  path ragged int32[*,2]\n  model str\n" in text


def test_a_partial_merge_of_ragged_results_leaves_the_gap_missing(typed, tmp_path):
    full = _run(typed, tmp_path / "single.h5")
    parts = _parts(typed, tmp_path, ("0:5", "9:12"))
    out = str(tmp_path / "merged.h5")
    merge(parts, out, allow_partial=True)
    _same_values(out, full, slice(0, 5))
    res = mpibatch.open(out)
    assert res.results["rewards"][5:9].mask.all() and res.results["model"][5:9].mask.all()
    assert "partial: tasks 5:9 are in no merged part" in _info(out)


def test_parts_with_other_result_types_are_refused_in_one_line(typed, tmp_path, monkeypatch):
    a = _run(typed, tmp_path / "a.h5", "0:6")
    monkeypatch.setenv("MERGE_MODEL", "str16")
    b = _run(typed, tmp_path / "b.h5", "6:12")
    with pytest.raises(UsageError) as info:
        merge([a, b], str(tmp_path / "m.h5"))
    msg = str(info.value)
    assert "\n" not in msg and "model: str," in msg and "model: str16," in msg
    assert not (tmp_path / "m.h5").exists()


def _info(path: str) -> str:
    import contextlib
    import io

    from mpibatch import cli

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(["info", path]) == 0
    return buf.getvalue()


def test_a_killed_part_whose_values_wait_in_its_tail_merges_and_its_place_is_not_copied(
    typed, tmp_path
):
    from mpibatch import _ragged, _tail
    from mpibatch.layout import values_path

    full = _run(typed, tmp_path / "single.h5")
    parts = _parts(typed, tmp_path)
    with h5py.File(parts[1], "r+") as f:  # killed while its first ragged key was in its tail
        _ragged.move_out(f["results"], "rewards", 4, parts[1])
        f.flush()
        x = _tail.place(os.path.getsize(parts[1]))
        f["results/rewards"].attrs[_tail.TAIL_ATTR] = np.int64(x)
    side = values_path(parts[1], "rewards")
    with open(parts[1], "r+b") as fh:
        fh.seek(x)
        fh.write(side.read_bytes())
    side.unlink()
    out = str(tmp_path / "merged.h5")
    merge(parts, out)
    _same_values(out, full)
    with h5py.File(out, "r") as f:
        assert _tail.TAIL_ATTR not in f["results/rewards"].attrs
