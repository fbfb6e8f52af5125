"""The ways users launch: mpiexec + CLI, no mpiexec, Python API, the example."""

import json

import h5py
import numpy as np
from conftest import MPIBATCH, MPIEXEC, ROOT, TASKS, mpibatch, mpirun


def test_bootstrap_example_and_info(tmp_path):
    out = tmp_path / "bootstrap.h5"
    r = mpibatch(
        2, "run", ROOT / "examples" / "bootstrap.py", "--reps", 2, "--seed", 42, "--out", out
    )
    assert r.returncode == 0, r.stderr
    assert "12 tasks: 12 done, 0 failed, 0 pending on 2 ranks" in r.stdout
    with h5py.File(out, "r") as f:
        assert f["results/ci"].shape == (12, 2)
        assert (f["results/ci"][:, 0] < f["results/ci"][:, 1]).all()
        assert f["params/stat"].asstr()[:4].tolist() == ["mean", "mean", "median", "median"]
        assert f["params/n"][()].tolist()[::4] == [100, 1000, 10000]
    info = mpibatch(None, "info", out)
    assert info.returncode == 0
    for words in (
        "done 12, failed 0, pending 0",
        "ranks: 2 on 1 host(s)",
        "parallel efficiency",
        "slowest tasks:",
        "reproduce: mpiexec -n 2 mpibatch run",
        "--seed 42",
    ):
        assert words in info.stdout, words


def test_reproduce_command_recreates_identical_results(tmp_path):
    out = tmp_path / "a.h5"
    mpibatch(2, "run", TASKS / "mixed.py", "--grid", "mu=1,2", "--reps", 3, "--out", out)
    with h5py.File(out, "r") as f:
        cmd = f.attrs["command"].split()
        first = f["results/draws"][()]
    assert cmd[:3] == ["mpiexec", "-n", "2"]
    cmd[cmd.index("--out") + 1] = str(tmp_path / "b.h5")
    tools = {"mpiexec": MPIEXEC, "mpibatch": MPIBATCH}
    r = mpirun(None, *[tools.get(c, c) for c in cmd])
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "b.h5", "r") as f:
        assert f["results/draws"][()].tobytes() == first.tobytes()


def test_runs_as_one_rank_without_mpiexec(tmp_path):
    out = tmp_path / "single.h5"
    r = mpibatch(None, "run", TASKS / "mixed.py", "--reps", 2, "--seed", 1, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "on 1 rank in" in r.stdout
    with h5py.File(out, "r") as f:
        assert f.attrs["n_ranks"] == 1 and (f["tasks/status"][()] == 1).all()


def test_python_api_returns_a_summary_on_rank_0_only(tmp_path):
    import sys

    out = tmp_path / "api.h5"
    r = mpirun(3, sys.executable, ROOT / "tests" / "mpi" / "api_script.py", out)
    assert r.returncode == 0, r.stderr
    assert "rank 0 summary Summary" in r.stdout
    assert "rank 1 summary NoneType" in r.stdout and "rank 2 summary NoneType" in r.stdout
    assert "zipped [1, 1, 1, 1] ['u', 'u', 'u', 'u']" in r.stdout


def test_blas_is_single_threaded_per_rank_and_recorded(tmp_path):
    out = tmp_path / "blas.h5"
    r = mpibatch(
        2, "run", TASKS / "blas.py", "--reps", 4, "--out", out, env={"OMP_NUM_THREADS": "8"}
    )
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert (f["results/omp_env"][()] == 1).all()
        assert (f["results/max_threads"][()] == 1).all()
        blas = [json.loads(s) for s in f["ranks/blas"].asstr()[()]]
        assert len(blas) == 2 and all(d["num_threads"] == 1 for lib in blas for d in lib)
        assert f.attrs["threads_per_rank"] == 1


def test_threads_per_rank_sets_the_limit(tmp_path):
    out = tmp_path / "blas2.h5"
    r = mpibatch(1, "run", TASKS / "blas.py", "--threads-per-rank", 2, "--out", out)
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert f["results/omp_env"][0] == 2
        assert f["results/max_threads"][0] <= 2


def test_dry_run_prints_tasks_and_writes_nothing(tmp_path):
    r = mpibatch(
        2,
        "run",
        ROOT / "examples" / "bootstrap.py",
        "--reps",
        10,
        "--dry-run",
        "--seed",
        3,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("grid: 3 x 2 (n, stat) x 10 reps = 60 tasks") == 1
    assert "       0  n=100 stat='mean' rep=0" in r.stdout
    assert "      59  n=10000 stat='median' rep=9" in r.stdout
    assert not list(tmp_path.iterdir())


def test_attributes_record_what_reproduces_the_run(tmp_path):
    out = tmp_path / "attrs.h5"
    mpibatch(2, "run", TASKS / "mixed.py", "--seed", 5, "--out", out, "--quiet")
    with h5py.File(out, "r") as f:
        a = dict(f.attrs)
    for key in (
        "seed",
        "streams",
        "schedule",
        "n_ranks",
        "task_file",
        "task_file_sha256",
        "function",
        "argv",
        "grid",
        "mpibatch_version",
        "numpy_version",
        "mpi4py_version",
        "h5py_version",
        "hdf5_version",
        "mpi_library",
        "hosts",
        "start_time",
        "end_time",
        "wall_seconds",
    ):
        assert key in a, key
    assert a["seed"] == 5 and a["n_ranks"] == 2 and "MPICH" in a["mpi_library"]
    assert len(a["task_file_sha256"]) == 64
    assert np.isfinite(a["wall_seconds"])


def test_info_reports_balance_and_plot_draws_the_timeline(tmp_path):
    out = tmp_path / "t.h5"
    r = mpibatch(2, "run", TASKS / "mixed.py", "--reps", 5, "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    info = mpibatch(None, "info", out).stdout
    for words in ("load imbalance:", "idle:", "dispatch:", "schedule used:"):
        assert words in info, words
    r = mpibatch(None, "plot", out, "-o", tmp_path / "t.png")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_more_ranks_than_tasks(tmp_path):
    out = tmp_path / "few.h5"
    r = mpibatch(
        4,
        "run",
        TASKS / "mixed.py",
        "--grid",
        "mu=1",
        "--grid",
        "kind=a",
        "--reps",
        2,
        "--out",
        out,
    )
    assert r.returncode == 0, r.stderr
    assert "2 tasks: 2 done" in r.stdout


def test_info_shows_the_blas_threads_and_where_ranks_ran(tmp_path):
    out = tmp_path / "b.h5"
    assert mpibatch(2, "run", TASKS / "blas.py", "--out", out, "--quiet").returncode == 0
    info = mpibatch(None, "info", out).stdout
    assert "BLAS on rank 0: openblas 1 thread(s)" in info
    assert "ranks 0-1 (cores " in info and "note: every rank is on one host" in info


def test_only_rank_0_imports_h5py(tmp_path):
    # every rank importing h5py (and libhdf5) costs start-up, from shared filesystems too
    task = tmp_path / "mods.py"
    task.write_text(
        "import sys\n\n"
        "def task(params, rng, ctx):\n"
        "    return {'h5py': int('h5py' in sys.modules), 'rank': ctx.rank}\n"
    )
    out = tmp_path / "m.h5"
    r = mpibatch(
        3, "run", task, "--reps", 30, "--schedule", "dynamic", "--block-size", 1, "--out", out
    )
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        ranks, loaded = f["results/rank"][()], f["results/h5py"][()]
    assert set(ranks.tolist()) == {0, 1, 2}
    assert loaded[ranks == 0].all() and not loaded[ranks != 0].any()
