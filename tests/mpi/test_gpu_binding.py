"""One GPU per rank, with simulated visible devices (no GPU here): which rank gets which."""

import h5py
import numpy as np
import pytest
from conftest import ROOT, TASKS, mpibatch

PROBE = TASKS / "gpu_probe.py"


def _bound(tmp_path, np_, *extra, env):
    out = tmp_path / "g.h5"
    r = mpibatch(
        np_,
        "run",
        PROBE,
        "--reps",
        np_ * 2,
        "--out",
        out,
        "--overwrite",
        "--quiet",
        "--schedule",
        "static",
        *extra,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        rank = f["tasks/rank"][()]
        per_rank = {int(r): int(f["results/visible"][rank == r][0]) for r in set(rank)}
        recorded = f["ranks/gpu_index"][()].tolist()
        dev = {int(r): int(f["results/device"][rank == r][0]) for r in set(rank)}
    if set(recorded) != {-1}:
        assert dev == per_rank  # ctx.device agrees with what CUDA would see
    return per_rank, recorded


def test_four_ranks_on_four_gpus_get_four_gpus(tmp_path):
    seen, recorded = _bound(tmp_path, 4, env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert seen == {0: 0, 1: 1, 2: 2, 3: 3} and recorded == [0, 1, 2, 3]


def test_more_ranks_than_gpus_share_round_robin(tmp_path):
    seen, _ = _bound(tmp_path, 4, env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert seen == {0: 0, 1: 1, 2: 0, 3: 1}


def test_slurm_gpu_variables_are_a_source_too(tmp_path):
    seen, recorded = _bound(tmp_path, 2, env={"SLURM_JOB_GPUS": "2,3", "PATH": _no_smi_path()})
    assert seen == {0: 2, 1: 3} and recorded == [2, 3]


def test_gpus_none_leaves_ranks_on_the_cpu(tmp_path):
    seen, recorded = _bound(tmp_path, 2, "--gpus", "none", env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert set(recorded) == {-1}
    assert set(seen.values()) == {-3}  # the environment is left as it was ("0,1")


def test_too_many_ranks_per_gpu_is_one_clear_error(tmp_path):
    r = mpibatch(
        4,
        "run",
        PROBE,
        "--reps",
        4,
        "--out",
        tmp_path / "x.h5",
        "--ranks-per-gpu",
        1,
        env={"CUDA_VISIBLE_DEVICES": "0,1"},
    )
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("mpibatch: error:")]
    assert len(lines) == 1 and "4 ranks on" in lines[0] and "--ranks-per-gpu 2" in lines[0]


def test_gpu_example_runs_and_info_shows_the_binding(tmp_path):
    out = tmp_path / "gm.h5"
    r = mpibatch(
        2,
        "run",
        ROOT / "examples" / "gpu_matmul.py",
        "--reps",
        2,
        "--seed",
        1,
        "--out",
        out,
        env={"CUDA_VISIBLE_DEVICES": "0,1"},
    )
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert np.isfinite(f["results/fro"][()]).all()
    info = mpibatch(None, "info", out).stdout
    assert "GPUs: 2 ranks on 2 distinct GPU(s)" in info


def _no_smi_path() -> str:
    import os
    import shutil

    path = os.environ["PATH"]
    if shutil.which("nvidia-smi"):
        pytest.skip("a real nvidia-smi is here; this test simulates Slurm's variables alone")
    return path
