"""Multiclass performance and group robustness (how accuracy splits across classes and groups).

Two audits over ``AuditInputs`` with ``task == "multiclass"`` (``y_score`` = (N, K) class
probabilities, ``y_true`` = class index, ``labels`` = class names):

- ``multiclass_performance_audit``: accuracy (95 % Wilson CI), balanced accuracy, macro-F1,
  log loss, top-label ECE, the K x K confusion matrix. Gate keys ``min_accuracy``,
  ``min_balanced_accuracy``, ``min_macro_f1``, ``max_ece``.
- ``group_robustness_audit``: per-class accuracy (= recall of the class) with Wilson CIs,
  worst-class accuracy and the recall disparity (max - min); then, for every declared group
  column (e.g. a synthetic colour) and every requested intersection (``class`` names the true
  label, so ``[class, color]`` gives the Waterbirds-style (label, attribute) groups of Sagawa et
  al. 2020), per-group accuracy with Wilson CIs (fairlearn ``MetricFrame``), worst-group accuracy
  and its gap to the average (overall accuracy - worst-group accuracy). Gate keys
  ``max_worst_group_gap``, ``min_worst_group_accuracy``, ``max_accuracy_difference``;
  ``min_group_size`` (smaller groups are reported, never gated), ``intersections``, ``ci_level``.
  Groups the project made up (``inputs.synthetic_groups``) are flagged ``synthetic`` in every
  row and named in the notes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .inputs import AuditInputs
from .results import AuditResult, Status, overall_status
from .fairness import group_labels
from .stats import compare_gate, threshold_gates, wilson_interval
from .thresholds import Threshold, at_least, at_most, defaults, gate_table, setting
from impactflow.task_kind import TaskKind

CLASS = "class"  # attribute name of the true label in by_group rows and intersections
INTERSECTION_SEP = "_x_"

MULTICLASS_THRESHOLDS: dict[str, Threshold] = {
    "min_accuracy": at_least("accuracy", metric="eval/accuracy"),
    "min_balanced_accuracy": at_least("balanced_accuracy", metric="eval/balanced_accuracy"),
    "min_macro_f1": at_least("macro_f1", metric="eval/macro_f1"),
    "max_ece": at_most("ece", metric="eval/ece"),
}
PERFORMANCE_GATES = gate_table(MULTICLASS_THRESHOLDS)
GROUP_THRESHOLDS: dict[str, Threshold] = {
    "max_worst_group_gap": at_most("worst_group_gap", 0.10),
    "min_worst_group_accuracy": at_least("worst_group_accuracy"),
    "max_accuracy_difference": at_most("accuracy_difference"),
    "min_group_size": setting(30, "count"),
    "intersections": setting(None, "columns"),
    "ci_level": setting(0.95, "fraction"),
}
GROUP_DEFAULTS = defaults(GROUP_THRESHOLDS)
# threshold key -> (metric suffix, comparison)
GROUP_GATES: dict[str, tuple[str, str]] = {
    k: (t.gate, t.comparison) for k, t in GROUP_THRESHOLDS.items() if t.gate and t.comparison
}


def top_label_ece(y_true, proba, n_bins: int = 15) -> float:
    """Top-label expected calibration error (Guo et al. 2017, "On Calibration of Modern Neural
    Networks", ICML): confidence c_i = max_k p_ik, correct_i = [argmax_k p_ik == y_i];
    ECE = Σ_b (n_b / N) |mean(c in b) − mean(correct in b)| over ``n_bins`` equal-width bins of
    [0, 1] (bin b = [b/B, (b+1)/B), the last bin closed). nan for empty input."""
    y_true = np.asarray(y_true).reshape(-1).astype(int)
    proba = np.asarray(proba, dtype=float)
    n = y_true.shape[0]
    if n == 0:
        return float("nan")
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(float)
    idx = np.clip(np.floor(conf * n_bins).astype(int), 0, n_bins - 1)
    gap = np.bincount(idx, weights=conf, minlength=n_bins) - np.bincount(idx, weights=correct, minlength=n_bins)
    return float(np.abs(gap).sum() / n)


def top_label_bins(y_true, proba, n_bins: int = 10) -> list[dict[str, float]]:
    """Reliability bins of the top-label confidence: ``mean_score`` = mean confidence,
    ``positive_rate`` = accuracy in the bin (same keys as the binary calibration bins)."""
    y_true = np.asarray(y_true).reshape(-1).astype(int)
    proba = np.asarray(proba, dtype=float)
    conf = proba.max(axis=1) if len(proba) else np.zeros(0)
    correct = (proba.argmax(axis=1) == y_true).astype(float) if len(proba) else np.zeros(0)
    idx = np.clip(np.floor(conf * n_bins).astype(int), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    s = np.bincount(idx, weights=conf, minlength=n_bins)
    c = np.bincount(idx, weights=correct, minlength=n_bins)
    return [
        {
            "lower": b / n_bins,
            "upper": (b + 1) / n_bins,
            "count": int(counts[b]),
            "mean_score": float(s[b] / counts[b]) if counts[b] else float("nan"),
            "positive_rate": float(c[b] / counts[b]) if counts[b] else float("nan"),
        }
        for b in range(n_bins)
    ]


def multiclass_metrics(y_true, proba, n_classes: int | None = None) -> dict[str, float]:
    """accuracy, balanced_accuracy (mean per-class recall over classes present), macro_f1 (over
    all K classes, ``zero_division=0``), log_loss, top-label ece, n."""
    import warnings

    from sklearn import metrics as skm

    y_true = np.asarray(y_true).reshape(-1).astype(int)
    proba = np.asarray(proba, dtype=float)
    k = int(n_classes or proba.shape[1])
    n = int(y_true.shape[0])
    if n == 0:
        nan = float("nan")
        return {"accuracy": nan, "balanced_accuracy": nan, "macro_f1": nan, "log_loss": nan, "ece": nan, "n": 0.0}
    y_pred = proba.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        balanced = skm.balanced_accuracy_score(y_true, y_pred)
    p = np.clip(proba, 1e-15, 1.0)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(skm.f1_score(y_true, y_pred, labels=list(range(k)), average="macro", zero_division=0)),
        "log_loss": float(skm.log_loss(y_true, p / p.sum(axis=1, keepdims=True), labels=list(range(k)))),
        "ece": top_label_ece(y_true, proba),
        "n": float(n),
    }


def _not_multiclass(name: str, inputs: AuditInputs) -> AuditResult | None:
    """A SKIPPED result for inputs of another task kind (audits never raise on findings)."""
    if inputs.task == TaskKind.MULTICLASS and inputs.y_score.ndim == 2:
        return None
    return AuditResult(
        name=name,
        status=Status.SKIPPED,
        notes=[f"{name} needs multiclass probabilities; task is {inputs.task!r}: skipped"],
    )


def _class_names(inputs: AuditInputs) -> list[str]:
    k = inputs.y_score.shape[1]
    return [str(c) for c in inputs.labels] if len(inputs.labels) == k else [str(i) for i in range(k)]


def multiclass_performance_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """Accuracy (95 % Wilson CI), balanced accuracy, macro-F1, log loss, top-label ECE and the
    K x K confusion matrix (rows = true class, columns = predicted), gated by the optional keys
    of ``PERFORMANCE_GATES``."""
    from sklearn.metrics import confusion_matrix

    if (skipped := _not_multiclass("performance_multiclass", inputs)) is not None:
        return skipped
    thresholds = dict(thresholds or {})
    names = _class_names(inputs)
    k = len(names)
    base = multiclass_metrics(inputs.y_true, inputs.y_score, k)
    metrics = {f"eval/{key}": v for key, v in base.items()}
    correct = int((inputs.y_pred == inputs.y_true).sum())
    metrics["eval/accuracy_ci_low"], metrics["eval/accuracy_ci_high"] = wilson_interval(correct, len(inputs.y_true))
    notes = [
        "predicted class = the most probable class; accuracy CI is a 95% Wilson score interval; "
        "ECE is top-label (Guo et al. 2017: confidence of the predicted class vs its accuracy, "
        "15 equal-width bins); macro-F1 averages all classes equally; balanced accuracy is the "
        "mean per-class recall",
    ]
    gates, used = threshold_gates(thresholds, PERFORMANCE_GATES, metrics)
    if not gates:
        notes.append("no performance thresholds configured: nothing gated")
    cm = (
        confusion_matrix(inputs.y_true, inputs.y_pred, labels=list(range(k)))
        if len(inputs.y_true)
        else np.zeros((k, k))
    )
    details = {
        "confusion_matrix": cm.astype(int).tolist(),
        "class_labels": names,
        "calibration": top_label_bins(inputs.y_true, inputs.y_score),
        "calibration_kind": "top-label (x: confidence of the predicted class, y: its accuracy)",
        # the multiclass performance audit stands in for the binary one in the report's list of
        # expected audits
        "covers": ["performance"],
    }
    return AuditResult(
        name="performance_multiclass",
        status=overall_status(gates),
        metrics=metrics,
        thresholds=used,
        gates=gates,
        notes=notes,
        details=details,
    )


def _per_group(
    attr: str,
    groups: pd.Series,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    min_size: int,
    level: float,
    synthetic: bool,
) -> list[dict[str, Any]]:
    """One row per group: n, share, accuracy (fairlearn MetricFrame) with its Wilson CI."""
    from fairlearn.metrics import MetricFrame, count
    from sklearn.metrics import accuracy_score

    mf = MetricFrame(
        metrics={"accuracy": accuracy_score, "n": count},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=groups.rename(attr),
    )
    hits = pd.Series(y_true == y_pred).groupby(groups.to_numpy()).sum()
    total = len(groups)
    rows = []
    for g, r in mf.by_group.iterrows():
        n, k = int(r["n"]), int(hits.loc[g])
        low, high = wilson_interval(k, n, level)
        rows.append(
            {
                "attribute": attr,
                "group": str(g),
                "n": n,
                "share": n / total if total else float("nan"),
                "correct": k,
                "accuracy": float(r["accuracy"]),
                "accuracy_ci_low": low,
                "accuracy_ci_high": high,
                "too_small": n < min_size,
                "synthetic": synthetic,
            }
        )
    return rows


def _summary(rows: list[dict[str, Any]], overall: float) -> dict[str, float]:
    judged = [r for r in rows if not r["too_small"]]
    if not judged:
        nan = float("nan")
        return {"worst_group_accuracy": nan, "worst_group_gap": nan, "accuracy_difference": nan, "n_groups_judged": 0.0}
    accs = [r["accuracy"] for r in judged]
    return {
        "worst_group_accuracy": min(accs),
        "worst_group_gap": overall - min(accs),
        "accuracy_difference": max(accs) - min(accs),
        "n_groups_judged": float(len(judged)),
    }


def group_robustness_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """Per-class and per-group accuracy, worst-group accuracy and gaps (see the module docstring)."""
    from sklearn.metrics import precision_recall_fscore_support

    if (skipped := _not_multiclass("group_robustness", inputs)) is not None:
        return skipped
    cfg = {**GROUP_DEFAULTS, **(thresholds or {})}
    min_size, level = int(cfg["min_group_size"]), float(cfg["ci_level"])
    used = {k: float(cfg[k]) for k in GROUP_GATES if cfg.get(k) is not None}
    used.update(min_group_size=float(min_size), ci_level=level)
    names = _class_names(inputs)
    y_true, y_pred = inputs.y_true, inputs.y_pred
    overall = float((y_true == y_pred).mean()) if len(y_true) else float("nan")
    synthetic = {str(c) for c in inputs.synthetic_groups}
    notes = [
        "group = the true class, each declared group column, and each requested intersection "
        "('class' = the true label); accuracy per group with a Wilson score interval at level "
        f"{level}; worst-group gap = overall accuracy - worst judged group's accuracy; accuracy "
        "difference = best - worst judged group; per-class accuracy is the class's recall",
        f"groups with fewer than {min_size} test rows are reported (too_small) but not gated",
    ]
    if synthetic:
        notes.append(
            "synthetic groups (made up by the project, not attributes of people): " + ", ".join(sorted(synthetic))
        )

    frame = inputs.sensitive.copy()
    frame.columns = [str(c) for c in frame.columns]
    frame[CLASS] = np.asarray(names, dtype=object)[y_true] if len(y_true) else []
    attributes: dict[str, list[str]] = {CLASS: [CLASS]}
    for c in inputs.sensitive.columns:
        attributes[str(c)] = [str(c)]
    for combo in cfg["intersections"] or []:
        combo = [str(c) for c in combo]
        missing = [c for c in combo if c not in frame.columns]
        if missing:
            raise ValueError(
                f"group_robustness intersection {combo} names columns not in the test "
                f"data: {missing} (have {list(frame.columns)})"
            )
        attributes.setdefault(INTERSECTION_SEP.join(combo), combo)

    metrics: dict[str, float] = {"groups/accuracy": overall}
    by_group: list[dict[str, Any]] = []
    gates = []
    for attr, cols in attributes.items():
        is_synth = any(c in synthetic for c in cols)
        rows = _per_group(
            attr,
            group_labels(frame, cols).rename(None),
            y_true,
            y_pred,
            min_size=min_size,
            level=level,
            synthetic=is_synth,
        )
        if attr == CLASS and len(y_true):
            prec, rec, f1, sup = precision_recall_fscore_support(
                y_true, y_pred, labels=list(range(len(names))), zero_division=0
            )
            stats = {names[i]: (prec[i], f1[i]) for i in range(len(names))}
            for r in rows:
                r["precision"], r["f1"] = (float(v) for v in stats[r["group"]])
        by_group.extend(rows)
        summary = _summary(rows, overall)
        for key, value in summary.items():
            metrics[f"groups/{attr}/{key}"] = value
        small = [r for r in rows if r["too_small"]]
        if small:
            notes.append(
                f"{attr}: too small to judge (n < {min_size}): "
                + ", ".join(f"'{r['group']}' (n={r['n']})" for r in small)
            )
        for key, (suffix, comparison) in GROUP_GATES.items():
            if cfg.get(key) is None:
                continue
            note = "synthetic groups" if is_synth else ""
            gates.append(
                compare_gate(f"groups/{attr}/{suffix}", summary[suffix], float(cfg[key]), comparison, note=note)
            )
        judged = [r for r in rows if not r["too_small"]]
        if judged:
            worst = min(judged, key=lambda r: r["accuracy"])
            notes.append(
                f"{attr}: worst group '{worst['group']}' accuracy {worst['accuracy']:.4f} "
                f"(n={worst['n']}, CI {worst['accuracy_ci_low']:.3f}-{worst['accuracy_ci_high']:.3f}) "
                f"vs overall {overall:.4f}" + (" [synthetic]" if is_synth else "")
            )
    if len(y_true) == 0:
        return AuditResult(
            name="group_robustness",
            status=Status.NOT_MEASURED,
            thresholds=used,
            notes=["no test rows: group robustness not measured"],
        )
    details = {
        "attributes": {a: c for a, c in attributes.items()},
        "synthetic_groups": sorted(synthetic),
        # this audit stands in for the binary fairness audit in the report's expected audits
        "covers": ["fairness"],
    }
    return AuditResult(
        name="group_robustness",
        status=overall_status(gates),
        metrics=metrics,
        by_group=by_group,
        thresholds=used,
        gates=gates,
        notes=notes,
        details=details,
    )
