"""Bias mitigation comparison (binary tasks): the model's test decisions before and after
fairlearn's ``ThresholdOptimizer`` post-processing (Hardt, Price & Srebro 2016, "Equality of
opportunity in supervised learning"), and what it costs in accuracy.

- The optimizer is fitted on the VALIDATION split's scores (never the test split), per group of
  one sensitive attribute (``attribute``, default: the first one the contract declares), and
  applied to the test split's scores.
- It works on score arrays, so it wraps the scores in a stand-in "estimator" whose ``predict``
  returns its single input column (``prefit=True, predict_method="predict"``); fairlearn then
  searches group-specific thresholds on those scores exactly as it would on a fitted model's.
- ``ThresholdOptimizer`` needs the sensitive attribute at prediction time and randomises between
  two thresholds for some groups (``random_state`` fixes it). This is a comparison of what
  post-processing would change, NOT the deployed model: using a protected attribute in the
  decision may itself be unlawful in some settings (e.g. credit, employment).

Metrics use fairlearn's definitions: demographic parity difference = max − min selection
rate across groups, ratio = min / max, equalized odds difference = max(TPR gap, FPR gap).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .inputs import AuditInputs
from .results import AuditResult, Status, overall_status
from .stats import threshold_gates
from .thresholds import Threshold, at_most, defaults, gate_table, setting
from impactflow.task_kind import TaskKind

CONSTRAINTS = ("demographic_parity", "equalized_odds")  # fairlearn's names
MITIGATION_THRESHOLDS: dict[str, Threshold] = {
    "constraints": setting("demographic_parity", "choice", CONSTRAINTS),
    "attribute": setting(None, "column"),  # None = the first sensitive column (not made-up groups)
    # gate on accuracy(before) − accuracy(after)
    "max_accuracy_cost": at_most("accuracy_cost", metric="mitigation/accuracy_cost"),
}
MITIGATION_DEFAULTS = defaults(MITIGATION_THRESHOLDS)
MIN_GROUP_ROWS = 2  # fairlearn needs both labels per group in the fitting data


def score_estimator():
    """A prefit stand-in estimator: ``predict(X)`` returns ``X``'s only column (the scores).
    Built on sklearn's ``BaseEstimator`` (imported lazily) so fairlearn's fitted check accepts it."""
    from sklearn.base import BaseEstimator

    class ScoreEstimator(BaseEstimator):
        def fit(self, X, y=None):
            self.fitted_ = True  # check_is_fitted looks for a trailing-underscore attribute
            return self

        def predict(self, X):
            return np.asarray(X, dtype=float)[:, 0]

    return ScoreEstimator().fit(None)


def threshold_optimizer_predictions(
    val_scores,
    val_y,
    val_groups,
    test_scores,
    test_groups,
    *,
    constraints: str = "demographic_parity",
    random_state: int = 0,
) -> np.ndarray:
    """Fit ``ThresholdOptimizer`` on validation scores/labels/groups, return 0/1 decisions on test."""
    from fairlearn.postprocessing import ThresholdOptimizer

    opt = ThresholdOptimizer(
        estimator=score_estimator(),
        constraints=constraints,
        objective="accuracy_score",
        prefit=True,
        predict_method="predict",
    )
    opt.fit(
        np.asarray(val_scores, dtype=float).reshape(-1, 1),
        np.asarray(val_y).astype(int),
        sensitive_features=np.asarray(val_groups).astype(str),
    )
    return np.asarray(
        opt.predict(
            np.asarray(test_scores, dtype=float).reshape(-1, 1),
            sensitive_features=np.asarray(test_groups).astype(str),
            random_state=random_state,
        )
    ).astype(int)


def decision_metrics(y_true, y_pred, groups) -> dict[str, Any]:
    """Accuracy, per-group selection rate, and fairlearn's DP difference/ratio and EO difference."""
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        selection_rate,
    )
    from sklearn.metrics import accuracy_score

    groups = np.asarray(groups).astype(str)
    frame = MetricFrame(
        metrics={"selection_rate": selection_rate, "accuracy": accuracy_score},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=groups,
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "selection_rate": float(np.mean(y_pred)),
        "demographic_parity_difference": float(
            demographic_parity_difference(y_true, y_pred, sensitive_features=groups)
        ),
        "demographic_parity_ratio": float(demographic_parity_ratio(y_true, y_pred, sensitive_features=groups)),
        "equalized_odds_difference": float(equalized_odds_difference(y_true, y_pred, sensitive_features=groups)),
        "by_group": {
            str(g): {"selection_rate": float(r["selection_rate"]), "accuracy": float(r["accuracy"])}
            for g, r in frame.by_group.iterrows()
        },
    }


def _not_measured(why: str, used: dict | None = None) -> AuditResult:
    return AuditResult(
        name="mitigation",
        status=Status.NOT_MEASURED,
        thresholds=used or {},
        notes=[f"mitigation comparison not measured: {why}"],
    )


def mitigation_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    t = {**MITIGATION_DEFAULTS, **{k: v for k, v in thresholds.items() if v is not None}}
    constraints = str(t["constraints"])
    if constraints not in CONSTRAINTS:
        raise ValueError(f"mitigation constraints must be one of {CONSTRAINTS}, got {constraints!r}")
    if inputs.task != TaskKind.BINARY:
        return _not_measured(f"post-processing by group thresholds applies to binary decisions, not {inputs.task}")
    val = inputs.extra.get("validation") if isinstance(inputs.extra, dict) else None
    if not val:
        return _not_measured("no validation-split scores were passed to fit the post-processor on")
    real = [c for c in inputs.sensitive.columns if c not in inputs.synthetic_groups]
    attr = t["attribute"] or (real[0] if real else None)
    if attr is None:
        return _not_measured("no sensitive attribute")
    val_sens = pd.DataFrame(val["sensitive"]).reset_index(drop=True)
    if attr not in inputs.sensitive.columns or attr not in val_sens.columns:
        return _not_measured(f"sensitive attribute {attr!r} is not in the test and validation rows")
    val_y = np.asarray(val["y_true"]).astype(int)
    val_groups = val_sens[attr].astype(str).to_numpy()
    # fairlearn needs each group's positives and negatives in the data it fits on
    for g in sorted(set(val_groups)):
        ys = val_y[val_groups == g]
        if len(ys) < MIN_GROUP_ROWS or len(set(ys.tolist())) < 2:
            return _not_measured(f"group {attr}={g} has too few validation rows of both labels to fit thresholds")
    test_groups = inputs.sensitive[attr].astype(str).to_numpy()
    unseen = sorted(set(test_groups) - set(val_groups))
    if unseen:
        return _not_measured(f"test groups {unseen} of {attr!r} do not occur in the validation split")
    after_pred = threshold_optimizer_predictions(
        val["y_score"], val_y, val_groups, inputs.y_score, test_groups, constraints=constraints
    )
    before = decision_metrics(inputs.y_true, inputs.y_pred, test_groups)
    after = decision_metrics(inputs.y_true, after_pred, test_groups)
    metrics: dict[str, float] = {}
    for stage, m in (("before", before), ("after", after)):
        for k in (
            "accuracy",
            "selection_rate",
            "demographic_parity_difference",
            "demographic_parity_ratio",
            "equalized_odds_difference",
        ):
            metrics[f"mitigation/{attr}/{stage}/{k}"] = m[k]
    metrics[f"mitigation/{attr}/accuracy_cost"] = before["accuracy"] - after["accuracy"]
    metrics["mitigation/accuracy_cost"] = metrics[f"mitigation/{attr}/accuracy_cost"]
    gates, used = threshold_gates(t, gate_table(MITIGATION_THRESHOLDS), metrics)
    by_group = [
        {
            "attribute": attr,
            "group": g,
            "selection_rate_before": before["by_group"][g]["selection_rate"],
            "selection_rate_after": after["by_group"][g]["selection_rate"],
            "accuracy_before": before["by_group"][g]["accuracy"],
            "accuracy_after": after["by_group"][g]["accuracy"],
        }
        for g in before["by_group"]
    ]
    return AuditResult(
        name="mitigation",
        status=overall_status(gates),
        metrics=metrics,
        by_group=by_group,
        thresholds={"constraints": constraints, "attribute": attr, **used},
        gates=gates,
        notes=[
            f"fairlearn ThresholdOptimizer(constraints={constraints!r}) fitted on the validation split's scores "
            f"by {attr}, applied to the test split.",
            "Post-processing needs the sensitive attribute at decision time: this is a comparison of what it "
            "would change, not the deployed model; using a protected attribute in decisions may be unlawful.",
        ],
        details={
            "attribute": attr,
            "constraints": constraints,
            "bar_charts": [
                {
                    "title": f"Selection rate by {attr}: before / after mitigation",
                    "labels": [f"{g} before" for g in before["by_group"]] + [f"{g} after" for g in after["by_group"]],
                    "values": [before["by_group"][g]["selection_rate"] for g in before["by_group"]]
                    + [after["by_group"][g]["selection_rate"] for g in after["by_group"]],
                    "xlabel": "selection rate",
                }
            ],
        },
    )
