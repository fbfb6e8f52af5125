"""_say: print on the launcher's rank 0 only, without MPI."""

from __future__ import annotations

import io
import sys

import pytest

from mpibatch import _say


@pytest.fixture
def no_launcher(monkeypatch):
    for var in _say._RANK_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_launcher_rank_reads_the_first_numeric_rank_variable(no_launcher):
    assert _say.launcher_rank() == 0  # no launcher: a single process is rank 0
    no_launcher.setenv("SLURM_PROCID", "5")
    assert _say.launcher_rank() == 5
    no_launcher.setenv("OMPI_COMM_WORLD_RANK", "2")  # named before SLURM_PROCID: it wins
    assert _say.launcher_rank() == 2
    no_launcher.setenv("PMI_RANK", "junk")  # not a number: skipped
    assert _say.launcher_rank() == 2


def test_say_prints_a_line_on_rank_0_only(no_launcher, capsys):
    _say.say("hello")
    _say.say("to stderr", file=sys.stderr)
    assert capsys.readouterr() == ("hello\n", "to stderr\n")
    no_launcher.setenv("PMI_RANK", "1")
    buffer = io.StringIO()
    _say.say("hello", file=buffer)
    _say.say("hello")
    assert buffer.getvalue() == "" and capsys.readouterr() == ("", "")
