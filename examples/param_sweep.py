"""Parameter sweep: model size x learning rate, a toy training run per task.

The RL slides' sweep (``parallel ./my_experiment --size {1} --lr {2} ::: 150 200 300
::: 1e-3 1e-4 1e-5``) as a Python task: full-batch gradient descent on a least-squares
problem with ``size`` features (scaled by 10, so the loss's curvature is about 100-250
and lr 1e-3 is the largest of the three that converges in STEPS steps without
overshooting). Returns the final loss and the curve every 20 steps.

    mpiexec -n 2 mpibatch run examples/param_sweep.py --reps 3 --seed 7 --out sweep.h5

3 sizes x 3 lrs x 3 replicates = 27 tasks: about 5 s at np=2 here. Then:

    df = mpibatch.open("sweep.h5").to_pandas()
    print(df.groupby(["size", "lr"]).loss.mean().unstack())   # best lr per size: 1e-3

``examples/param_sweep.sh`` runs the same sweep as a command (``mpibatch run --command``).
"""

import numpy as np

STEPS, ROWS, EVERY = 200, 1000, 20


def grid():
    return {"size": [150, 200, 300], "lr": [1e-3, 1e-4, 1e-5]}


def task(params, rng):
    size, lr = int(params["size"]), float(params["lr"])
    X = 10.0 * rng.normal(size=(ROWS, size))  # this replicate's data
    y = X @ rng.normal(size=size) + rng.normal(size=ROWS)
    w, curve = np.zeros(size), []
    for step in range(STEPS):
        resid = X @ w - y
        if step % EVERY == 0:
            curve.append(np.mean(resid**2))
        w -= lr * (X.T @ resid) / ROWS  # gradient of half the mean squared error
    return {"loss": np.mean((X @ w - y) ** 2), "curve": np.array(curve)}
