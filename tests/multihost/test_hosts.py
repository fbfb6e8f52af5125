"""What a run on several pretend hosts records and shows: hosts, node-local ranks, GPUs
per host; and host files from ``mpibatch hostfile`` launch as they are."""

from __future__ import annotations

import os
import subprocess

import h5py
import pytest

from .conftest import MPIBATCH, TASKS

MIXED = TASKS / "mixed.py"
PROBE = TASKS / "gpu_probe.py"


def _ranks(out) -> dict:
    with h5py.File(out, "r") as f:
        g = f["ranks"]
        return {
            "host": [h.decode() if isinstance(h, bytes) else str(h) for h in g["host"][()]],
            "local_rank": g["local_rank"][()].tolist(),
            "gpu_index": g["gpu_index"][()].tolist(),
            "hosts_attr": f.attrs["hosts"],
        }


def _info(out) -> str:
    r = subprocess.run([MPIBATCH, "info", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_node_local_ranks_and_hosts_are_recorded_and_shown(cluster, mpi, tmp_path):
    out = tmp_path / "r.h5"
    r = mpi.mpibatch(cluster, "run", MIXED, "--reps", 2, "--out", out, "--quiet", n=6)
    assert r.returncode == 0, r.stdout + r.stderr
    ranks = _ranks(out)
    assert ranks["host"] == ["node1", "node1", "node2", "node2", "node3", "node3"]
    assert ranks["local_rank"] == [0, 1, 0, 1, 0, 1]
    assert ranks["hosts_attr"] == '["node1", "node2", "node3"]'
    info = _info(out)
    assert "ranks: 6 on 3 host(s)" in info
    for k, host in enumerate(cluster.hosts):
        assert f"{host}: ranks {2 * k}-{2 * k + 1}" in info, info
    assert "every rank is on one host" not in info


def test_gpus_are_bound_per_host_from_each_hosts_own_devices(cluster, mpi, tmp_path):
    # node1 sees GPUs 0,1 (one per rank); node2 sees only GPU 5 (its two ranks share it)
    out = tmp_path / "g.h5"
    cluster.set_env("node1", {"CUDA_VISIBLE_DEVICES": "0,1"})
    cluster.set_env("node2", {"CUDA_VISIBLE_DEVICES": "5"})
    try:
        r = mpi.mpibatch(
            cluster, "run", PROBE, "--reps", 8, "--out", out, "--quiet", "--schedule", "static",
            n=4, hosts=cluster.hosts[:2], env={"CUDA_VISIBLE_DEVICES": None},
        )  # fmt: skip
    finally:
        cluster.set_env("node1", None)
        cluster.set_env("node2", None)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _ranks(out)["gpu_index"] == [0, 1, 5, 5]
    with h5py.File(out, "r") as f:
        rank, visible = f["tasks/rank"][()], f["results/visible"][()]
        seen = {int(k): sorted(set(visible[rank == k].tolist())) for k in set(rank.tolist())}
    assert seen == {0: [0], 1: [1], 2: [5], 3: [5]}  # what CUDA would see on each rank
    info = _info(out)
    assert "GPUs: 4 ranks on 3 distinct GPU(s)" in info, info
    assert "rank 2 on node2: GPU 5" in info and "rank 1 on node1: GPU 1" in info


@pytest.mark.parametrize("source", ["names", "slurm"])
def test_hostfile_from_mpibatch_hostfile_launches_on_those_hosts(cluster, mpi, tmp_path, source):
    """``mpibatch hostfile node1 node3 --slots 2`` or, inside a (pretend) Slurm job, from
    SLURM_JOB_NODELIST and SLURM_TASKS_PER_NODE: the file launches as it is, without -n."""
    if source == "names":
        args, env = ["node1", "node3", "--slots", "2"], {}
        want = ["node1", "node1", "node3", "node3"]
    else:
        args = []
        env = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "node[1-3]",
               "SLURM_TASKS_PER_NODE": "2(x2),1"}  # fmt: skip
        want = ["node1", "node1", "node2", "node2", "node3"]
    r = subprocess.run(
        [MPIBATCH, "hostfile", *args, "--flavor", mpi.name],
        capture_output=True, text=True, timeout=60, env={**os.environ, **env},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    hostfile = tmp_path / "hosts"
    hostfile.write_text(r.stdout)
    out = tmp_path / "h.h5"
    r = mpi.run(
        cluster, [MPIBATCH, "run", MIXED, "--reps", 2, "--out", out, "--quiet"], hostfile=hostfile
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert _ranks(out)["host"] == want
