"""Shared inputs without MPI: what load() may return, which functions are hooks, how the
file spells a dtype, and the one-line refusals (see tests/mpi/test_shared.py for runs)."""

from __future__ import annotations

import ast
import types

import h5py
import numpy as np
import pytest

from mpibatch import _inputs, _shared
from mpibatch.errors import UsageError
from mpibatch.taskfile import hook


def test_load_may_return_arrays_of_any_dtype_and_memory_maps(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(4))
    arrays = {
        "rec": np.zeros(2, dtype=[("a", "i4"), ("b", "S3")]),
        "mapped": np.load(tmp_path / "a.npy", mmap_mode="r"),
        "u": np.array(["x", "yz"]),
    }
    assert _inputs.check_arrays(arrays, "load()") == arrays


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([np.zeros(2)], "expected a dict of name -> numpy array, got list"),
        ({"a/b": np.zeros(2)}, "non-empty strings without '/', got 'a/b'"),
        (
            {"x": [1, 2]},
            "'x' is a builtins.list; expected a numpy array: convert it with np.asarray",
        ),
        ({"o": np.array([None, 1])}, "'o' has dtype object"),
    ],
)
def test_anything_else_is_one_line_saying_how_to_convert_it(value, expected):
    with pytest.raises(UsageError) as info:
        _inputs.check_arrays(value, "load() in task file 't.py'")
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_an_h5py_dataset_is_refused_with_how_to_read_it(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        ds = f.create_dataset("d", data=np.arange(3))
        with pytest.raises(UsageError, match=r"read it with ds\[\(\)\]"):
            _inputs.check_arrays({"d": ds}, "load()")


def test_only_functions_defined_in_the_task_file_are_hooks():
    module = types.ModuleType("study")
    exec("from json import load\ndef setup(ctx):\n    return 1\n", module.__dict__)
    assert hook(module, "load") is None  # imported from json: not the file's load()
    assert hook(module, "setup") is module.setup
    assert hook(None, "setup") is None


def test_a_structured_dtype_is_recorded_as_text_numpy_reads_back():
    dtype = np.dtype([("id", "<i4"), ("name", "<U6"), ("xy", "<f4", (2,))])
    text = _inputs.dtype_text(dtype)
    assert np.lib.format.descr_to_dtype(ast.literal_eval(text)) == dtype
    assert _inputs.dtype_text(np.dtype("float64")) == "<f8"


def test_a_node_without_room_in_dev_shm_is_refused_in_one_line(tmp_path):
    assert _shared._room(1, 0, str(tmp_path)) is None
    error = _shared._room(1 << 60, 3, str(tmp_path))
    assert error is not None and "expected 1073741824.00 GiB of free shared memory" in str(error)
    assert "(rank 3)" in str(error)


def test_resume_names_the_changed_array_and_ignores_hashes_a_killed_run_lacked():
    rec = {"dtype": "<f8", "shape": [3], "nbytes": 24, "sha256": "a" * 64}
    changed = {**rec, "sha256": "b" * 64}
    error = _inputs._difference("cannot resume 'f.h5'", {"w": rec}, {"w": changed}, "resume")
    assert error is not None and "shared input 'w' changed since the run" in str(error)
    assert "--force" in str(error)
    unhashed = {**rec, "sha256": ""}
    assert _inputs._difference("x", {"w": unhashed}, {"w": changed}, "resume") is None
    reshaped = {**changed, "shape": [4]}
    assert _inputs._difference("x", {"w": unhashed}, {"w": reshaped}, "resume") is not None
