"""Results are byte-identical whatever -np, and equal to the per-task reference streams."""

import h5py
import numpy as np
import pytest
from conftest import TASKS, file_columns, mpibatch

from mpibatch.grid import Grid
from mpibatch.streams import task_generator


def _run(tmp_path, np_, *extra, env=None):
    out = tmp_path / f"np{np_}.h5"
    r = mpibatch(
        np_,
        "run",
        TASKS / "mixed.py",
        "--reps",
        7,
        "--seed",
        123,
        "--out",
        out,
        "--quiet",
        *extra,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    return out


def test_results_are_byte_identical_for_np_1_to_4(tmp_path):
    files = [_run(tmp_path, n) for n in (1, 2, 3, 4)]
    ref = file_columns(files[0])
    assert set(ref) >= {"results/mean", "results/draws", "results/count", "results/flag"}
    for path in files[1:]:
        assert file_columns(path) == ref, path


def test_many_small_rounds_give_the_same_bytes(tmp_path):
    # 1 MiB budget with 40 kB rows: a handful of rows per round, many Gatherv rounds
    env = {"MIXED_SIZE": "5000", "MPIBATCH_GATHER_MB": "1"}
    a = _run(tmp_path, 1, env=env)
    b = _run(tmp_path, 3, env=env)
    assert file_columns(a) == file_columns(b)
    with h5py.File(b) as f:
        assert f["results/draws"].shape == (42, 5000)


def test_results_equal_the_reference_stream_of_each_task(tmp_path):
    path = _run(tmp_path, 2)
    grid = Grid({"mu": [0.0, 1.5, -2.0], "kind": ["a", "bb"]}, reps=7)
    with h5py.File(path, "r") as f:
        draws, count = f["results/draws"][()], f["results/count"][()]
        kinds = f["params/kind"].asstr()[()]
    for i in (0, 1, 13, 41):
        p = grid.params(i)
        rng = task_generator(123, i)
        x = rng.normal(p["mu"], size=3)
        assert draws[i].tobytes() == x.tobytes()
        assert count[i] == rng.integers(0, 1000)
        assert kinds[i] == p["kind"]


def test_rank_streams_depend_on_np(tmp_path):
    a = _run(tmp_path, 1, "--streams", "rank", "--schedule", "static")
    b = _run(tmp_path, 2, "--streams", "rank", "--schedule", "static")
    with h5py.File(a) as fa, h5py.File(b) as fb:
        ra, rb = fa["results/draws"][()], fb["results/draws"][()]
        # rank 0 runs the first block either way: same stream, same draws there
        assert np.array_equal(ra[:21], rb[:21])
        assert not np.array_equal(ra[21:], rb[21:])
        assert fa.attrs["streams"] == "rank"


@pytest.mark.parametrize("np_", [2, 4])
def test_task_slice_matches_the_full_run(tmp_path, np_):
    full = _run(tmp_path, 1)
    part = _run(tmp_path, np_, "--tasks", "5:20", "--overwrite")
    with h5py.File(full) as ff, h5py.File(part) as fp:
        assert fp["tasks/id"][()].tolist() == list(range(5, 20))
        assert fp["results/draws"][()].tobytes() == ff["results/draws"][5:20].tobytes()
        assert fp["params/mu"][()].tolist() == ff["params/mu"][5:20].tolist()


def test_seedsequence_streams_are_invariant_and_numpys_own(tmp_path):
    task = tmp_path / "draw.py"
    task.write_text("def task(params, rng):\n    return rng.random()\n")
    outs = []
    for n, schedule in ((1, "static"), (3, "dynamic")):
        out = tmp_path / f"ss{n}.h5"
        args = ("run", task, "--reps", 40, "--seed", 11, "--streams", "seedsequence")
        r = mpibatch(n, *args, "--schedule", schedule, "--out", out, "--quiet")
        assert r.returncode == 0, r.stderr
        outs.append(out)
    with h5py.File(outs[0], "r") as a, h5py.File(outs[1], "r") as b:
        (key,) = a["results"]  # a bare number: one result dataset
        x = a["results"][key][()]
        assert a.attrs["streams"] == "seedsequence"
        assert x.tobytes() == b["results"][key][()].tobytes()
    kids = np.random.SeedSequence(11).spawn(40)
    ref = [np.random.Generator(np.random.PCG64(k)).random() for k in kids]
    assert x.tolist() == ref
    r = mpibatch(None, "rerun", outs[1], "--task", 17)
    assert r.returncode == 0 and "matches the stored result" in r.stdout, r.stdout + r.stderr
