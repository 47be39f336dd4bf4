"""Performance audit: classification metrics, calibration and ROC on the test split.

Convention: the predicted label is 1 iff ``y_score >= threshold``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .inputs import AuditInputs
from .results import AuditResult, overall_status
from .stats import downsample_curve, threshold_gates, wilson_interval
from .thresholds import Threshold, at_least, at_most, gate_table

PERFORMANCE_THRESHOLDS: dict[str, Threshold] = {
    "min_accuracy": at_least("accuracy", metric="eval/accuracy"),
    "min_roc_auc": at_least("roc_auc", metric="eval/roc_auc"),
    "max_ece": at_most("ece", metric="eval/ece"),
}
PERFORMANCE_GATES = gate_table(PERFORMANCE_THRESHOLDS)


def _bin_index(y_score: np.ndarray, n_bins: int) -> np.ndarray:
    # Bin k holds scores in [k/B, (k+1)/B); the last bin is closed, so 1.0 lands in bin B-1.
    return np.clip(np.floor(y_score * n_bins).astype(int), 0, n_bins - 1)


def expected_calibration_error(y_true, y_score, n_bins: int = 15) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins on [0, 1].

    ECE = Σ_b (n_b / N) · |mean(y_score in b) − mean(y_true in b)|, where bin b holds scores in
    [b/B, (b+1)/B) (the last bin includes 1.0) and empty bins contribute 0 (Naeini et al. 2015,
    Guo et al. 2017). Positive-class ("confidence in y = 1") variant, not top-label.
    Returns nan for empty input.
    """
    y_true = np.asarray(y_true, dtype=float).reshape(-1)
    y_score = np.asarray(y_score, dtype=float).reshape(-1)
    n = y_true.shape[0]
    if n == 0:
        return float("nan")
    idx = _bin_index(y_score, n_bins)
    score_sum = np.bincount(idx, weights=y_score, minlength=n_bins)
    pos_sum = np.bincount(idx, weights=y_true, minlength=n_bins)
    # Σ_b (n_b/N)|s_b/n_b − p_b/n_b| = Σ_b |s_b − p_b| / N (empty bins give 0)
    return float(np.abs(score_sum - pos_sum).sum() / n)


def calibration_bins(y_true, y_score, n_bins: int = 10) -> list[dict[str, float]]:
    """Reliability-diagram bins (same binning as :func:`expected_calibration_error`).

    One dict per bin: ``lower``, ``upper``, ``count``, ``mean_score``, ``positive_rate``
    (nan for empty bins).
    """
    y_true = np.asarray(y_true, dtype=float).reshape(-1)
    y_score = np.asarray(y_score, dtype=float).reshape(-1)
    idx = _bin_index(y_score, n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    score_sum = np.bincount(idx, weights=y_score, minlength=n_bins)
    pos_sum = np.bincount(idx, weights=y_true, minlength=n_bins)
    return bin_rows(counts, score_sum, pos_sum)


def bin_rows(counts, score_sum, pos_sum) -> list[dict[str, float]]:
    """``calibration_bins``' rows from each bin's count, score sum and positive count (a streamed
    log's aggregates give these too)."""
    n_bins = len(counts)
    rows = []
    for b in range(n_bins):
        c = int(counts[b])
        rows.append(
            {
                "lower": b / n_bins,
                "upper": (b + 1) / n_bins,
                "count": c,
                "mean_score": float(score_sum[b] / c) if c else float("nan"),
                "positive_rate": float(pos_sum[b] / c) if c else float("nan"),
            }
        )
    return rows


def classification_metrics(y_true, y_score, threshold: float = 0.5) -> dict[str, float]:
    """Threshold and ranking metrics for a binary classifier.

    Keys: accuracy, balanced_accuracy, precision, recall, f1, roc_auc, log_loss, ece,
    tn, fp, fn, tp, n. ``roc_auc`` is nan when ``y_true`` has a single class; precision,
    recall and f1 use ``zero_division=0``.
    """
    from sklearn import metrics as skm

    y_true = np.asarray(y_true).reshape(-1).astype(int)
    y_score = np.asarray(y_score, dtype=float).reshape(-1)
    y_pred = (y_score >= threshold).astype(int)
    n = int(y_true.shape[0])
    if n == 0:
        nan = float("nan")
        out = dict.fromkeys(
            ["accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "ece"], nan
        )
        out.update(tn=0.0, fp=0.0, fn=0.0, tp=0.0, n=0.0)
        return out
    tn, fp, fn, tp = skm.confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    both_classes = np.unique(y_true).size == 2
    import warnings

    with warnings.catch_warnings():
        # balanced_accuracy warns when a class is absent from y_true; the value is still defined
        warnings.simplefilter("ignore", UserWarning)
        balanced = skm.balanced_accuracy_score(y_true, y_pred)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced),
        "precision": float(skm.precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(skm.f1_score(y_true, y_pred, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y_true, y_score)) if both_classes else float("nan"),
        "log_loss": float(skm.log_loss(y_true, np.clip(y_score, 0.0, 1.0), labels=[0, 1])),
        "ece": expected_calibration_error(y_true, y_score),
        "tn": float(tn),
        "fp": float(fp),
        "fn": float(fn),
        "tp": float(tp),
        "n": float(n),
    }


def performance_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """Accuracy (with a 95 % Wilson CI), AUC, calibration and confusion counts, gated by the
    optional threshold keys ``min_accuracy``, ``min_roc_auc``, ``max_ece``."""
    from sklearn.metrics import roc_curve

    thresholds = dict(thresholds or {})
    aggregates = (inputs.extra or {}).get("aggregates")  # a streamed decision log (audits.aggregates)
    if aggregates is not None:
        from . import aggregates as streamed

        base = streamed.classification_metrics(aggregates)
    else:
        base = classification_metrics(inputs.y_true, inputs.y_score, inputs.decision_threshold)
    metrics = {f"eval/{k}": v for k, v in base.items()}
    correct = base["tp"] + base["tn"]
    low, high = wilson_interval(correct, base["n"], 0.95)
    metrics["eval/accuracy_ci_low"] = low
    metrics["eval/accuracy_ci_high"] = high

    notes: list[str] = [
        f"predicted label = 1 iff score >= {inputs.decision_threshold}; "
        "accuracy CI is a 95% Wilson score interval; ECE uses 15 equal-width bins "
        "on the positive-class score"
    ]
    if aggregates is not None:
        notes.append(
            f"streamed: AUC and the ROC curve from a {aggregates.grid:,}-bin score histogram (a positive and a "
            "negative row in the same bin count as a tie), within eval/roc_auc_error_bound of the exact AUC; "
            "accuracy, ECE, log loss and the confusion counts are exact"
        )
    if aggregates is not None and base["tp"] + base["fn"] > 0 and base["tn"] + base["fp"] > 0:
        from .aggregates import roc_from_hist

        hist = aggregates.overall()["hist"]
        fpr, tpr = roc_from_hist(hist[0], hist[1])
        roc = downsample_curve(fpr, tpr, max_points=200)
    elif aggregates is None and np.unique(inputs.y_true).size == 2:
        fpr, tpr, _ = roc_curve(inputs.y_true, inputs.y_score)
        roc = downsample_curve(fpr, tpr, max_points=200)
    else:
        roc = {"fpr": [], "tpr": []}
        notes.append("test labels contain a single class: ROC AUC and the ROC curve are undefined")

    gates, used = threshold_gates(thresholds, PERFORMANCE_GATES, metrics)
    if not gates:
        notes.append("no performance thresholds configured: nothing gated")

    details: dict[str, Any] = {
        "roc": roc,
        "calibration": calibration_bins(inputs.y_true, inputs.y_score, n_bins=10)
        if aggregates is None
        else streamed.calibration_bins(aggregates),
        "confusion_matrix": [[int(base["tn"]), int(base["fp"])], [int(base["fn"]), int(base["tp"])]],
        "decision_threshold": inputs.decision_threshold,
    }
    return AuditResult(
        name="performance",
        status=overall_status(gates),
        metrics=metrics,
        thresholds=used,
        gates=gates,
        notes=notes,
        details=details,
    )
