"""GPU discovery, choice and binding on simulated nodes (no GPU needed)."""

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from mpibatch import devices
from mpibatch.devices import Device, bound, choose, to_host, visible_gpus
from mpibatch.errors import UsageError

SMI_4 = """\
GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaaaaaa-0000-0000-0000-000000000000)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-bbbbbbbb-0000-0000-0000-000000000001)
GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-cccccccc-0000-0000-0000-000000000002)
GPU 3: NVIDIA H100 80GB HBM3 (UUID: GPU-dddddddd-0000-0000-0000-000000000003)
"""
SMI_MIG = """\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-eeeeeeee-0000-0000-0000-000000000000)
  MIG 3g.20gb     Device  0: (UUID: MIG-11111111-0000-0000-0000-000000000000)
  MIG 3g.20gb     Device  1: (UUID: MIG-22222222-0000-0000-0000-000000000000)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-ffffffff-0000-0000-0000-000000000001)
"""
UUID = [f"GPU-{c * 8}-0000-0000-0000-00000000000{i}" for i, c in enumerate("abcd")]
H100 = "NVIDIA H100 80GB HBM3"


def fake_smi(tmp_path: Path, monkeypatch, output: str = SMI_4, rc: int = 0, sleep: float = 0):
    """Put a stub ``nvidia-smi`` first on PATH; it prints ``output`` for ``-L``."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "smi.txt").write_text(output)
    script = bindir / "nvidia-smi"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, time, pathlib\n"
        f"time.sleep({sleep})\n"
        "assert sys.argv[1:] == ['-L'], sys.argv\n"
        "sys.stdout.write(pathlib.Path(__file__).with_name('smi.txt').read_text())\n"
        f"sys.exit({rc})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")


def no_smi(tmp_path: Path, monkeypatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def gpus(n: int) -> list[Device]:
    return [Device(i) for i in range(n)]


# ---- parsing: CUDA_VISIBLE_DEVICES ---------------------------------------------------------


@pytest.mark.parametrize(
    "value, indices",
    [
        ("0,1,2,3", [0, 1, 2, 3]),
        ("2", [2]),
        (" 3 , 1 ", [3, 1]),
        ("", []),
        ("-1", []),
        ("NoDevFiles", []),
        ("0,1,-1,2", [0, 1]),  # CUDA stops at the first invalid entry
        ("1,1,2", [1]),  # ... and at a duplicate
    ],
)
def test_cuda_visible_devices_indices(value, indices):
    found = visible_gpus({"CUDA_VISIBLE_DEVICES": value}, smi=False)
    assert [d.index for d in found] == indices
    assert all(d.uuid is None and d.name is None for d in found)


def test_cuda_visible_devices_uuids_without_smi_keep_the_uuid():
    env = {"CUDA_VISIBLE_DEVICES": f"{UUID[2]},MIG-12345678-aaaa"}
    found = visible_gpus(env, smi=False)
    assert found == [Device(0, UUID[2]), Device(1, "MIG-12345678-aaaa")]


def test_cuda_visible_devices_beats_slurm():
    env = {"CUDA_VISIBLE_DEVICES": "3", "SLURM_JOB_GPUS": "0,1", "SLURM_STEP_GPUS": "1"}
    assert [d.index for d in visible_gpus(env, smi=False)] == [3]


def test_empty_cuda_visible_devices_means_none_even_with_slurm_and_smi(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch)
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "", "SLURM_JOB_GPUS": "0,1"}) == []


# ---- parsing: Slurm -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, indices",
    [
        ({"SLURM_STEP_GPUS": "2,3", "SLURM_JOB_GPUS": "0,1,2,3"}, [2, 3]),
        ({"SLURM_JOB_GPUS": "0,1,2,3"}, [0, 1, 2, 3]),
        ({"SLURM_JOB_GPUS": "0-2,5"}, [0, 1, 2, 5]),
        ({"GPU_DEVICE_ORDINAL": "1,0"}, [1, 0]),
        ({"SLURM_STEP_GPUS": "", "SLURM_JOB_GPUS": "4"}, [4]),  # empty: next variable
        ({"SLURM_STEP_GPUS": "gpu:2", "GPU_DEVICE_ORDINAL": "7"}, [7]),  # unreadable: next
        ({"SLURM_JOB_GPUS": "NoDevFiles", "GPU_DEVICE_ORDINAL": "0"}, []),
        ({}, []),  # no variable and no nvidia-smi asked
    ],
)
def test_slurm_variables(env, indices):
    assert [d.index for d in visible_gpus(env, smi=False)] == indices


def test_slurm_indices_get_uuid_and_name_from_smi(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch)
    found = visible_gpus({"SLURM_JOB_GPUS": "1,3"})
    assert found == [Device(1, UUID[1], H100), Device(3, UUID[3], H100)]


# ---- parsing: nvidia-smi --------------------------------------------------------------------


def test_smi_is_the_last_source(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch)
    found = visible_gpus({})
    assert found == [Device(i, UUID[i], H100) for i in range(4)]
    assert found[0].as_dict() == {"index": 0, "uuid": UUID[0], "name": H100}


def test_smi_fills_uuid_and_name_for_indices_and_uuids(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch)
    env = {"CUDA_VISIBLE_DEVICES": f"2,{UUID[0][:12]}"}  # CUDA accepts a UUID prefix
    assert visible_gpus(env) == [Device(2, UUID[2], H100), Device(0, UUID[0], H100)]


def test_smi_index_not_listed_stays_bare(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch)
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "7"}) == [Device(7)]


def test_smi_mig_instances_replace_their_gpu(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch, SMI_MIG)
    found = visible_gpus({})
    assert [(d.index, d.uuid[:12]) for d in found] == [
        (0, "MIG-11111111"),
        (0, "MIG-22222222"),
        (1, "GPU-ffffffff"),
    ]
    assert found[0].name == "NVIDIA A100-SXM4-40GB MIG 3g.20gb"
    env = {"CUDA_VISIBLE_DEVICES": "MIG-22222222-0000-0000-0000-000000000000"}
    assert visible_gpus(env)[0].name == "NVIDIA A100-SXM4-40GB MIG 3g.20gb"


def test_smi_missing_failing_or_hanging_means_no_gpu(tmp_path, monkeypatch):
    no_smi(tmp_path, monkeypatch)
    assert visible_gpus({}) == []
    fake_smi(tmp_path, monkeypatch, "No devices were found\n", rc=6)
    assert visible_gpus({}) == []
    fake_smi(tmp_path, monkeypatch, SMI_4, sleep=5)
    monkeypatch.setattr(devices, "SMI_TIMEOUT", 0.5)
    assert visible_gpus({}) == []
    assert devices.smi_devices(timeout=0.5) == []


def test_smi_false_never_runs_it(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch)
    assert visible_gpus({}, smi=False) == []


def test_default_env_is_os_environ(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,6")
    assert [d.index for d in visible_gpus(smi=False)] == [5, 6]


# ---- choose ---------------------------------------------------------------------------------


def test_four_ranks_on_four_gpus_are_distinct():
    chosen = [choose(k, 4, gpus(4)) for k in range(4)]
    assert [d.index for d in chosen] == [0, 1, 2, 3]


def test_eight_ranks_on_two_gpus_round_robin():
    chosen = [choose(k, 8, gpus(2)).index for k in range(8)]
    assert chosen == [k % 2 for k in range(8)]
    assert chosen.count(0) == chosen.count(1) == 4


def test_binding_follows_the_visible_order_not_the_index():
    visible = [Device(6), Device(2)]
    assert [choose(k, 2, visible).index for k in range(2)] == [6, 2]


def test_fewer_ranks_than_gpus_leave_gpus_idle():
    assert [choose(k, 2, gpus(4)).index for k in range(2)] == [0, 1]


def test_ranks_per_gpu_is_a_cap():
    assert [choose(k, 4, gpus(2), ranks_per_gpu=2).index for k in range(4)] == [0, 1, 0, 1]
    assert choose(0, 4, gpus(4), ranks_per_gpu=1).index == 0
    with pytest.raises(UsageError) as err:
        choose(0, 8, gpus(2), ranks_per_gpu=2, host="node7")
    msg = str(err.value)
    assert msg == (
        "8 ranks on node7 but 2 GPU(s) x --ranks-per-gpu 2 = 4 places; launch 4 ranks per "
        "node, or pass --ranks-per-gpu 4"
    )
    assert "\n" not in msg


def test_default_ranks_per_gpu_never_errors():
    for size in range(1, 17):
        for g in range(1, 5):
            per_gpu = [choose(k, size, gpus(g)).index for k in range(size)]
            counts = [per_gpu.count(i) for i in range(g)]
            assert max(counts) - min(counts) <= 1  # shared evenly


def test_request_none_and_zero_mean_cpu():
    assert choose(0, 4, gpus(4), "none") is None
    assert choose(3, 4, gpus(4), 0) is None
    assert choose(0, 1, [], "none") is None


def test_auto_without_gpus_is_a_cpu_rank():
    assert choose(0, 4, [], "auto") is None
    assert choose(0, 4, [], "auto", ranks_per_gpu=1) is None


def test_request_n_uses_the_first_n():
    assert [choose(k, 4, gpus(4), 2).index for k in range(4)] == [0, 1, 0, 1]
    assert [choose(k, 4, gpus(4), "3").index for k in range(4)] == [0, 1, 2, 0]


def test_request_more_than_visible_says_how_many():
    with pytest.raises(UsageError, match=r"--gpus 4 but only 2 GPU\(s\) are visible on n1; pass"):
        choose(0, 1, gpus(2), 4, host="n1")
    with pytest.raises(UsageError, match="--gpus 1 but no GPU is visible on this node; pass"):
        choose(0, 1, [], 1)


@pytest.mark.parametrize("request_", ["gpu", "-1", "1.5", True, "all"])
def test_bad_request(request_):
    with pytest.raises(UsageError, match="--gpus: expected auto, none or a number"):
        choose(0, 1, gpus(1), request_)


@pytest.mark.parametrize("per_gpu", [0, -2, True])
def test_bad_ranks_per_gpu(per_gpu):
    with pytest.raises(UsageError, match="--ranks-per-gpu: expected an integer >= 1"):
        choose(0, 1, gpus(1), ranks_per_gpu=per_gpu)


def test_bad_local_rank():
    with pytest.raises(UsageError, match="local rank: expected 0 <= rank < 2, got 2"):
        choose(2, 2, gpus(2))


# ---- bound ----------------------------------------------------------------------------------


def test_bound_sets_one_device_and_restores():
    env = {"CUDA_VISIBLE_DEVICES": "0,1,2,3", "OTHER": "x"}
    with bound(Device(2, UUID[2], H100), env):
        assert env["CUDA_VISIBLE_DEVICES"] == UUID[2]
        assert "HIP_VISIBLE_DEVICES" not in env
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1,2,3", "OTHER": "x"}


def test_bound_uses_the_index_without_uuid_and_removes_what_was_unset():
    env: dict[str, str] = {}
    with bound(Device(3), env):
        assert env == {"CUDA_VISIBLE_DEVICES": "3"}
    assert env == {}


def test_bound_sets_hip_only_if_it_was_set():
    env = {"HIP_VISIBLE_DEVICES": "0,1"}
    with bound(Device(1), env):
        assert env == {"HIP_VISIBLE_DEVICES": "1", "CUDA_VISIBLE_DEVICES": "1"}
    assert env == {"HIP_VISIBLE_DEVICES": "0,1"}


def test_bound_none_leaves_the_environment_alone():
    env = {"CUDA_VISIBLE_DEVICES": "0,1"}
    with bound(None, env):
        assert env == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1"}


def test_bound_restores_after_an_exception():
    env = {"CUDA_VISIBLE_DEVICES": "0,1"}
    with pytest.raises(RuntimeError), bound(Device(1), env):
        raise RuntimeError("task file failed to import")
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1"}


def test_bound_defaults_to_os_environ_for_child_processes(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with bound(Device(1, UUID[1])):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == UUID[1]
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_discover_choose_bind_on_a_simulated_node(tmp_path, monkeypatch):
    """Four ranks of a Slurm step on a four-GPU node each see exactly their own GPU."""
    fake_smi(tmp_path, monkeypatch)
    seen = []
    for k in range(4):
        env = {"SLURM_STEP_GPUS": "0,1,2,3"}
        with bound(choose(k, 4, visible_gpus(env), "auto"), env):
            seen.append(env["CUDA_VISIBLE_DEVICES"])
    assert seen == UUID


# ---- to_host --------------------------------------------------------------------------------


class FakeCupy:
    def __init__(self, data):
        self._data = np.asarray(data)
        self.__cuda_array_interface__ = {"shape": self._data.shape, "version": 3}

    def get(self):
        return self._data.copy()

    def __array__(self, *a, **k):
        raise TypeError("Implicit conversion to a NumPy array is not allowed")


class FakeTensor:
    def __init__(self, data, on_gpu=True, numpy_ok=True):
        self._data, self.on_gpu, self.numpy_ok = np.asarray(data), on_gpu, numpy_ok
        self.calls = []

    def detach(self):
        self.calls.append("detach")
        return self

    def cpu(self):
        self.calls.append("cpu")
        return FakeTensor(self._data, on_gpu=False, numpy_ok=self.numpy_ok)

    def float(self):
        return FakeTensor(self._data.astype(np.float32), on_gpu=self.on_gpu)

    def numpy(self):
        if self.on_gpu:
            raise TypeError("can't convert cuda:0 device type tensor to numpy")
        if not self.numpy_ok:
            raise TypeError("Got unsupported ScalarType BFloat16")
        return self._data


class FakeNumba:
    def __init__(self, data):
        self._data = np.asarray(data)
        self.__cuda_array_interface__ = {"shape": self._data.shape, "version": 3}

    def copy_to_host(self):
        return self._data.copy()


class FakeJax:
    __module__ = "jaxlib.xla_extension"

    def __init__(self, data):
        self._data = np.asarray(data)

    def __array__(self, dtype=None, copy=None):
        return self._data


def test_to_host_cupy():
    out = to_host(FakeCupy([[1.0, 2.0]]))
    assert isinstance(out, np.ndarray) and out.tolist() == [[1.0, 2.0]]


def test_to_host_torch_detaches_and_moves_to_cpu():
    t = FakeTensor([3, 4])
    out = to_host(t)
    assert t.calls == ["detach", "cpu"] and out.tolist() == [3, 4]


def test_to_host_torch_bfloat16_goes_through_float32():
    out = to_host(FakeTensor([1.5], numpy_ok=False))
    assert out.dtype == np.float32 and out.tolist() == [1.5]


def test_to_host_numba_and_jax():
    assert to_host(FakeNumba([5])).tolist() == [5]
    out = to_host(FakeJax([6.0]))
    assert isinstance(out, np.ndarray) and out.tolist() == [6.0]


def test_to_host_leaves_host_values_alone_and_maps_dicts():
    arr = np.arange(3)
    assert to_host(arr) is arr
    assert to_host(2.5) == 2.5
    out = to_host({"a": FakeCupy([1]), "b": 7})
    assert out["a"].tolist() == [1] and out["b"] == 7


def test_to_host_imports_no_gpu_library():
    before = set(sys.modules)
    for value in (FakeCupy([1]), FakeTensor([1]), FakeNumba([1]), FakeJax([1])):
        to_host(value)
    assert not {"cupy", "torch", "jax", "numba"} & (set(sys.modules) - before)
