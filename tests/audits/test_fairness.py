import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impactflow.audits.fairness import fairness_audit
from impactflow.audits.inputs import AuditInputs
from impactflow.audits.results import Status
from impactflow.audits.stats import wilson_interval

LOOSE = {"max_demographic_parity_difference": 1.0, "max_equalized_odds_difference": 1.0}


def _inputs(y_true, y_pred, sensitive):
    # scores 0.9 / 0.1 so that the hard predictions at threshold 0.5 are exactly y_pred
    score = np.where(np.asarray(y_pred) == 1, 0.9, 0.1)
    return AuditInputs(y_true=np.asarray(y_true), y_score=score, sensitive=pd.DataFrame(sensitive))


# Twelve rows, two groups of six.
# a: y_true 1 1 1 0 0 0, y_pred 1 1 0 1 0 0 -> TP2 FN1 FP1 TN2: SR 3/6=.5, TPR 2/3, FPR 1/3
# b: y_true 1 1 0 0 0 0, y_pred 1 0 0 0 0 0 -> TP1 FN1 FP0 TN4: SR 1/6,   TPR 1/2, FPR 0
# DP difference = .5 - 1/6 = 1/3; DP ratio = (1/6)/.5 = 1/3
# EO difference = max(|2/3 - 1/2|, |1/3 - 0|) = max(1/6, 1/3) = 1/3
Y12 = [1, 1, 1, 0, 0, 0] + [1, 1, 0, 0, 0, 0]
P12 = [1, 1, 0, 1, 0, 0] + [1, 0, 0, 0, 0, 0]
G12 = ["a"] * 6 + ["b"] * 6


def test_two_groups_hand_computed():
    res = fairness_audit(_inputs(Y12, P12, {"sex": G12}), {"min_group_size": 5})
    m = res.metrics
    assert m["fairness/sex/demographic_parity_difference"] == pytest.approx(1 / 3)
    assert m["fairness/sex/demographic_parity_ratio"] == pytest.approx(1 / 3)
    assert m["fairness/sex/equalized_odds_difference"] == pytest.approx(1 / 3)
    assert m["fairness/sex/four_fifths_min_ratio"] == pytest.approx(1 / 3)
    assert m["fairness/sex/n_groups_judged"] == 2
    assert m["fairness/sex/n_groups_too_small"] == 0
    assert m["fairness/sex/demographic_parity_difference_all_groups"] == pytest.approx(1 / 3)
    rows = {r["group"]: r for r in res.by_group}
    a, b = rows["a"], rows["b"]
    assert (a["tp"], a["fn"], a["fp"], a["tn"], a["n"]) == (2, 1, 1, 2, 6)
    assert (b["tp"], b["fn"], b["fp"], b["tn"], b["n"]) == (1, 1, 0, 4, 6)
    assert a["selection_rate"] == pytest.approx(0.5)
    assert a["true_positive_rate"] == pytest.approx(2 / 3)
    assert a["false_positive_rate"] == pytest.approx(1 / 3)
    assert a["false_negative_rate"] == pytest.approx(1 / 3)
    assert a["accuracy"] == pytest.approx(4 / 6)
    assert b["false_positive_rate"] == 0.0
    assert a["share"] == pytest.approx(0.5)
    assert b["selection_rate_ratio_to_max"] == pytest.approx(1 / 3)
    assert a["selection_rate_ratio_to_max"] == 1.0
    # CIs are Wilson on the counts: SR of a = 3/6, TPR of b = 1/2
    assert (a["selection_rate_ci_low"], a["selection_rate_ci_high"]) == pytest.approx(wilson_interval(3, 6))
    assert (b["true_positive_rate_ci_low"], b["true_positive_rate_ci_high"]) == pytest.approx(wilson_interval(1, 2))
    # default thresholds 0.1 / 0.1 / 0.8 all fail
    assert {g.name: g.status for g in res.gates} == {
        "fairness/sex/demographic_parity_difference": Status.FAIL,
        "fairness/sex/equalized_odds_difference": Status.FAIL,
        "fairness/sex/four_fifths_min_ratio": Status.FAIL,
    }
    assert res.status is Status.FAIL
    assert "Wilson" in res.details["conventions"]["ci"]
    assert res.details["attributes"] == ["sex"]


def _selection(n_sel_a, n_sel_b, n=20):
    # every row has y_true = 1 so only selection rates differ; group a selects n_sel_a of n
    y = [1] * (2 * n)
    p = [1] * n_sel_a + [0] * (n - n_sel_a) + [1] * n_sel_b + [0] * (n - n_sel_b)
    return _inputs(y, p, {"race": ["a"] * n + ["b"] * n})


def test_four_fifths_fails_below_point_eight():
    # a: 10/20 = .5, b: 7/20 = .35 -> ratio .7 < .8
    res = fairness_audit(_selection(10, 7), {**LOOSE, "min_group_size": 10})
    g = {g.name: g for g in res.gates}["fairness/race/four_fifths_min_ratio"]
    assert g.value == pytest.approx(0.7)
    assert g.status is Status.FAIL
    assert res.status is Status.FAIL
    assert any("'b'" in n and "four-fifths" in n for n in res.notes)


def test_four_fifths_passes_at_point_nine():
    # a: 10/20 = .5, b: 9/20 = .45 -> ratio .9 >= .8; DP diff .05, EO diff (TPR gap) .05
    res = fairness_audit(_selection(10, 9), {"min_group_size": 10})
    assert res.metrics["fairness/race/four_fifths_min_ratio"] == pytest.approx(0.9)
    assert res.metrics["fairness/race/demographic_parity_difference"] == pytest.approx(0.05)
    assert all(g.status is Status.PASS for g in res.gates)
    assert res.status is Status.PASS


def test_too_small_group_reported_not_dropped():
    # add group c (2 rows): y_true 1 0, y_pred 1 1 -> SR 1.0; min_group_size 5 keeps it out
    res = fairness_audit(_inputs(Y12 + [1, 0], P12 + [1, 1], {"sex": G12 + ["c", "c"]}), {"min_group_size": 5})
    rows = {r["group"]: r for r in res.by_group}
    assert set(rows) == {"a", "b", "c"}
    assert rows["c"]["too_small"] is True and rows["c"]["n"] == 2
    assert rows["a"]["too_small"] is False
    m = res.metrics
    assert m["fairness/sex/n_groups_judged"] == 2
    assert m["fairness/sex/n_groups_too_small"] == 1
    # gate value over a, b only (1/3); all groups: 1.0 - 1/6 = 5/6
    assert m["fairness/sex/demographic_parity_difference"] == pytest.approx(1 / 3)
    assert m["fairness/sex/demographic_parity_difference_all_groups"] == pytest.approx(5 / 6)
    # ratio all groups: (1/6)/1.0
    assert m["fairness/sex/demographic_parity_ratio_all_groups"] == pytest.approx(1 / 6)
    assert any("too small to judge" in n and "'c' (n=2)" in n for n in res.notes)


def test_one_judged_group_is_not_measured():
    res = fairness_audit(
        _inputs([1, 0, 1, 0, 1, 0, 1], [1, 0, 1, 1, 0, 0, 1], {"sex": ["a"] * 5 + ["b"] * 2}), {"min_group_size": 5}
    )
    assert len(res.gates) == 3
    assert all(g.status is Status.NOT_MEASURED for g in res.gates)
    assert res.status is Status.NOT_MEASURED
    assert math.isnan(res.metrics["fairness/sex/demographic_parity_difference"])
    assert len(res.by_group) == 2
    assert any("gates not measured" in n for n in res.notes)


def test_every_group_too_small_is_not_measured_with_the_reason():
    """Issue 20, defect 6: min_group_size above every group crashed the audit (numpy max of an
    empty array); now every gate is not measured and says why."""
    res = fairness_audit(_inputs(Y12, P12, {"sex": G12, "race": ["x", "y"] * 6}), {"min_group_size": 100000})
    assert len(res.gates) == 9  # sex, race, sex_x_race: three gates each
    assert all(g.status is Status.NOT_MEASURED and g.value is None for g in res.gates)
    assert {g.note for g in res.gates if g.name.startswith("fairness/sex/")} == {
        "only 0 group(s) of sex have n >= 100000: nothing to compare"
    }
    assert res.status is Status.NOT_MEASURED
    assert math.isnan(res.metrics["fairness/sex/demographic_parity_difference"])
    assert res.metrics["fairness/sex/demographic_parity_difference_all_groups"] == pytest.approx(1 / 3)
    assert len(res.by_group) == 2 + 2 + 4 and all(r["too_small"] for r in res.by_group)
    # an empty test set: no group at all
    empty = fairness_audit(_inputs([], [], {"sex": []}), {})
    assert empty.status is Status.NOT_MEASURED and empty.by_group == []


# Degenerate DP-ratio interval. a: 40 rows, 20 predicted positive (SR 1/2); b: 30 rows, none
# predicted positive (SR 0). DP ratio = 0 / (1/2) = 0, and every bootstrap replicate keeps b's
# SR at 0 (b has no positive prediction to resample), so the percentile interval is [0, 0].
# Jeffreys: SR_b ~ Beta(1/2, 30.5) (mean 0.016), SR_a ~ Beta(20.5, 20.5), so the ratio's
# interval starts just above 0 and ends near 0.1-0.2, never [0, 0].
YD = [1, 0] * 20 + [0] * 30
PD = [1] * 20 + [0] * 20 + [0] * 30
GD = ["a"] * 40 + ["b"] * 30


def test_degenerate_dp_ratio_interval_is_flagged_with_a_jeffreys_interval():
    res = fairness_audit(_inputs(YD, PD, {"sex": GD}), {**LOOSE, "n_boot": 200})
    m = res.metrics
    assert m["fairness/sex/demographic_parity_ratio"] == 0.0  # point estimate unchanged
    assert (m["fairness/sex/demographic_parity_ratio_ci_low"], m["fairness/sex/demographic_parity_ratio_ci_high"]) == (
        0.0,
        0.0,
    )  # the bootstrap interval itself is kept as fairlearn's would be
    assert m["fairness/sex/demographic_parity_ratio_ci_degenerate"] == 1.0
    lo, hi = (
        m["fairness/sex/demographic_parity_ratio_jeffreys_ci_low"],
        m["fairness/sex/demographic_parity_ratio_jeffreys_ci_high"],
    )
    assert 0.0 < lo < 0.01 and 0.05 < hi < 0.3
    note = next(n for n in res.notes if "demographic_parity_ratio is [0, 0]" in n)
    assert "not certainty" in note and "'b': n=30, 0 positive predictions" in note and "Jeffreys" in note
    # the DP difference varies with a's resampled rate: not degenerate, not flagged
    assert "fairness/sex/demographic_parity_difference_ci_degenerate" not in m


def test_jeffreys_ratio_interval_by_hand_and_never_collapses():
    from scipy.stats import beta

    from impactflow.audits.bootstrap import degenerate, jeffreys_ratio_interval

    # one group always selected (k = n = 50) and one never (k = 0, n = 50): symmetric Betas
    counts = np.array([[25, 25, 0, 0], [0, 0, 25, 25]])
    lo, hi = jeffreys_ratio_interval(counts, n_draws=20000, level=0.9)
    assert 0 < lo < hi < 0.2 and not degenerate((lo, hi))
    # with one group fixed near 1 the ratio's upper end is about Beta(1/2, 50.5)'s 95% quantile
    assert hi == pytest.approx(beta.ppf(0.95, 0.5, 50.5), rel=0.15)
    assert math.isnan(jeffreys_ratio_interval(counts[:1])[0])
    assert degenerate((0.0, 0.0)) and not degenerate((float("nan"), float("nan"))) and not degenerate((0.1, 0.2))


def test_no_sensitive_columns_skipped():
    res = fairness_audit(_inputs([1, 0], [1, 0], pd.DataFrame(index=range(2))), {})
    assert res.status is Status.SKIPPED
    assert res.gates == [] and res.notes


def test_intersection_labels_and_default():
    sens = {"sex": ["F", "F", "M", "M"] * 10, "race": ["x", "y"] * 20}
    res = fairness_audit(_inputs([1, 0] * 20, [1, 1, 0, 0] * 10, sens), {"min_group_size": 1})
    assert res.details["attributes"] == ["sex", "race", "sex_x_race"]
    groups = {r["group"] for r in res.by_group if r["attribute"] == "sex_x_race"}
    assert groups == {"F & x", "F & y", "M & x", "M & y"}
    assert "fairness/sex_x_race/equalized_odds_difference" in res.metrics
    none = fairness_audit(_inputs([1, 0] * 20, [1, 1, 0, 0] * 10, sens), {"min_group_size": 1, "intersections": []})
    assert none.details["attributes"] == ["sex", "race"]
    with pytest.raises(ValueError, match="age"):
        fairness_audit(_inputs([1, 0] * 20, [1, 1, 0, 0] * 10, sens), {"intersections": [["sex", "age"]]})


def test_matches_fairlearn_on_random_data():
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    rng = np.random.default_rng(42)
    n = 2000
    sex = rng.choice(["F", "M"], n, p=[0.4, 0.6])
    race = rng.choice(["A", "B", "C"], n, p=[0.6, 0.3, 0.1])
    y = rng.binomial(1, np.where(sex == "M", 0.35, 0.2))
    score = np.clip(0.4 * y + 0.6 * rng.random(n) + 0.05 * (race == "A"), 0, 1)
    pred = (score >= 0.5).astype(int)
    sens = pd.DataFrame({"sex": sex, "race": race})
    res = fairness_audit(AuditInputs(y, score, sens), {"min_group_size": 30})
    by = {(r["attribute"], r["group"]): r for r in res.by_group}
    for attr, feats in {"sex": sex, "race": race, "sex_x_race": sens}.items():
        mf = MetricFrame(
            metrics={"sr": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
            y_true=y,
            y_pred=pred,
            sensitive_features=feats,
        )
        assert res.metrics[f"fairness/{attr}/n_groups_judged"] == len(mf.by_group)
        for key, row in mf.by_group.iterrows():
            label = " & ".join(key) if isinstance(key, tuple) else key
            ours = by[(attr, label)]
            assert ours["selection_rate"] == pytest.approx(row["sr"])
            assert ours["true_positive_rate"] == pytest.approx(row["tpr"])
            assert ours["false_positive_rate"] == pytest.approx(row["fpr"])
        assert res.metrics[f"fairness/{attr}/demographic_parity_difference"] == pytest.approx(
            demographic_parity_difference(y, pred, sensitive_features=feats)
        )
        assert res.metrics[f"fairness/{attr}/equalized_odds_difference"] == pytest.approx(
            equalized_odds_difference(y, pred, sensitive_features=feats)
        )
    # sanity: the independent numbers are not trivially zero
    assert res.metrics["fairness/race/demographic_parity_difference"] > 0.01


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.sampled_from("abc")), min_size=2, max_size=40))
def test_dp_ratio_and_difference_in_unit_interval(rows):
    y, p, g = (list(t) for t in zip(*rows))
    res = fairness_audit(_inputs(y, p, {"g": g}), {"min_group_size": 1})
    diff = res.metrics["fairness/g/demographic_parity_difference"]
    ratio = res.metrics["fairness/g/demographic_parity_ratio"]
    if len(set(g)) < 2:
        assert math.isnan(diff) and math.isnan(ratio)
        return
    assert 0.0 <= diff <= 1.0
    if sum(p) == 0:  # nobody selected: 0/0
        assert math.isnan(ratio)
    else:
        assert 0.0 <= ratio <= 1.0
    for r in res.by_group:
        assert 0.0 <= r["selection_rate_ci_low"] <= r["selection_rate"] <= r["selection_rate_ci_high"] <= 1.0
