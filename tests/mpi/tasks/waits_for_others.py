"""Rank 0's first task waits until tasks run elsewhere have left WAIT_DIR markers.

Every other task leaves a marker file. The others need rank 0 to hand them blocks, so
rank 0's waiting task only sees WAIT_FOR markers if rank 0 answers them while that task
runs; after WAIT_SECONDS it gives up and returns how many it saw.
"""

import os
import time
from pathlib import Path

STATE = {"waited": False}


def task(params, rng, ctx):
    folder = Path(os.environ["WAIT_DIR"])
    if ctx.rank == 0 and not STATE["waited"]:
        STATE["waited"] = True
        want, give_up = int(os.environ["WAIT_FOR"]), float(os.environ["WAIT_SECONDS"])
        end = time.monotonic() + give_up
        while len(list(folder.iterdir())) < want and time.monotonic() < end:
            time.sleep(0.01)
        return {"waiter": 1, "seen": len(list(folder.iterdir()))}
    (folder / f"task{ctx.task_id}").touch()
    time.sleep(0.005)
    return {"waiter": 0, "seen": -1}
