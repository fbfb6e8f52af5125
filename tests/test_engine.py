"""The Python API in this process (a single MPI rank)."""

import numpy as np
import pytest

import mpibatch
from mpibatch.errors import UsageError
from mpibatch.streams import task_generator


def task(params, rng):
    return rng.normal(params["mu"])


def test_run_returns_a_summary_and_open_reads_it(tmp_path):
    out = tmp_path / "r.h5"
    s = mpibatch.run(task, {"mu": [0.0, 5.0]}, reps=3, seed=8, out=out)
    assert (s.n_tasks, s.done, s.failed, s.pending, s.n_ranks) == (6, 6, 0, 0, 1)
    assert "6 tasks: 6 done" in str(s)
    res = mpibatch.open(out)
    assert res.results["value"][4] == task_generator(8, 4).normal(5.0)
    assert res.params["mu"].tolist() == [0.0] * 3 + [5.0] * 3
    assert res.attrs["function"].endswith(":task")


def test_dry_run_returns_the_plan_without_writing(tmp_path):
    plan = mpibatch.run(task, {"mu": [1.0]}, reps=4, seed=1, out=tmp_path / "x.h5", dry_run=True)
    assert isinstance(plan, mpibatch.Plan)
    assert plan.id_range == range(4) and plan.seed == 1
    assert not (tmp_path / "x.h5").exists()


def test_summary_is_built_with_keywords_only():
    with pytest.raises(TypeError):
        mpibatch.Summary("r.h5", 1, 1, 0, 1, 1.0, 1.0)  # type: ignore[misc]
    s = mpibatch.Summary(
        path="r.h5", n_tasks=4, done=2, failed=1, n_ranks=2, wall_seconds=1.0, task_seconds=1.0
    )
    assert s.pending == 1 and s.efficiency == 0.5


def test_a_time_limit_string_is_a_slurm_time(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)  # else the job's end is the deadline
    plan = mpibatch.run(task, {"mu": [1.0]}, out=tmp_path / "x.h5", time_limit="1-12", dry_run=True)
    assert plan.deadline - plan.session_t0 == pytest.approx(129_600)
    plan = mpibatch.run(task, {"mu": [1.0]}, out=tmp_path / "x.h5", time_limit=90, dry_run=True)
    assert plan.deadline - plan.session_t0 == pytest.approx(90)  # a number: seconds


def test_seed_comes_from_the_environment_then_is_drawn_and_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("MPIBATCH_SEED", "77")
    mpibatch.run(task, {"mu": [1.0]}, out=tmp_path / "a.h5")
    assert mpibatch.open(tmp_path / "a.h5").attrs["seed"] == 77
    monkeypatch.delenv("MPIBATCH_SEED")
    mpibatch.run(task, {"mu": [1.0]}, out=tmp_path / "b.h5")
    seed = mpibatch.open(tmp_path / "b.h5").attrs["seed"]
    assert isinstance(seed, int) and seed >= 0


def test_bad_arguments_raise_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="expected an output file path"):
        mpibatch.run(task, {"mu": [1.0]})
    with pytest.raises(UsageError, match="expected a function or a task file path"):
        mpibatch.run(42, out=tmp_path / "x.h5")
    with pytest.raises(UsageError, match="reps"):
        mpibatch.run(task, {"mu": [1.0]}, reps=0, out=tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


def test_pandas_frame_has_params_and_scalar_results(tmp_path):
    pd = pytest.importorskip("pandas")
    mpibatch.run(task, {"mu": [0.0, 1.0]}, reps=2, seed=3, out=tmp_path / "p.h5")
    df = mpibatch.open(tmp_path / "p.h5").to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns[:3]) == ["mu", "rep", "value"] and len(df) == 4
    assert np.isfinite(df["value"]).all()


def test_a_rank_with_another_environment_fails_the_launch_naming_its_host():
    from mpibatch._plan import Plan
    from mpibatch._prepare import launch_check as _launch_check

    plan = Plan(
        grid_json="{}",
        seed=1,
        streams="task",
        schedule="auto",
        ids=(0, 1),
        threads=1,
        gather_bytes=1,
        quiet=True,
        t0=0.0,
        session_t0=0.0,
    )
    import sys

    import mpibatch

    plan.attrs = {
        "python_version": sys.version.split()[0],
        "mpibatch_version": mpibatch.__version__,
        "task_file_sha256": "aaa",
    }
    assert _launch_check(plan, {"task_file_sha256": "aaa"}) is None
    err = _launch_check(plan, {"task_file_sha256": "bbb"})
    assert "task file" in str(err) and "'bbb' but rank 0 has 'aaa'" in str(err)
    assert "rank on " in str(err) and "shared filesystem" in str(err)


def test_resume_says_how_the_grid_differs():
    from mpibatch._resume import grid_difference
    from mpibatch.grid import Grid

    def diff(a, b):
        return grid_difference(a.to_json(), b.to_json())

    assert diff(Grid({"n": [1, 2]}, reps=10), Grid({"n": [1, 2]}, reps=20)) == (
        " (file: 10 reps, now: 20)"
    )
    assert diff(Grid({"n": [1]}), Grid({"m": [1]})) == " (file: axes n; now: m)"
    assert "n = 5 values: 1, 2, 3, 4, ...; now: 2 values: 1, 2" in diff(
        Grid({"n": [1, 2, 3, 4, 5]}), Grid({"n": [1, 2]})
    )
    assert "zipped" in diff(Grid({"a": [1], "b": [2]}), Grid(Grid.zip(a=[1], b=[2])))
