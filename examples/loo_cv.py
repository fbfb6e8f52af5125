"""Leave-one-out cross-validation of a random forest, one task per held-out sample.

Each task fits a forest on all samples but one (the task's ``rep``) and predicts the one
left out; the LOO accuracy is the mean of ``correct``. The data are fixed (DATA_SEED, the
same on every rank); the forest is seeded from the task's own stream, so a rerun, any
-np or schedule gives the same predictions. With scikit-learn installed
(``pip install 'mpibatch[sklearn]'``) the model is ``RandomForestClassifier``; without
it, a NumPy nearest-centroid classifier stands in, so the example runs anywhere.

    mpiexec -n 2 mpibatch run examples/loo_cv.py --reps 120 --seed 3 --out loo.h5

120 tasks (one per sample): about 45 s at np=2 here (a 50-tree forest each). Then:

    res = mpibatch.open("loo.h5")
    print(res.results["correct"].mean())                # about 0.85; baseline 0.5
    df = res.to_pandas(); print(df.groupby("label").correct.mean())   # per class
"""

import numpy as np

DATA_SEED, N, P = 2024, 120, 5

# two overlapping Gaussian classes, 60 each: the majority-class baseline is 0.5
_data = np.random.default_rng(DATA_SEED)
Y = np.repeat([0, 1], N // 2)
X = _data.normal(size=(N, P)) + 1.2 * Y[:, None] * np.array([1.0, 1.0, 0.5, 0.0, 0.0])

try:
    from sklearn.ensemble import RandomForestClassifier
except ImportError:  # the NumPy fallback
    RandomForestClassifier = None


def fit_predict(x_train, y_train, x_test, seed: int) -> int:
    if RandomForestClassifier is not None:
        forest = RandomForestClassifier(n_estimators=50, random_state=seed, n_jobs=1)
        return int(forest.fit(x_train, y_train).predict(x_test)[0])
    centroids = np.stack([x_train[y_train == c].mean(axis=0) for c in (0, 1)])
    return int(np.argmin(((centroids - x_test) ** 2).sum(axis=1)))


def task(params, rng):
    i = int(params["rep"])  # the held-out sample
    if not 0 <= i < N:
        raise ValueError(f"expected --reps {N} (one task per sample), got rep {i}")
    keep = np.arange(N) != i
    seed = int(rng.integers(2**31))  # the forest's seed, from this task's stream
    pred = fit_predict(X[keep], Y[keep], X[i : i + 1], seed)
    return {"label": int(Y[i]), "pred": pred, "correct": int(pred == Y[i])}
