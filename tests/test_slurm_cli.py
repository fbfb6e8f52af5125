"""slurm/cli.py: ``mpibatch slurm`` and ``mpibatch hostfile``, in this process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mpibatch import cli
from mpibatch._say import _RANK_VARS
from mpibatch.errors import ExitCode
from mpibatch.slurm import SlurmOptions, render

STUDY = ["run", "study.py", "--reps", "10", "--seed", "1"]


@pytest.fixture(autouse=True)
def outside_a_job(monkeypatch):
    for var in os.environ:
        if var.startswith("SLURM_") or var in _RANK_VARS:
            monkeypatch.delenv(var)


def test_slurm_prints_what_render_makes(capsys):
    given = {  # every flag of a resume script, each away from its default
        "nodes": 2,
        "ntasks_per_node": 8,
        "cpus_per_task": 2,
        "max_rounds": 3,
        "signal_lead": 200,
        "grace": 30,
        "time": "02:00:00",
        "partition": "long",
        "account": "a1",
        "job_name": "j",
        "mpi": "pmix",
        "launcher": "mpiexec",
    }
    flags = [x for k, v in given.items() for x in ("--" + k.replace("_", "-"), str(v))]
    assert cli.main(["slurm", "resume", *flags, "--", *STUDY]) is ExitCode.OK
    text = capsys.readouterr().out
    assert text == render("resume", STUDY, SlurmOptions(**given)) != render("resume", STUDY)
    assert cli.main(["slurm", "gpu", "--gpus-per-node", "2", "--", *STUDY]) is ExitCode.OK
    assert capsys.readouterr().out == render("gpu", STUDY, SlurmOptions(gpus_per_node=2))
    assert cli.main(["slurm", "array", "--array", "0-7", "--", *STUDY]) is ExitCode.OK
    assert capsys.readouterr().out == render("array", STUDY, SlurmOptions(array="0-7"))


def test_slurm_submit_prints_the_job_id(tmp_path, monkeypatch, capsys):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "sbatch").write_text('#!/bin/bash\necho "$@" > sbatch.args; echo 123\n')
    (bin_ / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["slurm", "cpu", "--submit", "--", *STUDY]) is ExitCode.OK
    assert capsys.readouterr().out == "submitted batch job 123\n"
    script = (tmp_path / "sbatch.args").read_text().split()[-1]
    assert Path(script).name.startswith("mpibatch-cpu-") and script.endswith(".sbatch")
    assert (tmp_path / script).read_text() == render("cpu", STUDY)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["slurm", "cpu"], "expected the job's mpibatch command after --"),
        (["slurm", "cpu", "--nodes", "0", "--", *STUDY], "--nodes: expected an integer >= 1"),
        (["slurm", "cpu", "--time", "1h", "--", *STUDY], "--time: expected MM"),
        (["hostfile"], "expected host names, got none (not inside a Slurm job)"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, words, capsys):
    assert cli.main(argv) is ExitCode.USAGE
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("mpibatch: error: ") and err.count("\n") == 1
    assert words in err


def test_hostfile_from_arguments_and_from_the_job(monkeypatch, capsys):
    assert cli.main(["hostfile", "a", "b", "--flavor", "mpich", "--slots", "3"]) == 0
    assert capsys.readouterr().out == "a:3\nb:3\n"
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "n1,n2")
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", "2,1")
    assert cli.main(["hostfile"]) is ExitCode.OK
    assert capsys.readouterr().out == "n1 slots=2\nn2 slots=1\n"
