"""Where a command task's folder and kept output go: flat names, or shards in a big study."""

from __future__ import annotations

from pathlib import Path

import pytest

import mpibatch
from mpibatch import _command
from mpibatch._command import SHARD_ABOVE, task_path
from mpibatch.errors import UsageError


def test_a_study_up_to_the_threshold_keeps_flat_names():
    assert task_path(4, 18) == "000004"
    assert task_path(SHARD_ABOVE - 1, SHARD_ABOVE) == f"{SHARD_ABOVE - 1:06d}"
    assert task_path(17, 10**7, above=10**7) == "0000017"  # wider ids, still flat


@pytest.mark.parametrize(
    ("i", "n", "path"),
    [
        (17, SHARD_ABOVE + 1, "000/000017"),
        (17017, 20_000, "017/017017"),
        (999_999, 10**6, "999/999999"),
        (17017, 10**7, "000/017/0017017"),
        (17017, 10**9, "000/017/000017017"),
        (2_345_678_901, 10**10, "002/345/678/2345678901"),
    ],
)
def test_a_bigger_study_shards_by_leading_digits(i, n, path):
    assert task_path(i, n) == path


def test_no_folder_holds_more_than_a_thousand_names():
    n = 10**7
    folders: dict[str, set[str]] = {}
    for i in [*range(0, 3000), *range(n - 3000, n)]:
        parts = task_path(i, n).split("/")
        for k in range(len(parts)):
            folders.setdefault("/".join(parts[:k]), set()).add(parts[k])
    assert max(len(names) for names in folders.values()) <= 1000
    assert folders[""] == {"000", "009"}  # 0..9,999,999: top folders 000-009
    assert len({task_path(i, n) for i in range(5000)}) == 5000  # one path per task


def test_the_test_override_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("MPIBATCH_SHARD_ABOVE", "10")
    assert task_path(3, 11) == "000/000003"
    assert task_path(3, 10) == "000003"
    monkeypatch.setenv("MPIBATCH_SHARD_ABOVE", "ten")
    with pytest.raises(UsageError, match="MPIBATCH_SHARD_ABOVE: expected a number"):
        task_path(3, 11)


def test_a_run_above_the_threshold_shards_task_dirs_and_kept_output(tmp_path, monkeypatch):
    monkeypatch.setattr(_command, "SHARD_ABOVE", 3)
    out = tmp_path / "s.h5"
    s = mpibatch.run(
        command="sh -c 'echo $0 > id.txt; echo out$0; echo err$0 >&2' {task}",
        grid={"x": [1, 2]},
        reps=2,
        out=out,
        task_dir=True,
        keep_output=True,
    )
    assert s.done == 4
    tasks, output = Path(f"{out}.tasks"), Path(f"{out}.output")
    assert sorted(p.name for p in tasks.iterdir()) == ["000"]
    for i in range(4):
        assert (tasks / "000" / f"00000{i}" / "id.txt").read_text() == f"{i}\n"
        assert (output / "000" / f"00000{i}.out").read_text() == f"out{i}\n"
        assert (output / "000" / f"00000{i}.err").read_text() == f"err{i}\n"


def test_a_run_up_to_the_threshold_keeps_todays_flat_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(_command, "SHARD_ABOVE", 4)
    out = tmp_path / "f.h5"
    mpibatch.run(
        command="sh -c 'echo $0 > id.txt' {task}", grid={"x": [1, 2, 3, 4]}, out=out, task_dir=True
    )
    names = sorted(p.name for p in Path(f"{out}.tasks").iterdir())
    assert names == ["000000", "000001", "000002", "000003"]
