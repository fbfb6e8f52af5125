"""RunOptions: one typed value that mpibatch.run and the CLI both build."""

import dataclasses
from pathlib import Path

import pytest

import mpibatch
from mpibatch import cli, engine
from mpibatch._config import SETTINGS, env_name
from mpibatch.errors import UsageError
from mpibatch.options import RunOptions

TASKS = Path(__file__).parent / "mpi" / "tasks"  # not from conftest: tests/slurm has one too

BOOT = str(TASKS / "mixed.py")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in SETTINGS:
        monkeypatch.delenv(env_name(name), raising=False)
    for var in cli.THREAD_VARS:  # the CLI sets them: monkeypatch puts them back
        monkeypatch.setenv(var, "1")


@pytest.fixture
def started(monkeypatch):
    """The RunOptions each call handed to engine.start (nothing is run)."""
    seen = []
    monkeypatch.setattr(engine, "start", lambda options, comm=None: seen.append(options))
    return seen


def test_the_cli_and_run_build_the_same_options(started):
    flags = ["--reps", "3", "--seed", "7", "--schedule", "dynamic", "--block-size", "4"]
    flags += ["--time-limit", "1-12", "--grace", "5", "--retries", "2", "--dedicated-root"]
    flags += ["--root-tasks", "main", "--gpus", "none", "--tasks", "0:4", "--quiet"]
    assert cli.main(["run", BOOT, *flags, "--out", "x.h5"]) == 0
    mpibatch.run(
        BOOT,
        reps=3,
        seed=7,
        schedule="dynamic",
        block_size=4,
        time_limit="1-12",
        grace=5.0,
        retries=2,
        dedicated_root=True,
        root_tasks="main",
        gpus="none",
        tasks="0:4",
        quiet=True,
        out="x.h5",
    )
    from_cli, from_api = started
    assert dataclasses.replace(from_cli, argv=None) == from_api
    assert from_cli.argv[:2] == ("mpibatch", "run")


def test_flags_left_out_stay_unset_so_the_environment_applies(started):
    cli.main(["run", BOOT])
    (options,) = started
    assert options.out == "mixed.h5"  # the task file's name
    for name in SETTINGS.keys() & {f.name for f in dataclasses.fields(RunOptions)}:
        assert getattr(options, name) is None, name


def test_options_are_frozen():
    options = RunOptions(task=BOOT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.seed = 3  # type: ignore[misc]


def test_resolved_fills_in_keyword_then_environment_then_default(monkeypatch):
    monkeypatch.setenv("MPIBATCH_QUIET", "on")
    monkeypatch.setenv("MPIBATCH_TIME_LIMIT", "30")
    options = RunOptions(task=BOOT, grace=2, quiet=False).resolved(n_ranks=1)
    assert options.grace == 2.0 and options.quiet is False  # keywords win
    assert options.time_limit == 1800.0  # a Slurm time: 30 minutes
    assert (options.schedule, options.flush_seconds, options.retries) == ("auto", 30.0, 0)
    assert options.seed is None and options.streams is None  # the resumed file's, else fresh
    assert RunOptions(task=BOOT).resolved(1).quiet is True


def test_resolved_checks_every_setting_including_those_read_elsewhere(monkeypatch):
    monkeypatch.setenv("MPIBATCH_PROGRESS_SECONDS", "0")
    with pytest.raises(UsageError, match="^MPIBATCH_PROGRESS_SECONDS: "):
        RunOptions(task=BOOT).resolved(2)
    monkeypatch.delenv("MPIBATCH_PROGRESS_SECONDS")
    with pytest.raises(UsageError, match="at least 2 ranks, got 1"):
        RunOptions(task=BOOT, dedicated_root=True).resolved(1)
    assert RunOptions(task=BOOT, dedicated_root=True).resolved(2).dedicated_root is True
