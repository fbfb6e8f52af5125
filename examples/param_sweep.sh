#!/usr/bin/env bash
# Parameter sweep over an executable: the RL slides' GNU parallel search
#
#   parallel --header : ./my_experiment -o {size}_{lr} -n {size} -lr {lr} \
#       ::: size 150 200 300 ::: lr 1e-3 1e-4 1e-5
#
# as one mpibatch command (3 sizes x 3 learning rates x 2 replicates = 18 tasks) that runs
# on any number of MPI ranks and nodes, gives each task its own seed and folder, and
# gathers every task's exit code, time and JSON results into one HDF5 file:
#
#   mpiexec -n 2 mpibatch run \
#     --command './my_experiment.sh -o {size}_{lr}.txt -n {size} -lr {lr} --seed {seed}' \
#     --grid size=150,200,300 --grid lr=1e-3,1e-4,1e-5 --reps 2 --seed 42 \
#     --task-dir --out sweep.h5
#
# {size} and {lr} come as typed (1e-3, not 0.001: file names 150_1e-3.txt), while the
# file's /params/lr holds the numbers. Each task runs in sweep.h5.tasks/NNNNNN/.
# Run it with: bash examples/param_sweep.sh [NP]    (from any folder; writes sweep.h5 there)
# Time here at np=2 (2-core VM): 0.3 s for the 18 tasks, 2.2 s in all (launch, summary).
# The Python-task version of this study: examples/param_sweep.py.
set -euo pipefail
NP=${1:-2}
HERE=$(cd "$(dirname "$0")" && pwd)

mpiexec -n "$NP" mpibatch run \
  --command "$HERE/my_experiment.sh -o {size}_{lr}.txt -n {size} -lr {lr} --seed {seed}" \
  --grid size=150,200,300 --grid lr=1e-3,1e-4,1e-5 --reps 2 --seed 42 \
  --task-dir --out sweep.h5 --overwrite

# the mean final loss of each (size, lr), read back with mpibatch.open ($PYTHON: a Python
# with mpibatch, default python3)
"${PYTHON:-python3}" - <<'PY'
import numpy as np

import mpibatch

res = mpibatch.open("sweep.h5")
size, lr, loss = res.params["size"], res.params["lr"], np.asarray(res.results["loss"])
print(f"{'size':>6} {'lr':>8} {'mean loss':>12}")
best = None
for s in np.unique(size):
    for r in np.unique(lr)[::-1]:
        mean = loss[(size == s) & (lr == r)].mean()
        print(f"{s:>6} {r:>8g} {mean:>12.4g}")
        best = min(best or (mean, s, r), (mean, s, r))
print(f"lowest mean loss: size={best[1]} lr={best[2]:g} ({best[0]:.3g})")
PY
