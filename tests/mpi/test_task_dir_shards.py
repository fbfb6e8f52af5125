"""Sharded task folders and kept output under real ``mpiexec -n 2`` (a small threshold)."""

from pathlib import Path

from conftest import mpibatch

import mpibatch as mpibatch_
from mpibatch._command import task_path


def test_sharded_task_dirs_span_two_shards_and_match_the_rule(tmp_path):
    out = tmp_path / "big.h5"
    r = mpibatch(
        2,
        "run",
        "--command",
        "sh -c 'echo $0 > id.txt; echo out$0' {task}",
        "--reps",
        "3000",
        "--tasks",
        "990:1010",
        "--task-dir",
        "--keep-output",
        "--quiet",
        "--out",
        out,
        env={"MPIBATCH_SHARD_ABOVE": "10"},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    res = mpibatch_.open(out)
    assert res.task_id.tolist() == list(range(990, 1010)) and res.count("done") == 20
    tasks, output = Path(f"{out}.tasks"), Path(f"{out}.output")
    assert sorted(p.name for p in tasks.iterdir()) == ["000", "001"]
    assert len(list((tasks / "000").iterdir())) == 10  # tasks 990-999
    for i in range(990, 1010):
        rel = task_path(i, 3000, above=10)
        assert rel == f"{i // 1000:03d}/{i:06d}"
        assert (tasks / rel / "id.txt").read_text() == f"{i}\n"
        assert (output / f"{rel}.out").read_text() == f"out{i}\n"
