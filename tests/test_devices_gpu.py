"""Real GPU binding: run only where ``nvidia-smi -L`` lists a GPU; skipped elsewhere.

Each binding check runs in a fresh child process, because ``CUDA_VISIBLE_DEVICES`` is read once,
when CUDA initialises, and this test process may already have done so.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mpibatch.devices import Device, bound, choose, to_host, visible_gpus

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "gpu_matmul.py"


def _has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0 and any(ln.startswith("GPU ") for ln in r.stdout.splitlines())


def _importable(name: str) -> bool:
    r = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, timeout=120)
    return r.returncode == 0


HAS_GPU = _has_gpu()
pytestmark = pytest.mark.skipif(not HAS_GPU, reason="no NVIDIA GPU on this machine")

# What a child process sees after binding: the device count and device 0's UUID, per library.
PROBE = {
    "cupy": (
        "import cupy, json; r = cupy.cuda.runtime; p = r.getDeviceProperties(0)\n"
        "u = p.get('uuid', b''); u = u.hex() if isinstance(u, bytes) else ''\n"
        "u = '-'.join((u[:8], u[8:12], u[12:16], u[16:20], u[20:])) if u else ''\n"
        "print(json.dumps([r.getDeviceCount(), u]))"
    ),
    "torch": (
        "import torch, json; p = torch.cuda.get_device_properties(0)\n"
        "print(json.dumps([torch.cuda.device_count(), str(getattr(p, 'uuid', ''))]))"
    ),
}


def _library(name: str) -> str:
    if not HAS_GPU or not _importable(name):
        pytest.skip(f"{name} is not installed here")
    return name


@pytest.fixture(params=["cupy", "torch"])
def library(request) -> str:
    return _library(request.param)


def test_visible_gpus_on_this_node_have_uuid_and_name():
    found = visible_gpus()
    assert found, "nvidia-smi lists a GPU but visible_gpus() found none"
    for d in found:
        assert d.uuid and d.uuid.startswith(("GPU-", "MIG-")), d
        assert d.name, d


def test_each_bound_child_sees_exactly_its_own_gpu(library):
    found = visible_gpus()
    ranks = max(4, len(found))  # four ranks even on a one-GPU node: they share it
    for k in range(ranks):
        device = choose(k, ranks, found)
        env = dict(os.environ)
        with bound(device, env):
            r = subprocess.run(
                [sys.executable, "-c", PROBE[library]],
                capture_output=True,
                text=True,
                timeout=300,
                env=env,
            )
        assert r.returncode == 0, r.stderr
        count, uuid = json.loads(r.stdout.strip().splitlines()[-1])
        assert count == 1, f"rank {k} bound to {device} sees {count} devices"
        if uuid and device.uuid.startswith("GPU-"):
            assert device.uuid.endswith(uuid), (k, device, uuid)


def test_distinct_ranks_get_distinct_gpus_when_there_are_enough():
    found = visible_gpus()
    chosen = [choose(k, len(found), found) for k in range(len(found))]
    assert len({d.uuid for d in chosen}) == len(found)


def test_to_host_real_cupy_array():
    _library("cupy")
    import cupy

    x = cupy.arange(6, dtype=cupy.float32).reshape(2, 3)
    out = to_host({"x": x, "s": x.sum()})
    assert isinstance(out["x"], np.ndarray) and out["x"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert float(out["s"]) == 15.0


def test_to_host_real_torch_tensor():
    _library("torch")
    import torch

    x = torch.arange(6, dtype=torch.float32, device="cuda", requires_grad=True)
    out = to_host(x * 2)
    assert isinstance(out, np.ndarray) and out.tolist() == [0, 2, 4, 6, 8, 10]
    assert to_host(torch.ones(2, dtype=torch.bfloat16, device="cuda")).tolist() == [1.0, 1.0]


def _example_in_child(device: Device, seed: int) -> dict:
    code = (
        "import importlib.util, json, sys, types, numpy as np\n"
        f"spec = importlib.util.spec_from_file_location('ex', {str(EXAMPLE)!r})\n"
        "ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)\n"
        f"dev = types.SimpleNamespace(**{device.as_dict()!r})\n"
        "ctx = types.SimpleNamespace(device=dev)\n"
        f"out = ex.task({{'n': 128, 'rep': 0}}, np.random.default_rng({seed}), ctx)\n"
        "print(json.dumps({k: float(v) for k, v in out.items()}))\n"
    )
    env = dict(os.environ)
    with bound(device, env):
        r = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
        )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_example_runs_on_the_gpu_and_is_reproducible():
    if not (_importable("cupy") or _importable("torch")):
        pytest.skip("neither cupy nor torch is installed here")
    device = visible_gpus()[0]
    first, again = _example_in_child(device, 7), _example_in_child(device, 7)
    assert first["backend"] in (1, 2), first  # 1 cupy, 2 torch (0 would be the NumPy path)
    assert first == again


def test_mpibatch_run_binds_ranks_and_results_do_not_depend_on_np(tmp_path):
    bindir = Path(sys.executable).parent
    mpibatch, mpiexec = str(bindir / "mpibatch"), str(bindir / "mpiexec")
    helptext = subprocess.run([mpibatch, "run", "--help"], capture_output=True, text=True)
    if "--gpus" not in helptext.stdout:
        pytest.skip("mpibatch run has no --gpus flag yet")
    import h5py

    results = {}
    for nranks in (1, 2):
        out = tmp_path / f"gpu{nranks}.h5"
        cmd = [mpiexec, "-n", str(nranks), mpibatch, "run", str(EXAMPLE), "--gpus", "auto"]
        cmd += ["--grid", "n=64,128", "--reps", "4", "--seed", "3", "--out", str(out), "--quiet"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        with h5py.File(out, "r") as f:
            results[nranks] = {k: f["results"][k][()] for k in f["results"]}
    if _importable("cupy") or _importable("torch"):
        assert (results[2]["backend"] > 0).all()
    for key in results[1]:
        np.testing.assert_array_equal(results[1][key], results[2][key])
