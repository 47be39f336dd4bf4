"""Multiclass performance and group-robustness audits on a 6-row example computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from impactflow.audits import AUDIT_THRESHOLDS, AUDITS, AuditInputs
from impactflow.audits.groups import group_robustness_audit, multiclass_performance_audit, top_label_ece
from impactflow.audits.results import Status

# y_true = 0 0 1 1 2 2; predictions (argmax) = 0 1 1 1 2 0 -> 4 of 6 right
Y = np.array([0, 0, 1, 1, 2, 2])
P = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.3, 0.6, 0.1],
        [0.1, 0.7, 0.2],
        [0.2, 0.5, 0.3],
        [0.1, 0.2, 0.7],
        [0.5, 0.1, 0.4],
    ]
)
LABELS = ("zero", "one", "two")


def _inputs(groups=None, synthetic=()):
    sensitive = pd.DataFrame({"g": groups}) if groups is not None else pd.DataFrame(index=range(6))
    return AuditInputs(Y, P, sensitive, task="multiclass", labels=LABELS, synthetic_groups=synthetic)


def test_registered_with_threshold_keys():
    assert AUDITS["performance_multiclass"] is multiclass_performance_audit
    assert AUDITS["group_robustness"] is group_robustness_audit
    assert {"min_accuracy", "max_ece"} <= set(AUDIT_THRESHOLDS["performance_multiclass"])
    assert {"max_worst_group_gap", "min_group_size", "intersections"} <= set(AUDIT_THRESHOLDS["group_robustness"])


def test_multiclass_metrics_by_hand():
    r = multiclass_performance_audit(_inputs(), {"min_accuracy": 0.7, "max_ece": 0.3})
    m = r.metrics
    assert m["eval/accuracy"] == pytest.approx(4 / 6)
    # per-class recall 1/2, 2/2, 1/2
    assert m["eval/balanced_accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    # F1 per class: P=1/2,R=1/2 -> 0.5; P=2/3,R=1 -> 0.8; P=1,R=1/2 -> 2/3
    assert m["eval/macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["eval/log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.3, 0.7, 0.5, 0.7, 0.4])))
    # 15 bins: conf .8 (bin 12, right), .6 (9, wrong), .7+.7 (10, both right), .5+.5 (7, one right)
    assert m["eval/ece"] == pytest.approx((0.2 + 0.6 + 0.6 + 0.0) / 6)
    assert m["eval/n"] == 6
    assert r.details["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert r.details["class_labels"] == list(LABELS)
    gates = {g.name: g for g in r.gates}
    assert gates["eval/accuracy"].status is Status.FAIL
    assert gates["eval/ece"].status is Status.PASS
    assert r.status is Status.FAIL


def test_top_label_ece_is_zero_when_confidence_matches_accuracy():
    # two predictions at confidence 0.5, one right one wrong -> same bin, |1.0 - 1| / 2 = 0
    assert top_label_ece([0, 1], [[0.5, 0.5], [0.5, 0.5]]) == pytest.approx(0.0)


def test_group_robustness_by_hand():
    r = group_robustness_audit(
        _inputs(groups=["a", "a", "b", "b", "b", "b"], synthetic=("g",)),
        {"max_worst_group_gap": 0.1, "min_group_size": 1, "intersections": [["class", "g"]]},
    )
    rows = {(x["attribute"], x["group"]): x for x in r.by_group}
    # per class (= recall): zero 1/2, one 2/2, two 1/2
    assert rows[("class", "zero")]["accuracy"] == pytest.approx(0.5)
    assert rows[("class", "one")]["accuracy"] == pytest.approx(1.0)
    assert rows[("class", "one")]["precision"] == pytest.approx(2 / 3)
    m = r.metrics
    assert m["groups/accuracy"] == pytest.approx(4 / 6)
    assert m["groups/class/worst_group_accuracy"] == pytest.approx(0.5)
    assert m["groups/class/accuracy_difference"] == pytest.approx(0.5)  # recall disparity
    assert m["groups/class/worst_group_gap"] == pytest.approx(4 / 6 - 0.5)
    # declared group g: a = rows 0,1 (1 of 2 right), b = rows 2-5 (3 of 4 right)
    assert rows[("g", "a")]["accuracy"] == pytest.approx(0.5)
    assert rows[("g", "b")]["accuracy"] == pytest.approx(0.75)
    assert m["groups/g/accuracy_difference"] == pytest.approx(0.25)
    assert rows[("g", "a")]["synthetic"] is True and rows[("class", "one")]["synthetic"] is False
    # Wilson 95% interval of 1/2: centre 0.5, half-width 1.96/(1+1.96²/2)·sqrt(1/8 + 1.96²/16)
    z = 1.959964
    half = z / (1 + z * z / 2) * math.sqrt(0.125 + z * z / 16)
    assert rows[("g", "a")]["accuracy_ci_low"] == pytest.approx(0.5 - half, abs=1e-6)
    # intersection (class, g): "zero & a" 1/2, "one & b" 2/2, "two & b" 1/2
    assert rows[("class_x_g", "one & b")]["accuracy"] == pytest.approx(1.0)
    assert m["groups/class_x_g/worst_group_accuracy"] == pytest.approx(0.5)
    gates = {g.name: g for g in r.gates}
    assert gates["groups/g/worst_group_gap"].status is Status.FAIL
    assert gates["groups/g/worst_group_gap"].note == "synthetic groups"
    assert gates["groups/class/worst_group_gap"].value == pytest.approx(1 / 6)
    assert r.status is Status.FAIL
    assert any("synthetic groups" in n and "g" in n for n in r.notes)


def test_small_groups_are_reported_not_gated():
    r = group_robustness_audit(
        _inputs(groups=["a", "a", "b", "b", "b", "b"]), {"max_worst_group_gap": 0.1, "min_group_size": 3}
    )
    rows = {(x["attribute"], x["group"]): x for x in r.by_group}
    assert rows[("g", "a")]["too_small"] and not rows[("g", "b")]["too_small"]
    # only group b (0.75) is judged: gap = 4/6 - 0.75 < 0 -> pass
    assert r.metrics["groups/g/worst_group_accuracy"] == pytest.approx(0.75)
    gates = {g.name: g for g in r.gates}
    assert gates["groups/g/worst_group_gap"].status is Status.PASS
    # every class has 2 rows < 3: nothing judged, the gate is not measured
    assert gates["groups/class/worst_group_gap"].status is Status.NOT_MEASURED


def test_unknown_intersection_column_is_named():
    with pytest.raises(ValueError, match="nope"):
        group_robustness_audit(_inputs(groups=list("aabbbb")), {"intersections": [["class", "nope"]]})


def test_binary_inputs_are_skipped_not_raised():
    inputs = AuditInputs(np.array([0, 1]), np.array([0.2, 0.9]), pd.DataFrame(index=range(2)))
    assert multiclass_performance_audit(inputs, {}).status is Status.SKIPPED
    assert group_robustness_audit(inputs, {}).status is Status.SKIPPED
