"""``say``: print once per job, on the launcher's rank 0, before (or without) MPI.

Read from the launcher's environment variables, so the command line can print before
``mpi4py`` is imported (and without importing it at all, e.g. ``mpibatch info``).
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")


def launcher_rank() -> int:
    """This process's rank as the launcher says, without starting MPI (0 if unknown)."""
    for var in _RANK_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def say(msg: str, file: TextIO | None = None) -> None:
    """Print on rank 0 only (to stdout by default), one write per line so ranks never
    interleave mid-line."""
    if launcher_rank() == 0:
        out = sys.stdout if file is None else file
        out.write(msg + "\n")
        out.flush()


def plural(n: int, word: str, many: str | None = None, spec: str = "") -> str:
    """``n`` and ``word``, in the plural unless ``n`` is 1: ``plural(1, "rank")`` is
    "1 rank", ``plural(3, "rank")`` "3 ranks". ``many``: an irregular plural ("axes");
    ``spec`` formats ``n`` (``","``: "1,000 tasks")."""
    return f"{n:{spec}} {word if n == 1 else many or word + 's'}"
