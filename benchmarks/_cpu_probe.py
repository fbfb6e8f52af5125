"""Run ``mpibatch`` in this process and record this process's CPU seconds when it exits.

    mpiexec -n NP python benchmarks/_cpu_probe.py OUT_DIR run TASK_FILE [mpibatch run flags]

As ``_rss_probe.py``, with CPU time (user + system, ``os.times``) instead of peak memory,
written to ``OUT_DIR/rank<PMI_RANK>.cpu``. CPU time, unlike wall time, does not grow while
a process waits for a core, so it measures a rank's own cost on an oversubscribed machine.
"""

import atexit
import os
import sys
from pathlib import Path


def record_cpu(out_dir: str) -> None:
    rank = os.environ.get("PMI_RANK", "0")
    t = os.times()
    Path(out_dir, f"rank{rank}.cpu").write_text(f"{t.user + t.system}\n")


def main() -> int:
    atexit.register(record_cpu, sys.argv[1])
    from mpibatch.cli import main as mpibatch_main

    return mpibatch_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
