"""slurm/cli.py: ``mpibatch slurm`` and ``mpibatch hostfile``, in this process."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from mpibatch import _launch, cli
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
    assert cli.main(["hostfile", "--flavor", "openmpi"]) is ExitCode.OK
    assert capsys.readouterr().out == "n1 slots=2\nn2 slots=1\n"


def _mpi4py_spelling() -> tuple[str, str]:
    """(flavor, "a:2" or "a slots=2") of the MPI mpi4py loads here (the mpich wheel, or
    MPI4PY_LIBMPI's), read from the library itself."""
    library = _launch.mpi4py_library()
    if "Open MPI" in library:
        return "openmpi", "a slots=2\n"
    assert "MPICH" in library or "MPI Library" in library, library
    return "mpich", "a:2\n"


def test_hostfile_writes_the_spelling_of_mpi4pys_mpi_by_default(capsys):
    flavor, line = _mpi4py_spelling()
    assert cli.main(["hostfile", "a", "--slots", "2"]) is ExitCode.OK
    assert capsys.readouterr().out == line
    other = "openmpi" if flavor == "mpich" else "mpich"
    assert cli.main(["hostfile", "a", "--slots", "2", "--flavor", other]) is ExitCode.OK
    assert capsys.readouterr().out != line


def test_hostfile_merges_a_host_named_twice(capsys):
    assert cli.main(["hostfile", "a", "b", "a", "--slots", "2", "--flavor", "openmpi"]) == 0
    assert capsys.readouterr().out == "a slots=4\nb slots=2\n"


@pytest.mark.parametrize(
    "flavor, out", [("mpich", "n1:6\nn2:1\n"), ("openmpi", "n1 slots=6\nn2 slots=1\n")]
)
def test_hostfile_from_converts_either_spelling(tmp_path, capsys, flavor, out):
    for text in (
        "# RL slides\nn1 slots=4\nn2 slots=1 # login\nn1 slots=2\n",
        "n1:4\nn2:1\n\nn1:2\n",
    ):
        (tmp_path / "in").write_text(text)
        assert cli.main(["hostfile", "--from", str(tmp_path / "in"), "--flavor", flavor]) == 0
        assert capsys.readouterr().out == out


def test_hostfile_from_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("x slots=3\n"))
    assert cli.main(["hostfile", "--from", "-", "--flavor", "mpich"]) == 0
    assert capsys.readouterr().out == "x:3\n"


def test_hostfile_check_says_it_fits(tmp_path, capsys):
    _, line = _mpi4py_spelling()
    (tmp_path / "h").write_text("# two of them\n" + line + line.replace("a", "b"))
    assert cli.main(["hostfile", "--check", str(tmp_path / "h")]) is ExitCode.OK
    mpi = _launch.short_library(_launch.mpi4py_library())
    assert capsys.readouterr().out == f"{tmp_path / 'h'} fits {mpi}'s mpiexec: 2 hosts, 4 slots\n"


@pytest.mark.parametrize(
    "text, flavor, words",
    [
        ("n1 slots=4\n", "mpich", "line 1 'n1 slots=4' is the Open MPI spelling"),
        ("n1:4\n", "openmpi", "line 1 'n1:4' is the MPICH (Hydra) spelling"),
        ("n1:4 # big\n", "mpich", "line 1 has '#' after a host"),
        ("n1 slots=2\nn1 slots=2\n", "openmpi", "host 'n1' is on 2 lines"),
        ("n1:4\nn2 = 4\n", "mpich", "line 2: expected HOST, HOST:N (MPICH) or HOST slots=N"),
    ],
)
def test_hostfile_check_refuses_in_one_line(tmp_path, capsys, text, flavor, words):
    path = tmp_path / "hosts"
    path.write_text(text)
    assert cli.main(["hostfile", "--check", str(path), "--flavor", flavor]) is ExitCode.USAGE
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("mpibatch: error: ") and err.count("\n") == 1
    assert words in err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["hostfile", "a", "--from", "h"], "expected --from/--check FILE or HOST names"),
        (["hostfile", "--slots", "2", "--check", "h"], "got both; drop --slots"),
        (["hostfile", "--from", "/no/such/file"], "expected a readable host file"),
    ],
)
def test_hostfile_bad_sources_are_one_line(argv, words, capsys):
    assert cli.main([*argv, "--flavor", "mpich"]) is ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
