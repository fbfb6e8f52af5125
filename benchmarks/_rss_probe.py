"""Run ``mpibatch`` in this process and record this process's peak RSS when it exits.

    mpiexec -n NP python benchmarks/_rss_probe.py OUT_DIR run TASK_FILE [mpibatch run flags]

This is the ``mpibatch`` console script (``sys.exit(mpibatch.cli.main())``) with one addition:
an ``atexit`` hook, registered before mpibatch is imported and so run after mpibatch's own
exit handlers (MPI_Finalize included), reads ``VmHWM`` from ``/proc/self/status`` and writes
it, in KiB, to ``OUT_DIR/rank<PMI_RANK>.kib``. Nothing in mpibatch is changed; a rank that
dies without running exit handlers simply leaves no file.
"""

import atexit
import os
import sys
from pathlib import Path


def record_peak_rss(out_dir: str) -> None:
    rank = os.environ.get("PMI_RANK", "0")
    with open("/proc/self/status") as f:
        kib = next((int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")), -1)
    Path(out_dir, f"rank{rank}.kib").write_text(f"{kib}\n")


def main() -> int:
    atexit.register(record_peak_rss, sys.argv[1])
    from mpibatch.cli import main as mpibatch_main

    return mpibatch_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
