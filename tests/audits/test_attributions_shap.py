"""Our marginal attributions against shap's (a dev dependency only: the pipeline does not import
it). For an additive model the interventional Shapley value of feature j at x, with the sample
as background, is g_j(x_j) - mean g_j: shap's exact explainer and ours must agree row by row, up
to the permutation noise of ``repeats`` draws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import shap

from impactflow.audits.attributions import marginal_attributions


R = 800  # draws per row and feature


def _additive(X) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    return 2.0 * X[:, 0] + np.sin(3.0 * X[:, 1]) + 0.0 * X[:, 2]


def test_marginal_attributions_equal_shaps_interventional_values_on_an_additive_model():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"])
    rows, ours = marginal_attributions(  # the whole sample, many draws per row
        frame, lambda df: _additive(df.to_numpy()), task="rating", sample_size=40, repeats=R, seed=1
    )
    assert list(rows) == list(range(40))
    background = shap.maskers.Independent(frame.to_numpy(), max_samples=40)
    theirs = shap.explainers.Exact(_additive, background)(frame.to_numpy()).values
    # each row's estimate averages `repeats` draws of g_j: its standard error is sd(g_j) / sqrt(R)
    X = frame.to_numpy()
    g = np.column_stack([2.0 * X[:, 0], np.sin(3.0 * X[:, 1]), 0.0 * X[:, 2]])
    se = g.std(axis=0) / np.sqrt(R)
    assert np.all(np.abs(ours - theirs) <= 5 * se + 1e-12)
    # and so does what the report shows, the mean |attribution| per feature
    assert np.all(np.abs(np.abs(ours).mean(axis=0) - np.abs(theirs).mean(axis=0)) <= 5 * se + 1e-12)
    assert np.all(theirs[:, 2] == 0) and np.all(ours[:, 2] == 0)  # an unused feature: exactly 0
