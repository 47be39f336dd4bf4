import math

import numpy as np
import pandas as pd
import pytest

from impactflow.audits.inputs import AuditInputs
from impactflow.audits.performance import (
    calibration_bins,
    classification_metrics,
    expected_calibration_error,
    performance_audit,
)
from impactflow.audits.results import Status

# threshold 0.5, score >= 0.5 is positive:
# y_true = 1 1 1 0 0 0 1 0
# y_pred = 1 1 0 0 1 0 1 1   -> TP=3 (rows 0,1,6), FN=1 (row 2), FP=2 (rows 4,7), TN=2 (rows 3,5)
Y = np.array([1, 1, 1, 0, 0, 0, 1, 0])
S = np.array([0.9, 0.6, 0.4, 0.2, 0.7, 0.1, 0.5, 0.5])


def test_classification_metrics_hand_computed():
    m = classification_metrics(Y, S, threshold=0.5)
    assert set(m) == {
        "accuracy",
        "balanced_accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "log_loss",
        "ece",
        "tn",
        "fp",
        "fn",
        "tp",
        "n",
    }
    assert (m["tn"], m["fp"], m["fn"], m["tp"], m["n"]) == (2, 2, 1, 3, 8)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))
    # balanced accuracy = (TPR + TNR)/2 = (3/4 + 2/4)/2
    assert m["balanced_accuracy"] == pytest.approx(0.625)
    # AUC: pairs (pos > neg) out of 4*4: 0.9->4, 0.6->3, 0.4->2, 0.5->2 + tie 0.5 = 11.5/16
    assert m["roc_auc"] == pytest.approx(11.5 / 16)
    expected_ll = -np.mean(
        [math.log(p) for p in (0.9, 0.6, 0.4, 0.5)] + [math.log(1 - p) for p in (0.2, 0.7, 0.1, 0.5)]
    )
    assert m["log_loss"] == pytest.approx(expected_ll)


def test_threshold_moves_predictions():
    m = classification_metrics(Y, S, threshold=0.55)
    # scores 0.5 now negative: row 6 becomes FN, row 7 becomes TN
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (3, 1, 2, 2)


def test_ece_four_points_two_bins():
    # bins [0,0.5) and [0.5,1]: bin0 scores .1,.3 mean .2, labels 0,1 rate .5 -> |.2-.5|*2/4=.15
    # bin1 scores .8,.95 mean .875, labels 1,0 rate .5 -> |.875-.5|*2/4 = .1875; total .3375
    y, s = [0, 1, 1, 0], [0.1, 0.3, 0.8, 0.95]
    assert expected_calibration_error(y, s, n_bins=2) == pytest.approx(0.3375)
    # 15 bins: each point alone -> mean |s - y| = (.1 + .7 + .2 + .95)/4 = .4875
    assert expected_calibration_error(y, s) == pytest.approx(0.4875)


def test_ece_score_one_in_last_bin_and_perfect_calibration():
    assert expected_calibration_error([1], [1.0], n_bins=10) == 0.0
    # bin [0.5,0.6) has scores 0.5,0.5 and one of two positive -> calibrated
    assert expected_calibration_error([1, 0], [0.5, 0.5]) == pytest.approx(0.0)


def test_calibration_bins():
    bins = calibration_bins([0, 1, 1, 0], [0.1, 0.3, 0.8, 0.95], n_bins=2)
    assert len(bins) == 2
    assert bins[0] == {"lower": 0.0, "upper": 0.5, "count": 2, "mean_score": pytest.approx(0.2), "positive_rate": 0.5}
    assert bins[1]["mean_score"] == pytest.approx(0.875)
    empty = calibration_bins([1], [0.9], n_bins=4)
    assert empty[0]["count"] == 0 and math.isnan(empty[0]["mean_score"])


def _inputs(y, s, **kw):
    return AuditInputs(y_true=y, y_score=s, sensitive=pd.DataFrame(index=range(len(y))), **kw)


def test_performance_audit_metrics_gates_details():
    res = performance_audit(_inputs(Y, S), {"min_accuracy": 0.6, "min_roc_auc": 0.9})
    assert res.name == "performance"
    assert res.metrics["eval/accuracy"] == pytest.approx(0.625)
    assert res.metrics["eval/tp"] == 3
    lo, hi = res.metrics["eval/accuracy_ci_low"], res.metrics["eval/accuracy_ci_high"]
    assert lo < 0.625 < hi
    gates = {g.name: g for g in res.gates}
    assert set(gates) == {"eval/accuracy", "eval/roc_auc"}  # max_ece absent -> no gate
    assert gates["eval/accuracy"].status is Status.PASS
    assert gates["eval/roc_auc"].status is Status.FAIL  # 0.71875 < 0.9
    assert res.status is Status.FAIL
    assert res.details["confusion_matrix"] == [[2, 2], [1, 3]]
    assert res.details["roc"]["fpr"][0] == 0.0 and res.details["roc"]["tpr"][-1] == 1.0
    assert len(res.details["calibration"]) == 10
    assert res.to_dict()["status"] == "fail"


def test_performance_audit_max_ece_and_roc_downsampled():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    s = np.clip(0.35 * y + 0.65 * rng.random(5000), 0, 1)
    res = performance_audit(_inputs(y, s), {"max_ece": 1.0})
    assert [g.status for g in res.gates] == [Status.PASS]
    assert len(res.details["roc"]["fpr"]) <= 200
    assert res.details["roc"]["fpr"][-1] == 1.0


def test_single_class_labels_give_not_measured_auc_gate():
    res = performance_audit(_inputs([1, 1, 1], [0.9, 0.2, 0.7]), {"min_roc_auc": 0.5})
    assert math.isnan(res.metrics["eval/roc_auc"])
    assert res.gates[0].status is Status.NOT_MEASURED
    assert res.status is Status.NOT_MEASURED
    assert res.details["roc"] == {"fpr": [], "tpr": []}


def test_inputs_validation():
    with pytest.raises(ValueError):
        _inputs([0, 1], [0.5])
    with pytest.raises(ValueError):
        _inputs([0, 2], [0.5, 0.5])
