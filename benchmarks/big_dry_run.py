"""``mpibatch run --dry-run`` of very large grids: wall time and peak RSS (issue 24, item 7).

    python benchmarks/big_dry_run.py [--src DIR] [--repeat 3] [--markdown]

Each row is one ``mpibatch run study.py ... --dry-run`` in a fresh process, timed whole
(start-up and imports included) and measured by a wrapper's ``RUSAGE_CHILDREN`` peak RSS;
the best of ``--repeat`` runs. ``--src DIR`` runs the mpibatch found in DIR (e.g. another
checkout's ``src``) to compare before and after on the same machine. Target: a dry run of
10^9 tasks in <= 1 s and <= 100 MB. The last two rows are grids with an axis of 10^5 and
10^6 values: a dry run reads every value (its JSON, its --grid spelling), so these cost
about 1 µs and 200 bytes per value beyond start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _bench import print_table

ROWS = [
    ("10^9 replicates", ["--reps", "1000000000"]),
    ("1000 x 1000 x 1000 axes", ["--grid", "a=0:1000", "--grid", "b=1e-3:1:1000log",
                                 "--grid", "c=0:1000"]),
    ("10^5 x 10^4 axes", ["--grid", "a=0:100000", "--grid", "b=0:10000"]),
    ("10^6 values x 1000 reps", ["--grid", "a=0:1000000", "--reps", "1000"]),
]  # fmt: skip
WRAPPER = textwrap.dedent(
    """
    import json, resource, subprocess, sys, time
    t = time.perf_counter()
    r = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    lines = r.stdout.splitlines()
    print(json.dumps({"rc": r.returncode, "wall": wall, "peak": peak,
                      "grid": next((x for x in lines if x.startswith("grid:")), r.stderr)}))
    """
)
MAIN = "import sys; from mpibatch.cli import main; sys.exit(main())"


def measure(args: list[str], folder: Path, src: str | None) -> dict:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = str(Path(src).resolve())
    cmd = [sys.executable, "-c", WRAPPER, sys.executable, "-c", MAIN, "run", "study.py"]
    done = subprocess.run([*cmd, *args, "--dry-run"], capture_output=True, text=True,
                          cwd=folder, env=env, timeout=900)  # fmt: skip
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", help="run the mpibatch in this folder (PYTHONPATH)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--markdown", action="store_true")
    opts = ap.parse_args()
    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "study.py").write_text("def task(params, rng):\n    return rng.random()\n")
        for label, args in ROWS:
            runs = [measure(args, folder, opts.src) for _ in range(opts.repeat)]
            best = min(runs, key=lambda r: r["wall"])
            ok = "ok" if all(r["rc"] == 0 for r in runs) else "failed: " + best["grid"][-80:]
            peak = max(r["peak"] for r in runs) / 2**20
            cells.append([label, f"{best['wall']:.2f}", f"{peak:.0f}", f"{ok}; {best['grid']}"])
    where = opts.src or "the installed mpibatch"
    notes = [f"mpibatch from {where}; best wall of {opts.repeat}, largest peak RSS"]
    print_table(["grid", "best s", "peak MiB", "result"], cells, opts.markdown, notes)


if __name__ == "__main__":
    main()
