"""A dry run of 10^9 tasks: the right task count, in bounded memory (issue 24, item 7).

Each run goes through a small wrapper process that reports the peak RSS of its own
children (``RUSAGE_CHILDREN``), so earlier tests' processes do not count.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from conftest import MPIBATCH, MPIEXEC

RSS_BOUND = 300 << 20  # generous: a dry run of 10^9 tasks peaks near 70 MB here
TASK = "def task(params, rng):\n    return float(rng.random())\n"
WRAPPER = textwrap.dedent(
    """
    import json, resource, subprocess, sys
    r = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"rc": r.returncode, "out": r.stdout, "err": r.stderr, "peak": peak}))
    """
)


def _measured(*cmd, cwd) -> dict:
    words = [sys.executable, "-c", WRAPPER, *map(str, cmd)]
    done = subprocess.run(words, capture_output=True, text=True, timeout=150, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_dry_run_of_a_billion_replicates_on_two_ranks(tmp_path):
    (tmp_path / "study.py").write_text(TASK)
    cmd = (MPIEXEC, "-n", 2, MPIBATCH, "run", "study.py", "--reps", 10**9, "--dry-run")
    r = _measured(*cmd, "--seed", 4, cwd=tmp_path)
    assert r["rc"] == 0, r["err"]
    assert "grid: 1000000000 reps = 1000000000 tasks" in r["out"]
    assert "running tasks 0:1000000000 (1000000000 tasks); seed 4" in r["out"]
    assert r["out"].rstrip().endswith("999999999  rep=999999999")
    assert r["peak"] < RSS_BOUND, r["peak"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["study.py"]


def test_a_dry_run_of_a_billion_tasks_over_axes_with_a_thousand_values_each(tmp_path):
    (tmp_path / "study.py").write_text(TASK)
    grid = ("--grid", "a=0:1000", "--grid", "b=1e-3:1:1000log", "--grid", "c+d=" + ",".join(
        f"{k}/x{k}" for k in range(1000)
    ))  # fmt: skip
    r = _measured(MPIBATCH, "run", "study.py", *grid, "--dry-run", cwd=tmp_path)
    assert r["rc"] == 0, r["err"]
    assert "grid: 1000 x 1000 x 1000 (a, b, c+d) x 1 rep = 1000000000 tasks" in r["out"]
    assert "  axis b: 1000 values [0.001, " in r["out"]
    assert r["out"].rstrip().endswith("999999999  a=999 b=1.0 c=999 d='x999' rep=0")
    assert r["peak"] < RSS_BOUND, r["peak"]


def test_the_python_api_dry_run_of_a_billion_tasks(tmp_path):
    (tmp_path / "study.py").write_text(TASK)
    code = (
        "import mpibatch\n"
        "plan = mpibatch.run('study.py', grid={'x': list(range(1000))}, reps=10**6, "
        "out='never.h5', dry_run=True)\n"
        "print(len(plan.id_range))\n"
    )
    r = _measured(sys.executable, "-c", code, cwd=tmp_path)
    assert r["rc"] == 0, r["err"]
    assert r["out"].split()[-1] == str(10**9)
    assert not (tmp_path / "never.h5").exists()
    assert r["peak"] < RSS_BOUND, r["peak"]
