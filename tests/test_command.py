"""Commands as tasks (``--command``), in this process: templates, spellings, results, errors."""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import stat
from pathlib import Path

import h5py
import numpy as np
import pytest
from procs import process_gone

import mpibatch
from mpibatch import _command, cli
from mpibatch._command import CommandFailed, CommandSpec, CommandTask, execute, parse
from mpibatch.errors import UsageError
from mpibatch.grid import Grid
from mpibatch.rerun import rerun
from mpibatch.slurm.script import split_command

EXP = """#!/bin/sh
# exp.sh SIZE LR SEED: writes its arguments and folder to args.txt where it runs
printf '%s\\n' "$@" > args.txt
pwd >> args.txt
echo "working on size=$1" >&2
if [ "$1" = "300" ]; then echo "size 300 diverged" >&2; exit 3; fi
echo "not the last line"
echo "{\\"size\\": $1, \\"seed\\": $3, \\"curve\\": [$1, 1.5]}"
"""


def _program(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Commands run in the current folder: make it the test's own."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def exp(tmp_path) -> Path:
    return _program(tmp_path, "exp.sh", EXP)


def _task(template: str, grid: Grid, **kw) -> CommandTask:
    task = CommandTask(CommandSpec(template, **kw))
    task.bind(grid)
    return task


# ---- templates ----


def test_a_template_is_split_as_the_shell_would_and_each_word_filled_alone():
    task = _task("echo --name '{who} x' --lr={lr}", Grid.from_spec(["who=a b", "lr=1e-3"]))
    argv = task.argv({"who": "a b", "lr": 0.001}, {"who": "a b", "lr": "1e-3"})
    assert argv == ["echo", "--name", "a b x", "--lr=1e-3"]


def test_a_format_spec_formats_the_number_and_no_spec_keeps_the_typed_text():
    task = _task("echo {lr} {lr:.1e} {lr!r} {{literal}}", Grid.from_spec(["lr=1e-3"]))
    assert task.argv({"lr": 0.001}, {"lr": "1e-3"}) == [
        "echo",
        "1e-3",
        "1.0e-03",
        "0.001",
        "{literal}",
    ]


def test_with_shell_the_line_is_one_word_and_values_are_quoted():
    task = _task("echo {s} | wc -c", Grid({"s": ["a b; rm -rf /"]}), shell=True)
    assert task.argv({"s": "a b; rm -rf /"}, {"s": "a b; rm -rf /"}) == [
        "echo 'a b; rm -rf /' | wc -c"
    ]


@pytest.mark.parametrize(
    "template, words",
    [
        ("prog 'unclosed", "matched quotes and braces"),
        ("prog {lr", "matched quotes and braces"),
        ("prog {}", "fields such as {lr}"),
        ("prog {0}", "fields such as {lr}"),
        ("prog {lr.real}", "fields such as {lr}"),
        ("   ", "a command line"),
    ],
)
def test_bad_templates_are_one_line_usage_errors(template, words):
    with pytest.raises(UsageError, match=words) as info:
        parse(template)
    assert "\n" not in str(info.value)


def test_an_unknown_field_names_every_known_one(exp):
    task = _task(f"{exp} {{size}} {{lrate}}", Grid.from_spec(["size=1", "lr=1e-3"]))
    with pytest.raises(UsageError) as info:
        _command.check_fields(task, Grid.from_spec(["size=1", "lr=1e-3"]))
    text = str(info.value)
    assert "unknown field {lrate}" in text
    assert "{size}, {lr}, {rep}, {task}, {seed}, {out_dir}" in text


def test_an_axis_named_like_a_task_field_is_refused(exp):
    task = _task(f"{exp} {{seed}}", Grid({"seed": [1, 2]}))
    with pytest.raises(UsageError, match="axis names other than rep, task, seed, out_dir"):
        _command.check_fields(task, Grid({"seed": [1, 2]}))


def test_a_missing_program_is_refused_before_any_task(tmp_path):
    with pytest.raises(UsageError, match="expected an executable program"):
        CommandTask(CommandSpec(str(tmp_path / "nope") + " {x}"))
    not_executable = tmp_path / "plain.sh"
    not_executable.write_text("echo hi\n")
    with pytest.raises(UsageError, match="not executable"):
        CommandTask(CommandSpec(f"{not_executable} {{x}}"))
    CommandTask(CommandSpec("{prog} --x 1"))  # a program given by a field: checked when it runs


# ---- running one command ----


def test_the_json_last_line_becomes_results_with_the_returncode(exp, tmp_path):
    out = execute([str(exp), "150", "1e-3", "7"], False, tmp_path, None)
    assert out == {"size": 150, "seed": 7, "curve": [150, 1.5], "returncode": 0}


def test_a_json_null_is_nan():
    out = execute(["echo", '{"loss": null, "n": 2}'], False, None, None)
    assert np.isnan(out["loss"]) and out["n"] == 2


def test_output_without_a_json_last_line_is_just_the_returncode(tmp_path):
    assert execute(["echo", "hello"], False, None, None) == {"returncode": 0}
    assert execute(["echo", "[1, 2]"], False, None, None) == {"returncode": 0}  # not an object


def test_a_last_line_that_looks_like_json_but_is_not_fails_the_task():
    with pytest.raises(ValueError, match="starts with '\\{' but is not JSON"):
        execute(["echo", "{loss: 1}"], False, None, None)


def test_a_nonzero_exit_fails_with_the_last_twenty_lines_of_stderr():
    script = "for i in $(seq 1 30); do echo line$i >&2; done; exit 4"
    with pytest.raises(CommandFailed) as info:
        execute(["sh", "-c", script], False, None, None)
    exc = info.value
    assert str(exc) == "exit code 4: line30"
    assert "line11\n" in exc.report and "line30\n" in exc.report
    assert "line10\n" not in exc.report
    assert exc.report.startswith("$ sh -c ")


def test_a_command_killed_by_a_signal_says_which():
    with pytest.raises(CommandFailed, match="killed by SIGKILL"):
        execute(["sh", "-c", "kill -9 $$"], False, None, None)


def test_keep_output_writes_both_streams_and_still_reads_the_results(exp, tmp_path):
    files = (tmp_path / "t.out", tmp_path / "t.err")
    out = execute([str(exp), "200", "1e-4", "3"], False, tmp_path, files)
    assert out["size"] == 200
    assert files[0].read_text().splitlines()[0] == "not the last line"
    assert files[1].read_text() == "working on size=200\n"


def test_an_exception_while_waiting_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"

    def alarm(signum, frame):
        raise TimeoutError("interrupted")

    before = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(TimeoutError):
            execute(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], False, None, None)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
    assert process_gone(int(pidfile.read_text()), 10)


# ---- whole runs in this process (one rank) ----


def test_run_command_records_results_params_and_typed_values(exp, tmp_path):
    out = tmp_path / "sweep.h5"
    grid = Grid.from_spec(["size=150,300", "lr=1e-3,1e-5"])
    s = mpibatch.run(
        command=f"{exp} {{size}} {{lr}} {{seed}}", grid=grid, seed=5, out=out, task_dir=True
    )
    assert (s.done, s.failed) == (2, 2)
    res = mpibatch.open(out)
    assert res.params["lr"].tolist() == [0.001, 1e-5, 0.001, 1e-5]
    assert res.results["returncode"][:2].tolist() == [0, 0]
    args = (Path(str(out) + ".tasks") / "000001" / "args.txt").read_text().split("\n")
    assert args[:2] == ["150", "1e-5"]  # as typed, not 1e-05
    assert args[3] == str(Path(str(out) + ".tasks").absolute() / "000001")  # its own folder
    seed = int(args[2])
    assert res.results["seed"][1] == seed
    assert seed == np.random.Generator(np.random.PCG64(5).jumped(1)).integers(2**63)
    assert "size 300 diverged" in res.errors["message"][0]
    attrs = res.attrs
    assert attrs["command_template"] == f"{exp} {{size}} {{lr}} {{seed}}"
    assert json.loads(attrs["command_options"])["task_dir"] is True
    words = shlex.split(attrs["command"])
    assert words[words.index("--command") + 1] == attrs["command_template"]
    assert "--task-dir" in words and "--grid=lr=1e-3,1e-5" in words


def test_rerun_runs_a_command_task_again_and_compares(exp, tmp_path):
    out = tmp_path / "r.h5"
    mpibatch.run(command=f"{exp} {{size}} 1 {{seed}}", grid={"size": [150, 300]}, seed=2, out=out)
    text = io.StringIO()
    assert rerun(str(out), 0, out=text) == 0
    assert "matches the stored result" in text.getvalue()
    text = io.StringIO()
    assert rerun(str(out), 1, out=text) == 1  # it failed, and fails again
    assert "(the same error)" in text.getvalue() and "size 300 diverged" in text.getvalue()
    exp.write_text(EXP + "# edited\n")
    with pytest.raises(UsageError, match="changed since the run"):
        rerun(str(out), 0, out=io.StringIO())


def test_keep_output_files_are_named_after_the_results_file(exp, tmp_path):
    out = tmp_path / "k.h5"
    mpibatch.run(command=f"{exp} {{size}} 1 0", grid={"size": [150]}, out=out, keep_output=True)
    folder = Path(str(out) + ".output")
    assert (folder / "000000.err").read_text() == "working on size=150\n"
    assert (folder / "000000.out").read_text().endswith('"curve": [150, 1.5]}\n')


def test_shell_commands_run_under_sh(tmp_path):
    out = tmp_path / "sh.h5"
    s = mpibatch.run(
        command="echo '{{\"n\": '{n}'}}' | cat", grid={"n": [1, 2]}, shell=True, out=out
    )
    assert s.done == 2
    assert mpibatch.open(out).results["n"].tolist() == [1, 2]


def test_a_task_file_and_a_command_together_or_neither_are_refused(exp, tmp_path):
    with pytest.raises(UsageError, match="got both"):
        mpibatch.run(lambda p, r: 1.0, command=f"{exp}", out=tmp_path / "x.h5")
    with pytest.raises(UsageError, match="task: expected a function"):
        mpibatch.run(out=tmp_path / "x.h5")


def test_resume_refuses_another_command(exp, tmp_path):
    out = tmp_path / "c.h5"
    mpibatch.run(command=f"{exp} {{size}} 1 0", grid={"size": [300]}, seed=1, out=out)
    with pytest.raises(UsageError, match="the command differs"):
        mpibatch.run(command=f"{exp} {{size}} 2 0", grid={"size": [300]}, out=out, resume=True)


# ---- the command line ----


@pytest.fixture
def cli_env(monkeypatch):
    """``mpibatch run`` sets the BLAS thread variables: undo that after the test."""
    for var in cli.THREAD_VARS:
        monkeypatch.setenv(var, os.environ.get(var, "1"))


def test_the_cli_needs_a_file_or_a_command(capsys, cli_env):
    assert cli.main(["run"]) == 2
    assert "expected a task FILE or --command TEMPLATE, got neither" in capsys.readouterr().err
    assert cli.main(["run", "x.py", "--command", "echo"]) == 2
    assert "got both" in capsys.readouterr().err


def test_the_cli_runs_a_command_and_names_the_file_after_the_program(
    exp, tmp_path, capsys, cli_env
):
    code = cli.main(
        ["run", "--command", "./exp.sh {size} {lr} 0", "--grid", "size=150", "--grid", "lr=1e-3"]
    )
    assert code == 0, capsys.readouterr().err
    with h5py.File(tmp_path / "exp.h5", "r") as f:
        assert f["results/size"][()].tolist() == [150]
        assert f.attrs["task_file"] == str(exp)


def test_an_unknown_field_from_the_cli_is_one_line_before_any_task(tmp_path, capsys, cli_env):
    out = tmp_path / "u.h5"
    assert cli.main(["run", "--command", "echo {nope}", "--grid", "x=1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown field {nope}" in err and "{x}, {rep}" in err
    assert not out.exists()


def test_slurm_scripts_keep_the_command_as_one_quoted_word():
    study, out = split_command("cpu", ["run", "--command", "./exp.sh {a} 'b c'", "--seed", "1"])
    assert study == ["--command", "./exp.sh {a} 'b c'", "--seed", "1"]
    assert out == "exp.h5"


def test_dry_run_shows_the_command(tmp_path, capsys, cli_env):
    args = ["run", "--command", "echo {x}", "--grid", "x=1e-3", "--dry-run"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("command: echo {x}\n") and "grid: 1 (x) x 1 rep = 1 task" in out


def test_resume_refuses_an_edited_program_unless_forced(exp, tmp_path):
    out = tmp_path / "e.h5"
    grid = {"size": [300]}
    mpibatch.run(command=f"{exp} {{size}} 1 0", grid=grid, seed=1, out=out)
    exp.write_text(EXP.replace("size 300 diverged", "size 300 diverged again"))
    with pytest.raises(UsageError, match="task file .* changed since the run|pass --force"):
        mpibatch.run(command=f"{exp} {{size}} 1 0", grid=grid, out=out, resume=True)
    s = mpibatch.run(command=f"{exp} {{size}} 1 0", grid=grid, out=out, resume=True, force=True)
    assert s.failed == 1
    assert "diverged again" in mpibatch.open(out).errors["message"][0]


def test_resume_of_a_command_run_needs_the_grid_typed_as_before(exp, tmp_path):
    out = tmp_path / "t.h5"
    command = f"{exp} {{size}} {{lr}} 0"
    mpibatch.run(command=command, grid=Grid.from_spec(["size=300", "lr=1e-3"]), seed=1, out=out)
    with pytest.raises(UsageError, match="typed differently .*lr=1e-3.*lr=0.001"):
        mpibatch.run(command=command, grid=Grid.from_spec(["size=300", "lr=0.001"]), out=out,
                     resume=True)  # fmt: skip
    s = mpibatch.run(
        command=command, grid=Grid.from_spec(["size=300", "lr=1e-3"]), out=out, resume=True
    )
    assert s.failed == 1  # ran again: it diverges at size 300
