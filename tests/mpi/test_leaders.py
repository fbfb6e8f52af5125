"""Node leaders (two-level dispatch and gather) give the same file as the flat path.

One host: ``MPIBATCH_NODE_SIZE=k`` splits the ranks into pretend nodes of k ranks, so
``--leaders on`` with -np 4 runs as 2 nodes x 2 ranks (rank 1 alone in node 0's group,
rank 2 leading rank 3) or as 1 node of 4 (rank 1 leading ranks 2 and 3).
"""

import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from conftest import MPIBATCH, MPIEXEC, TASKS, file_columns, mpibatch, signal_rank

MIXED, FAULTY = TASKS / "mixed.py", TASKS / "faulty.py"


def _run(tmp_path, name, np_, *extra, task=MIXED, reps=7, env=None, code=0):
    out = tmp_path / f"{name}.h5"
    r = mpibatch(
        np_,
        "run",
        task,
        "--reps",
        reps,
        "--seed",
        123,
        "--out",
        out,
        "--quiet",
        *extra,
        env=env,
        timeout=120,
    )
    assert r.returncode == code, r.stderr
    return out


def _attrs_and_ranks(path):
    with h5py.File(path, "r") as f:
        return dict(f.attrs), f["tasks/rank"][()]


# (np, node size, the ranks that lead a group and so run no task)
LAYOUTS = [(2, 2, ()), (3, 3, (1,)), (4, 2, (2,)), (4, 4, (1,))]


@pytest.mark.parametrize("schedule", ["static", "dynamic", "auto"])
@pytest.mark.parametrize("np_, node_size, leaders", LAYOUTS)
def test_leaders_give_the_flat_paths_bytes(tmp_path, schedule, np_, node_size, leaders):
    ref = file_columns(_run(tmp_path, "flat", 1))
    env = {"MPIBATCH_NODE_SIZE": str(node_size)}
    out = _run(tmp_path, "two", np_, "--schedule", schedule, "--leaders", "on", env=env)
    assert file_columns(out) == ref
    attrs, ranks = _attrs_and_ranks(out)
    assert attrs["leaders"] == "on" and "--leaders on" in attrs["leaders_reason"]
    workers = sorted(set(range(np_)) - set(leaders))
    assert set(ranks.tolist()) <= set(workers)  # a leader hands out, it runs nothing


def test_auto_is_off_on_one_node_and_recorded(tmp_path):
    attrs, _ = _attrs_and_ranks(_run(tmp_path, "auto", 2))
    assert attrs["leaders"] == "off" and attrs["leaders_reason"] == "auto: the run is on one node"
    env = {"MPIBATCH_NODE_SIZE": "1"}  # 2 pretend nodes of 1 rank: too small for a leader
    attrs, _ = _attrs_and_ranks(_run(tmp_path, "small", 2, env=env))
    assert attrs["leaders"] == "off" and "2 nodes, 1 ranks a node < 4" in attrs["leaders_reason"]


def test_failures_and_retries_match_the_flat_path(tmp_path):
    env = {"FAULT": "always", "FAULT_SLEEP": "0"}
    flat = _run(tmp_path, "f1", 1, task=FAULTY, reps=40, env=env, code=1)
    env2 = {**env, "MPIBATCH_NODE_SIZE": "2"}
    two = _run(tmp_path, "f2", 4, "--leaders", "on", task=FAULTY, reps=40, env=env2, code=1)
    got, ref = file_columns(two), file_columns(flat)
    assert got == ref and "errors/task" in got
    with h5py.File(two, "r") as f:
        assert (f["tasks/status"][()] == 2).sum() == 20
        assert len(f["errors/message"]) == 20
    env = {"FAULT": "flaky", "FAULT_SLEEP": "0", "MPIBATCH_NODE_SIZE": "2"}
    flaky = _run(
        tmp_path, "r2", 4, "--leaders", "on", "--retries", 1, task=FAULTY, reps=40, env=env
    )
    clean = _run(tmp_path, "r1", 1, task=FAULTY, reps=40, env={"FAULT": "", "FAULT_SLEEP": "0"})
    assert file_columns(flaky) == file_columns(clean)


def test_max_failures_stops_the_run_through_the_leaders(tmp_path):
    out = tmp_path / "m.h5"
    r = mpibatch(
        4,
        "run",
        FAULTY,
        "--reps",
        300,
        "--out",
        out,
        "--max-failures",
        3,
        "--schedule",
        "dynamic",
        "--leaders",
        "on",
        env={"FAULT": "always", "FAULT_SLEEP": "0.01", "MPIBATCH_NODE_SIZE": "2"},
        timeout=120,
    )
    assert r.returncode == 1, r.stderr
    assert "--max-failures 3" in r.stderr and "--resume" in r.stderr
    with h5py.File(out, "r") as f:
        status = f["tasks/status"][()]
    assert 3 <= (status == 2).sum() < 150 and (status == 0).sum() > 0


def test_a_fatal_result_on_a_leaders_rank_stops_every_rank(tmp_path):
    r = mpibatch(
        4,
        "run",
        TASKS / "mixed_types.py",
        "--reps",
        40,
        "--out",
        tmp_path / "t.h5",
        "--leaders",
        "on",
        env={"TYPES_MODE": "mean", "MPIBATCH_NODE_SIZE": "4"},
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "'m'" in line and "int" in line and "float" in line, line


def _popen(out, *extra):
    cmd = [MPIEXEC, "-n", "4", MPIBATCH, "run", str(FAULTY), "--reps", "300", "--seed", "123"]
    cmd += ["--out", str(out), "--quiet", "--leaders", "on", *map(str, extra)]
    env = {**os.environ, "FAULT": "", "FAULT_SLEEP": "0.06", "MPIBATCH_NODE_SIZE": "2"}
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _started(out) -> None:
    """Wait until rank 0 made the file, then a moment more: every rank is running tasks."""
    for _ in range(600):
        if out.exists():
            break
        time.sleep(0.1)
    time.sleep(1.5)


def test_a_sigusr1_stop_resumes_to_the_same_bytes(tmp_path):
    env = {"FAULT": "", "FAULT_SLEEP": "0"}
    ref = file_columns(_run(tmp_path, "ref", 2, task=FAULTY, reps=300, env=env))
    out = tmp_path / "s.h5"
    p = _popen(out, "--grace", 5)
    _started(out)
    p.send_signal(signal.SIGUSR1)  # to the launcher, which forwards it to every rank
    _, err = p.communicate(timeout=60)
    assert p.returncode == 3, err
    assert "stopped early (SIGUSR1" in err and "--resume" in err
    with h5py.File(out, "r") as f:
        status = f["tasks/status"][()]
        assert f.attrs["leaders"] == "on"
    assert 0 < (status == 1).sum() < 300
    env = {**env, "MPIBATCH_NODE_SIZE": "2"}
    r = mpibatch(4, "run", FAULTY, "--reps", 300, "--out", out, "--resume", "--leaders", "on",
                 env=env, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert file_columns(out) == ref


def test_a_signal_to_a_leaders_rank_stops_them_all(tmp_path):
    out = tmp_path / "one.h5"
    p = _popen(out, "--grace", 5)
    _started(out)
    signal_rank(out, 3, signal.SIGTERM)  # rank 3: led by rank 2 (pretend node 1)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 3, err
    assert "stopped early (SIGTERM on rank 3)" in err
    with h5py.File(out, "r") as f:
        status = f["tasks/status"][()]
    assert 0 < (status == 1).sum() < 300 and not np.isin(status, [2]).any()


def test_each_row_records_the_rank_that_ran_it(tmp_path):
    # flaky.py returns ctx.rank: the rank the file records for each row must be that one
    env = {"MPIBATCH_NODE_SIZE": "4"}
    out = _run(tmp_path, "who", 4, "--leaders", "on", "--schedule", "dynamic",
               task=TASKS / "flaky.py", reps=30, env=env, code=1)  # fmt: skip
    with h5py.File(out, "r") as f:
        done = f["tasks/status"][()] == 1
        ran_on, said = f["tasks/rank"][()][done], f["results/rank"][()][done]
    assert done.sum() == 120 and (ran_on == said).all()
    assert set(ran_on.tolist()) <= {0, 2, 3} and len(set(ran_on.tolist())) > 1


def test_grants_that_finish_out_of_order_keep_every_ranks_schema(tmp_path):
    # task 0 is slow: the leader's first grant stays open while its other rank finishes
    # later grants, whose reports reach rank 0 first (they must still be read right)
    env = {"SLEEPY_MS": "1", "SLEEPY_FIRST_X": "300"}
    ref = file_columns(_run(tmp_path, "one", 1, task=TASKS / "sleepy.py", reps=200, env=env))
    env = {**env, "MPIBATCH_NODE_SIZE": "4"}
    out = _run(tmp_path, "two", 4, "--leaders", "on", "--schedule", "dynamic",
               task=TASKS / "sleepy.py", reps=200, env=env)  # fmt: skip
    assert file_columns(out) == ref


def test_info_shows_the_choice(tmp_path):
    env = {"MPIBATCH_NODE_SIZE": "2"}
    out = _run(tmp_path, "info", 4, "--leaders", "on", env=env)
    r = mpibatch(None, "info", out)
    assert r.returncode == 0, r.stderr
    assert "node leaders: on (requested with --leaders on)" in r.stdout
