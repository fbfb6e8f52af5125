"""Watching processes from tests (a module, not conftest: tests/slurm has its own conftest)."""

import time


def process_gone(pid: int, seconds: float = 20) -> bool:
    """True once ``pid`` no longer runs (gone, or a zombie nobody reaped); polls a while."""
    for _ in range(int(seconds / 0.05)):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False
