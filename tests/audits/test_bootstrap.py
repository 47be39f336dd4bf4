"""Count-based group rates, gaps and the multinomial bootstrap, checked by hand and against
fairlearn (point estimates exactly; bootstrap CIs within Monte-Carlo error)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from impactflow.audits.bootstrap import bootstrap_counts, bootstrap_intervals, gaps, group_counts, rates


def test_group_counts_by_hand():
    # group 0: (y,ŷ) = (1,1) (0,1) (0,0)  -> TP=1 FP=1 TN=1 FN=0
    # group 1: (1,0) (1,1)                -> TP=1 FP=0 TN=0 FN=1
    codes = np.array([0, 0, 0, 1, 1])
    y = np.array([1, 0, 0, 1, 1])
    yhat = np.array([1, 1, 0, 0, 1])
    assert group_counts(codes, y, yhat, 2).tolist() == [[1, 1, 1, 0], [1, 0, 0, 1]]
    r = rates(group_counts(codes, y, yhat, 2))
    assert r["selection_rate"].tolist() == pytest.approx([2 / 3, 1 / 2])
    assert r["true_positive_rate"].tolist() == pytest.approx([1.0, 0.5])
    assert r["false_positive_rate"].tolist() == pytest.approx([0.5, 0.0])  # group 1: no negatives -> 0
    g = gaps(group_counts(codes, y, yhat, 2))
    assert float(g["demographic_parity_difference"]) == pytest.approx(2 / 3 - 1 / 2)
    assert float(g["demographic_parity_ratio"]) == pytest.approx((1 / 2) / (2 / 3))
    assert float(g["equalized_odds_difference"]) == pytest.approx(max(1 - 0.5, 0.5 - 0))


def _data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b", "c"], size=n, p=[0.6, 0.3, 0.1])
    y = (rng.random(n) < np.where(group == "a", 0.3, 0.15)).astype(int)
    yhat = (rng.random(n) < 0.2 + 0.5 * y).astype(int)
    return group, y, yhat


def test_point_estimates_equal_fairlearn():
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    group, y, yhat = _data()
    codes, uniques = pd.factorize(pd.Series(group), sort=True)
    counts = group_counts(codes, y, yhat, len(uniques))
    mf = MetricFrame(
        metrics={"sr": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
        y_true=y,
        y_pred=yhat,
        sensitive_features=group,
    )
    r = rates(counts)
    np.testing.assert_allclose(r["selection_rate"], mf.by_group["sr"].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(r["true_positive_rate"], mf.by_group["tpr"].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(r["false_positive_rate"], mf.by_group["fpr"].to_numpy(), atol=1e-12)
    g = gaps(counts)
    assert float(g["demographic_parity_difference"]) == pytest.approx(
        demographic_parity_difference(y, yhat, sensitive_features=group), abs=1e-12
    )
    assert float(g["demographic_parity_ratio"]) == pytest.approx(
        demographic_parity_ratio(y, yhat, sensitive_features=group), abs=1e-12
    )
    assert float(g["equalized_odds_difference"]) == pytest.approx(
        equalized_odds_difference(y, yhat, sensitive_features=group), abs=1e-12
    )


def test_replicates_keep_the_row_count_and_centre_on_the_data():
    counts = np.array([[30, 10, 50, 10], [5, 5, 20, 0]])
    reps = bootstrap_counts(counts, 4000, seed=1)
    assert reps.shape == (4000, 2, 4)
    assert (reps.sum(axis=(1, 2)) == counts.sum()).all()
    np.testing.assert_allclose(reps.mean(axis=0), counts, atol=0.5)


def test_bootstrap_cis_agree_with_fairlearns_row_bootstrap():
    """Same distribution, different random draws: the CI ends agree within Monte-Carlo error
    (the standard error of a 2.5% quantile with ~400 replicates is about 0.01 here)."""
    from fairlearn.metrics import MetricFrame, selection_rate

    group, y, yhat = _data(n=2000, seed=3)
    mf = MetricFrame(
        metrics={"sr": selection_rate},
        y_true=y,
        y_pred=yhat,
        sensitive_features=group,
        n_boot=400,
        ci_quantiles=[0.025, 0.975],
        random_state=7,
    )
    fl_low, fl_high = (float(x["sr"]) for x in mf.difference_ci(method="between_groups"))
    codes, uniques = pd.factorize(pd.Series(group), sort=True)
    ours = bootstrap_intervals(group_counts(codes, y, yhat, len(uniques)), n_boot=4000, seed=0)
    low, high = ours["demographic_parity_difference"]
    point = float(gaps(group_counts(codes, y, yhat, len(uniques)))["demographic_parity_difference"])
    assert low < point < high
    assert low == pytest.approx(fl_low, abs=0.02)
    assert high == pytest.approx(fl_high, abs=0.02)
