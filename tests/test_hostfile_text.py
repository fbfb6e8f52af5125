"""_hostfile: host files read in either MPI spelling, merged, written, and checked against
a launcher (pure text); _launch.family names the spelling from the library version."""

import pytest

from mpibatch import _hostfile, _launch
from mpibatch._hostfile import MPICH, OPENMPI, Host, parse, problem, render
from mpibatch.errors import UsageError


def _table(text: str) -> list[tuple[str, int | None]]:
    return [(h.name, h.slots) for h in parse(text).hosts]


@pytest.mark.parametrize(
    "text",
    [
        "n01:64\nn02:32\n",
        "n01 slots=64\nn02 slots=32\n",
        "# header\n\n  n01 slots=64   # trailing comment\n\n\tn02:32\n# end\n",
    ],
    ids=["mpich", "openmpi", "mixed-comments-blanks"],
)
def test_either_spelling_reads_the_same_hosts(text):
    assert _table(text) == [("n01", 64), ("n02", 32)]


def test_each_spelling_is_recorded_with_its_first_line():
    p = parse("# c\na:2\nb slots=3\nc slots=1\nd:1\n")
    assert p.spelled == {MPICH, OPENMPI}
    assert p.first_of[MPICH] == (2, "a:2", "a") and p.first_of[OPENMPI] == (3, "b slots=3", "b")
    assert parse("a\nb\n").spelled == set()  # bare names: both launchers read them


@pytest.mark.parametrize(
    "text, merged",
    [
        ("a:2\nb:1\na:2\n", [("a", 4), ("b", 1)]),
        ("a slots=2\na slots=2\n", [("a", 4)]),
        ("a\na\na\n", [("a", 3)]),  # each bare line one slot, in both launchers
        ("a\nb:2\na:3\n", [("a", 4), ("b", 2)]),
        ("a\n", [("a", None)]),  # alone and bare: each launcher's default stays
    ],
)
def test_repeated_hosts_are_merged_at_the_first_place(text, merged):
    assert _table(text) == merged


def test_render_writes_each_spelling_without_comments():
    hosts = parse("# x\nn1:4  # four\nn2 slots=2 max_slots=8\nn3\n").hosts
    assert render(hosts, MPICH) == "n1:4\nn2:2\nn3\n"
    assert render(hosts, OPENMPI) == "n1 slots=4\nn2 slots=2 max_slots=8\nn3\n"
    assert render([Host("a", 2), Host("b", 1), Host("a", 2)], OPENMPI) == "a slots=4\nb slots=1\n"
    assert render(parse(render(hosts, OPENMPI)).hosts, MPICH) == render(hosts, MPICH)


def test_max_slots_survives_a_merge_only_when_every_line_has_one():
    assert render(parse("a slots=1 max_slots=2\na slots=1 max_slots=2\n").hosts, OPENMPI) == (
        "a slots=2 max_slots=4\n"
    )
    assert render(parse("a slots=1 max_slots=2\na slots=1\n").hosts, OPENMPI) == "a slots=2\n"


@pytest.mark.parametrize(
    "text, number, shown",
    [
        ("a:2\nb cpus=3\n", 2, "'b cpus=3'"),
        ("# c\n\na slots=two\n", 3, "'a slots=two'"),
        ("a:0\n", 1, "'a:0'"),
        ("a slots=0\n", 1, "'a slots=0'"),
        ("a:2:x y\n", 1, "'a:2:x y'"),
        ("a,b:2\n", 1, "'a,b:2'"),
    ],
)
def test_a_bad_line_is_one_line_with_its_number(text, number, shown):
    with pytest.raises(UsageError) as err:
        parse(text, "hosts.txt")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"hosts.txt line {number}: expected HOST, HOST:N")
    assert f"got {shown}" in msg


def test_a_file_of_only_comments_is_refused():
    with pytest.raises(UsageError, match=r"^h: expected at least one host line, got none$"):
        parse("# nothing\n\n", "h")


def test_problem_names_the_line_each_launcher_would_refuse():
    openmpi_file = parse("# RL slides\nnode01 slots=64\nnode02 slots=64\n")
    said = problem(openmpi_file, MPICH)
    assert said is not None
    assert "line 2 'node01 slots=64' is the Open MPI spelling" in said
    assert "token slots not supported" in said and "here 'node01:64'" in said
    assert problem(openmpi_file, OPENMPI) is None

    mpich_file = parse("n1:2\nn1:2\n")
    said = problem(mpich_file, OPENMPI)
    assert said is not None and "line 1 'n1:2'" in said and "here 'n1 slots=4'" in said
    assert problem(mpich_file, MPICH) is None  # Hydra reads a host twice


def test_problem_catches_what_only_one_launcher_refuses():
    said = problem(parse("a:1  # login node\n"), MPICH)
    assert said is not None and said.startswith("line 1 has '#' after a host")
    said = problem(parse("a slots=2\nb slots=1\na slots=2\n"), OPENMPI)
    assert said is not None and "host 'a' is on 2 lines" in said and "'a slots=4'" in said
    assert problem(parse("a\na\n"), OPENMPI) is None  # bare repeats: one slot each, read fine
    assert problem(parse("a slots=2 # ok for Open MPI\n"), OPENMPI) is None


@pytest.mark.parametrize(
    "library, flavor",
    [
        ("MPICH Version:      5.0.2\nMPICH Release date: ...", MPICH),
        ("Intel(R) MPI Library 2021.10 for Linux* OS", MPICH),
        ("MVAPICH2 Version      :\t2.3.7", MPICH),
        ("CRAY MPICH version 8.1.28.2 (ANL base 3.4a2)", MPICH),
        ("Open MPI v5.0.11, package: Open MPI ... distribution", OPENMPI),
        ("Microsoft MPI 10.1", None),
    ],
)
def test_family_from_the_library_version(library, flavor):
    assert _launch.family(library) == flavor


def test_a_library_of_neither_family_asks_for_the_flag():
    with pytest.raises(UsageError, match="pass --flavor mpich or --flavor openmpi"):
        _launch.hostfile_flavor("Microsoft MPI 10.1")


def test_mismatch_line_says_what_to_change_and_how_to_convert():
    line = _launch.hostfile_mismatch("rl.hosts", "n1 slots=8\n", MPICH, "MPICH Version: 5.0.2")
    assert line is not None and "\n" not in line
    assert line.startswith("rl.hosts does not fit MPICH 5.0.2's mpiexec: line 1 'n1 slots=8'")
    assert line.endswith("mpibatch hostfile --from rl.hosts --flavor mpich > rl.hosts.mpich")
    assert _launch.hostfile_mismatch("h", "n1:8\n", MPICH) is None
    assert _hostfile.NAMES[OPENMPI] in (_launch.hostfile_mismatch("h", "n1:8\n", OPENMPI) or "")
