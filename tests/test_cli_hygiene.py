"""CLI hygiene, in this process: a long flag is taken only when spelled in full (argparse
would silently read ``--ranks 2`` as ``--ranks-per-gpu 2``), and counts are said with the
right plural ("1 task", not "1 tasks")."""

from __future__ import annotations

import argparse

import pytest

from mpibatch import cli, schedule
from mpibatch._say import plural
from mpibatch.errors import UsageError


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: p for a in actions for name, p in a.choices.items()}


def _cut_flags() -> list[tuple[str, str, str]]:
    """(subcommand, flag, its shortest unique start) for every long flag that has one:
    what argparse's default (allow_abbrev=True) took as that flag."""
    out = []
    for name, sub in _subparsers(cli._parser()).items():
        flags = [f for f in sub._option_string_actions if f.startswith("--")]
        for flag in flags:
            for k in range(3, len(flag)):
                if [f for f in flags if f.startswith(flag[:k])] == [flag]:
                    out.append((name, flag, flag[:k]))
                    break
    return out


CUT = _cut_flags()


def test_every_parser_and_subparser_refuses_abbreviations():
    parser = cli._parser()
    subs = _subparsers(parser)
    assert {"run", "slurm", "hostfile", "info", "errors", "plot", "merge", "rerun"} <= set(subs)
    assert parser.allow_abbrev is False
    assert {name: p.allow_abbrev for name, p in subs.items()} == dict.fromkeys(subs, False)


def test_every_subcommand_has_flags_argparse_used_to_take_cut_short():
    assert {name for name, _, _ in CUT} >= {"run", "slurm", "hostfile", "errors", "merge"}
    assert ("run", "--ranks-per-gpu", "--ra") in CUT  # the case that was read silently
    for name, flag, cut in CUT:  # each was accepted before: argparse's default takes it
        sub = _subparsers(cli._parser())[name]
        old = argparse.ArgumentParser(allow_abbrev=True, add_help=False)
        for action in sub._actions:
            if action.option_strings:
                old.add_argument(*action.option_strings, nargs="?", dest=action.dest)
        args, rest = old.parse_known_args([cut, "x"])
        assert rest == [] and getattr(args, sub._option_string_actions[flag].dest) == "x"


@pytest.mark.parametrize(("command", "flag", "cut"), CUT, ids=[f"{c} {x}" for c, _, x in CUT])
def test_a_cut_short_flag_is_one_line_naming_the_full_one(command, flag, cut, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, cut, "2"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"mpibatch: error: {cut}: expected a flag spelled in full")
    assert flag in err and f"see mpibatch {command} --help" in err


def test_ranks_2_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.py").write_text("def task(params, rng):\n    return {'x': 1.0}\n")
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "study.py", "--ranks", "2"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--ranks: expected a flag spelled in full, got the start of --ranks-per-gpu" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.py"]  # no file was made


def test_several_flags_sharing_the_start_are_all_named(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "study.py", "--re", "2"])
    err = capsys.readouterr().err
    assert "got the start of --reps or --results or --resume or --retries" in err


def test_full_flags_and_the_words_after_double_dash_still_pass(capsys):
    args = cli._parser().parse_args(["run", "study.py", "--reps", "2", "--ranks-per-gpu=3"])
    assert (args.reps, args.ranks_per_gpu) == (2, 3)
    argv, command = cli.split_slurm_command(["slurm", "cpu", "--", "run", "s.py", "--re", "2"])
    assert cli._parser().parse_args(argv).kind == "cpu" and command[-2:] == ["--re", "2"]
    args = cli._parser().parse_args(["run", "--command", "./prog", "--", "--rep"])
    assert args.file == "--rep"  # after --, a word is a value, not a flag


def test_plural():
    assert [plural(n, "rank") for n in (0, 1, 2)] == ["0 ranks", "1 rank", "2 ranks"]
    assert plural(1, "axis", "axes") == "1 axis" and plural(3, "axis", "axes") == "3 axes"
    assert plural(1000, "task", spec=",") == "1,000 tasks"


class _Result:
    failed, pending, stopped, path, resume_command = 1, 1, "SIGTERM", "o.h5", "mpibatch run"

    def __str__(self) -> str:
        return "summary"


def test_one_failed_task_and_one_left_are_singular(capsys):
    assert cli._report_run(_Result(), quiet=False) == 3
    out, err = capsys.readouterr()
    assert "1 task failed; their tracebacks: mpibatch errors o.h5" in out
    assert "stopped early (SIGTERM); 1 task left." in err


def test_schedule_reasons_and_errors_are_singular():
    _, why = schedule.choose([0.1], n_left=1, n_ranks=1)
    assert "probe of 1 task:" in why and "1 task left for 1 rank -> dynamic" in why
    with pytest.raises(UsageError, match=r"\(the grid has 1 task\), got '0:5'"):
        schedule.parse_task_slice("0:5", 1)
