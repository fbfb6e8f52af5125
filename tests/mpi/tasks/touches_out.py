"""Tasks that do to the results file what a careless task might: task TOUCH_AT (env) deletes
it (TOUCH=delete) or writes another file over it (TOUCH=overwrite); READ_AT: a plain h5py
reader opens it mid-run (as a user in a notebook would) and returns what it read."""

import os
import subprocess
import sys
import time

READER = "import h5py, sys; f = h5py.File(sys.argv[1], 'r'); print(len(f['tasks/status']))"


def task(params, rng, ctx):
    out = os.environ["TOUCH_OUT"]
    seen = -1
    if ctx.task_id == int(os.environ.get("TOUCH_AT", "-1")):
        if os.environ["TOUCH"] == "delete":
            os.unlink(out)
        else:
            with open(out + ".new", "wb") as fh:
                fh.write(b"not the results")
            os.replace(out + ".new", out)
    if ctx.task_id == int(os.environ.get("READ_AT", "-1")):
        r = subprocess.run([sys.executable, "-c", READER, out], capture_output=True, text=True)
        seen = int(r.stdout) if r.returncode == 0 else -2
    time.sleep(0.01)
    return {"x": rng.random(), "seen": seen}
