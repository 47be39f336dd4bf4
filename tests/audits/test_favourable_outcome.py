"""The outcome's direction (issue 21, item 4) on COMPAS-like literal data.

Prediction 1 = "high risk" (the adverse decision), label 1 = re-offended. Hand counts:

    African-American (n=100): TP 40, FN 10, FP 20, TN 30 -> high risk 60, low risk 40
    Caucasian        (n=100): TP 20, FN 20, FP 10, TN 50 -> high risk 30, low risk 70
    Other            (n=5):   TN 5                        -> low risk 5 (too small to judge)

With "low risk" (prediction 0) favourable: favourable rates 0.40 / 0.70, DP difference 0.30, the
four-fifths ratio 0.40 / 0.70 = 0.5714 and the flagged group is African-American, the group more
often predicted high risk. TPR 0.8 / 0.5, FPR 0.4 / 0.1667 keep their meaning w.r.t. the label.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from impactflow.audits import AuditInputs
from impactflow.audits.fairness import fairness_audit, favourable_extra
from impactflow.audits.plots import four_fifths_band


def _rows(group: str, tp: int, fn: int, fp: int, tn: int) -> list[tuple[str, int, int]]:
    return [(group, 1, 1)] * tp + [(group, 1, 0)] * fn + [(group, 0, 1)] * fp + [(group, 0, 0)] * tn


def compas_like(**extra) -> AuditInputs:
    rows = _rows("African-American", 40, 10, 20, 30) + _rows("Caucasian", 20, 20, 10, 50) + _rows("Other", 0, 0, 0, 5)
    df = pd.DataFrame(rows, columns=["race", "y", "pred"])
    return AuditInputs(
        y_true=df["y"].to_numpy(), y_score=df["pred"].astype(float).to_numpy(), sensitive=df[["race"]], extra=extra
    )


THRESHOLDS = {"n_boot": 200, "min_group_size": 30}


def test_favourable_extra_compares_the_labels_as_text():
    assert favourable_extra("High", "Low")["favourable_prediction"] == 0
    assert favourable_extra(">50K", ">50K")["favourable_prediction"] == 1
    assert favourable_extra("1", None) == {}  # not declared: the positive label is favourable, as before


def test_adverse_positive_prediction_flags_the_group_more_often_predicted_high_risk():
    res = fairness_audit(compas_like(**favourable_extra("High", "Low")), THRESHOLDS)
    m = res.metrics
    assert m["fairness/race/demographic_parity_difference"] == pytest.approx(0.30)
    assert m["fairness/race/four_fifths_min_ratio"] == pytest.approx(0.40 / 0.70)
    assert m["fairness/race/equalized_odds_difference"] == pytest.approx(0.30)  # TPR 0.8 - 0.5
    rows = {r["group"]: r for r in res.by_group}
    aa, cau = rows["African-American"], rows["Caucasian"]
    assert (aa["selection_rate"], cau["selection_rate"]) == (pytest.approx(0.40), pytest.approx(0.70))
    assert (aa["positive_prediction_rate"], cau["positive_prediction_rate"]) == (pytest.approx(0.6), pytest.approx(0.3))
    # error rates keep their meaning w.r.t. the label
    assert (aa["true_positive_rate"], aa["false_positive_rate"], aa["false_negative_rate"]) == (
        pytest.approx(0.8),
        pytest.approx(0.4),
        pytest.approx(0.2),
    )
    assert cau["false_positive_rate"] == pytest.approx(10 / 60)
    assert aa["selection_rate_ratio_to_max"] == pytest.approx(0.40 / 0.70) and cau["selection_rate_ratio_to_max"] == 1.0
    assert rows["Other"]["too_small"] and rows["Other"]["selection_rate"] == 1.0
    # the disadvantaged group and the pair behind every gap
    gaps = {g["metric"].rsplit("/", 1)[1]: g for g in res.details["gaps"]}
    for metric in ("demographic_parity_difference", "four_fifths_min_ratio", "equalized_odds_difference"):
        assert gaps[metric]["disadvantaged_group"] == "African-American"
        assert gaps[metric]["advantaged_group"] == "Caucasian"
    assert gaps["equalized_odds_difference"]["rate"] == "true_positive_rate"
    assert (gaps["equalized_odds_difference"]["lowest"], gaps["equalized_odds_difference"]["highest"]) == (
        pytest.approx(0.5),
        pytest.approx(0.8),
    )
    assert res.details["favourable_prediction"] == 0
    gate = {g.name: g for g in res.gates}["fairness/race/four_fifths_min_ratio"]
    assert gate.status.value == "fail" and "disadvantaged: 'African-American'" in gate.note
    assert any("'African-American' selection rate 0.4000" in n and "below the four-fifths" in n for n in res.notes)
    assert not any("'Caucasian' selection rate" in n and "below the four-fifths" in n for n in res.notes)


def test_positive_favourable_by_default_flags_the_other_group():
    """The old reading (a positive prediction is good) flags Caucasian: what issue 21 reported."""
    res = fairness_audit(compas_like(), THRESHOLDS)
    assert res.metrics["fairness/race/four_fifths_min_ratio"] == pytest.approx(0.30 / 0.60)
    gaps = {g["metric"].rsplit("/", 1)[1]: g for g in res.details["gaps"]}
    assert gaps["four_fifths_min_ratio"]["disadvantaged_group"] == "Caucasian"
    # TPR: lower is worse when a positive prediction is favourable
    assert gaps["equalized_odds_difference"]["disadvantaged_group"] == "Caucasian"
    # the DP difference and EO difference are the same in both directions; the ratio is not
    adverse = fairness_audit(compas_like(**favourable_extra("High", "Low")), THRESHOLDS).metrics
    assert adverse["fairness/race/demographic_parity_difference"] == pytest.approx(
        res.metrics["fairness/race/demographic_parity_difference"]
    )
    assert adverse["fairness/race/demographic_parity_ratio"] != pytest.approx(
        res.metrics["fairness/race/demographic_parity_ratio"]
    )


def test_the_four_fifths_band_ignores_groups_too_small_to_judge():
    res = fairness_audit(compas_like(**favourable_extra("High", "Low")), THRESHOLDS)
    # 'Other' has rate 1.0 but n=5: the band is 0.8 x Caucasian's 0.70, not 0.8 x 1.0
    assert four_fifths_band(res.by_group) == pytest.approx(0.8 * 0.70)
    assert four_fifths_band([{"selection_rate": 0.9, "too_small": True}]) is None
    from impactflow.audits.plots import group_bars_png

    assert group_bars_png(res.by_group, "race")[:4] == b"\x89PNG"


def test_intervals_with_an_adverse_positive_are_of_the_favourable_rate():
    res = fairness_audit(compas_like(**favourable_extra("High", "Low")), {**THRESHOLDS, "n_boot": 500})
    m = res.metrics
    lo, hi = m["fairness/race/demographic_parity_ratio_ci_low"], m["fairness/race/demographic_parity_ratio_ci_high"]
    assert lo < 0.40 / 0.70 < hi and hi < 0.8  # around 0.57, not the 0.5 of the positive-prediction rate's ratio
    assert np.isfinite(m["fairness/race/equalized_odds_difference_ci_low"])
