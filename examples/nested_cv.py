"""Nested cross-validation, flattened: (replicate, outer fold, method) is one task.

Each task takes one outer fold of one replicate's split, tunes one method's
hyperparameter by an inner 4-fold CV on the outer training part, refits, and returns
the outer test error. Averaging over folds gives each method's CV error per replicate;
the selected method is the one with the smallest mean error.

Why flat: the usual code parallelises the outer loop only (5 folds: 5 busy cores, the
rest idle, and the slowest fold sets the time). Folds x methods x replicates is 5 x 3 x
reps independent tasks, so every core has work and the schedule balances fast methods
(mean) against slow ones (kNN).

    mpiexec -n 2 mpibatch run examples/nested_cv.py --reps 10 --seed 5 --out nested.h5

5 folds x 3 methods x 10 replicates = 150 tasks: about 4 s at np=2 here. Then:

    df = mpibatch.open("nested.h5").to_pandas()
    err = df.groupby(["method", "rep"]).mse.mean().groupby("method").agg(["mean", "std"])
    print(err)             # ridge wins; "mean" (predict the training mean) is the baseline
"""

import numpy as np

DATA_SEED, N, P, K, INNER = 11, 150, 10, 5, 4
_data = np.random.default_rng(DATA_SEED)
X = _data.normal(size=(N, P))
Y = X @ np.linspace(1.0, 0.0, P) + _data.normal(size=N)  # a linear truth, some noise
ALPHAS, NEIGHBOURS = [0.1, 1.0, 10.0, 100.0], [1, 5, 15, 40]


def grid():
    return {"fold": list(range(K)), "method": ["mean", "ridge", "knn"]}


def fit_predict(method, h, x, y, xt):
    if method == "mean":
        return np.full(len(xt), y.mean())
    if method == "ridge":
        w = np.linalg.solve(x.T @ x + h * np.eye(x.shape[1]), x.T @ (y - y.mean()))
        return xt @ w + y.mean()
    d = ((xt[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)  # knn with k = h
    return y[np.argsort(d, axis=1)[:, : int(h)]].mean(axis=1)


def cv_error(method, h, x, y, folds) -> float:
    errors = []
    for k in range(folds.max() + 1):
        test = folds == k
        errors.append(np.mean((fit_predict(method, h, x[~test], y[~test], x[test]) - y[test]) ** 2))
    return float(np.mean(errors))


def task(params, rng):
    # the split must be the same in every task of a replicate, so it comes from the
    # replicate number, not from the task's stream (which differs between its tasks)
    folds = np.random.default_rng([DATA_SEED, int(params["rep"])]).permutation(N) % K
    test, method = folds == int(params["fold"]), params["method"]
    x, y = X[~test], Y[~test]
    inner = np.arange(len(y)) % INNER
    options = {"mean": [0.0], "ridge": ALPHAS, "knn": NEIGHBOURS}[method]
    best = min(options, key=lambda h: cv_error(method, h, x, y, inner))
    mse = np.mean((fit_predict(method, best, x, y, X[test]) - Y[test]) ** 2)
    return {"mse": mse, "chosen": float(best)}  # alpha or k: one kind of number
