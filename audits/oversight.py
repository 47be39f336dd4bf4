"""Human oversight: how much of the work the model could take over, and at what accuracy.

An *automation/deferral curve*: for a confidence threshold t, the model decides a case on its
own when its confidence is at least t and defers it to a person otherwise.

- confidence: binary ``max(p, 1 − p)`` with p = P(y = 1); multiclass ``max_k p_k``.
- coverage(t) = share of cases with confidence ≥ t (the share that could be automated);
- accuracy(t) = accuracy on those cases (undefined when none are automated);
- deferral rate by group at the configured t, with Wilson 95% intervals, and the gap between
  the highest and lowest group's deferral rate.

This is the "selective classification" risk–coverage view (Geifman & El-Yaniv 2017, "Selective
classification for deep neural networks"). Rating models (recommenders) give no calibrated
confidence per case, so the audit reports ``not-measured`` for them and says so.

Thresholds (``gates.oversight``): ``confidence_level`` (default 0.9) is the threshold the
deferral rates are reported at; ``min_coverage``, ``min_automated_accuracy`` and
``max_deferral_rate_gap`` make gates when set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .inputs import AuditInputs
from .results import AuditResult, Status, overall_status
from .stats import threshold_gates, wilson_interval
from .thresholds import Threshold, at_least, at_most, defaults, gate_table, setting
from impactflow.task_kind import TaskKind

OVERSIGHT_THRESHOLDS: dict[str, Threshold] = {
    "confidence_level": setting(0.9, "fraction"),
    "min_coverage": at_least("coverage", metric="oversight/coverage"),
    "min_automated_accuracy": at_least("automated_accuracy", metric="oversight/automated_accuracy"),
    "max_deferral_rate_gap": at_most("deferral_rate_gap", metric="oversight/deferral_rate_gap"),
}
OVERSIGHT_DEFAULTS = defaults(OVERSIGHT_THRESHOLDS)
# Thresholds the curve is drawn at (plus the configured one).
CURVE_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)
_GATES = gate_table(OVERSIGHT_THRESHOLDS)


def confidence_and_correct(y_true, y_score, task: str, decision_threshold: float = 0.5):
    """Per-case confidence and whether the model's decision is right (binary or multiclass)."""
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=float)
    if task == TaskKind.BINARY:
        conf = np.maximum(y_score, 1.0 - y_score)
        correct = (y_score >= decision_threshold).astype(int) == y_true.astype(int)
    elif task == TaskKind.MULTICLASS:
        conf = y_score.max(axis=1)
        correct = y_score.argmax(axis=1) == y_true.astype(int)
    else:
        raise ValueError(f"no confidence for task {task!r}")
    return conf, correct


def deferral_curve(confidence, correct, thresholds=CURVE_THRESHOLDS) -> list[dict[str, Any]]:
    """Rows ``{threshold, coverage, automated, automated_accuracy, deferral_rate}``."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    n = confidence.size
    rows = []
    for t in sorted(set(float(x) for x in thresholds)):
        auto = confidence >= t
        k = int(auto.sum())
        rows.append(
            {
                "threshold": t,
                "automated": k,
                "coverage": k / n if n else None,
                "deferral_rate": 1 - k / n if n else None,
                "automated_accuracy": float(correct[auto].mean()) if k else None,
            }
        )
    return rows


def deferral_by_group(confidence, sensitive, threshold: float) -> list[dict[str, Any]]:
    """Deferral rate (confidence < threshold) per group of every sensitive column, Wilson CIs."""
    deferred = np.asarray(confidence, dtype=float) < threshold
    rows = []
    for attr in sensitive.columns:
        values = sensitive[attr].astype(str).to_numpy()
        for group in sorted(set(values)):
            mask = values == group
            n, d = int(mask.sum()), int(deferred[mask].sum())
            low, high = wilson_interval(d, n)
            rows.append(
                {
                    "attribute": str(attr),
                    "group": group,
                    "n": n,
                    "deferred": d,
                    "deferral_rate": d / n,
                    "deferral_rate_ci_low": low,
                    "deferral_rate_ci_high": high,
                }
            )
    return rows


def oversight_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    t = {**OVERSIGHT_DEFAULTS, **{k: v for k, v in thresholds.items() if v is not None}}
    level = float(t["confidence_level"])
    if not inputs.task.classifies:
        return AuditResult(
            name="oversight",
            status=Status.NOT_MEASURED,
            thresholds={"confidence_level": level},
            notes=[
                f"automation/deferral curve not measured: a {inputs.task} model gives no per-case "
                "confidence to defer on"
            ],
        )
    if inputs.y_true.size == 0:
        return AuditResult(name="oversight", status=Status.NOT_MEASURED, notes=["no test rows"])
    conf, correct = confidence_and_correct(inputs.y_true, inputs.y_score, inputs.task, inputs.decision_threshold)
    curve = deferral_curve(conf, correct, (*CURVE_THRESHOLDS, level))
    at = next(r for r in curve if r["threshold"] == level)
    by_group = deferral_by_group(conf, inputs.sensitive, level)
    gaps = {}
    for attr in dict.fromkeys(r["attribute"] for r in by_group):
        rates = [r["deferral_rate"] for r in by_group if r["attribute"] == attr]
        gaps[attr] = max(rates) - min(rates)
    metrics: dict[str, float | None] = {
        "oversight/confidence_level": level,
        "oversight/coverage": at["coverage"],
        "oversight/deferral_rate": at["deferral_rate"],
        "oversight/automated_accuracy": at["automated_accuracy"],
        "oversight/overall_accuracy": float(np.mean(correct)),
    }
    for attr, gap in gaps.items():
        metrics[f"oversight/{attr}/deferral_rate_gap"] = gap
    metrics["oversight/deferral_rate_gap"] = max(gaps.values()) if gaps else None
    gates, used = threshold_gates(t, _GATES, metrics)
    return AuditResult(
        name="oversight",
        status=overall_status(gates),  # no gate configured -> not-measured, as every audit
        metrics=metrics,
        by_group=by_group,
        thresholds={"confidence_level": level, **used},
        gates=gates,
        notes=[
            f"At confidence ≥ {level:g} the model would decide {at['coverage']:.1%} of test cases on its own; "
            "the rest would go to a person.",
            "Deferral rates differ by group when the model is less sure about some groups: those groups "
            "get more human review (and the automated share serves them less).",
        ],
        details={
            "curve": curve,
            "line_plots": [
                {
                    "title": "Automation/deferral curve (test)",
                    "x_label": "coverage (share decided automatically)",
                    "y_label": "accuracy on automated cases",
                    "series": [
                        {
                            "label": "model",
                            "x": [r["coverage"] for r in curve],
                            "y": [r["automated_accuracy"] for r in curve],
                        }
                    ],
                }
            ],
            "conventions": {
                "confidence": "binary: max(p, 1 − p); multiclass: the highest class probability",
                "coverage": "share of test cases with confidence ≥ threshold",
                "deferral rate by group": "share of the group's cases below the threshold; 95% Wilson CIs",
            },
        },
    )
