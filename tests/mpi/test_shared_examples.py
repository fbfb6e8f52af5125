"""The shared-input examples, run small under ``mpiexec -n 2``, give the right answers."""

from __future__ import annotations

import sys

import numpy as np
from conftest import ROOT, mpibatch

import mpibatch as mb

EXAMPLES = ROOT / "examples"


def test_stratified_recovers_each_groups_coefficients(tmp_path):
    out = tmp_path / "s.h5"
    env = {"STRATIFIED_ROWS": "100000", "STRATIFIED_GROUPS": "20"}
    r = mpibatch(2, "run", EXAMPLES / "stratified.py", "--seed", 1, "--out", out, env=env)
    assert r.returncode == 0, r.stderr
    res = mb.open(out)
    assert res.count("done") == 20 and res.results["n"].sum() == 100000
    sys.path.insert(0, str(EXAMPLES))
    try:
        import stratified

        truth = stratified.truth(20)
    finally:
        sys.path.remove(str(EXAMPLES))
    error = np.abs(res.results["coef"] - truth)
    assert error.max() < 0.1, error.max()  # ~5,000 rows a group: standard errors ~0.015
    assert (res.results["se_b1"] > 0.005).all() and (res.results["se_b1"] < 0.05).all()


def test_cross_validation_beats_the_mean_baseline_with_models_built_in_setup(tmp_path):
    out = tmp_path / "cv.h5"
    env = {"CV_ROWS": "3000", "CV_FEATURES": "10"}
    r = mpibatch(2, "run", EXAMPLES / "cross_validation.py", "--seed", 1, "--out", out, env=env)
    assert r.returncode == 0, r.stderr
    res = mb.open(out)
    assert res.count("done") == 20
    model, mse = res.params["model"], res.results["mse"]
    by_model = {str(m): float(mse[model == m].mean()) for m in np.unique(model)}
    assert by_model["ridge_1"] < 0.5 * by_model["mean"], by_model
    assert 0.8 < by_model["ridge_1"] < 1.3, by_model  # the noise variance is 1
    assert (res.results["n_test"] == 600).all()
