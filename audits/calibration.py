"""Calibration by group: is a score of 0.7 worth the same for every group?

Per group of each sensitive column: n, base rate, mean score, ECE (the project's 15-bin
positive-class ECE, Naeini et al. 2015 / Guo et al. 2017), Brier score (sklearn's
``brier_score_loss``), ROC AUC (sklearn; nan with one class) — and the gaps max − min across
groups with n >= ``min_group_size``. Calibration within groups is one of the fairness criteria
of Kleinberg, Mullainathan & Raghavan 2017 ("Inherent trade-offs in the fair determination of
risk scores"); it needs scores, so with hard predictions only the audit is skipped.
Optional gate: ``max_ece_gap``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .fairness import _attributes
from .inputs import AuditInputs
from .performance import expected_calibration_error
from .results import AuditResult, Status, overall_status
from .stats import compare_gate
from .thresholds import Threshold, at_most, defaults, setting

CALIBRATION_THRESHOLDS: dict[str, Threshold] = {
    "max_ece_gap": at_most("ece_gap"),
    "min_group_size": setting(30, "count"),
    "intersections": setting(None, "columns"),
}
CALIBRATION_DEFAULTS = defaults(CALIBRATION_THRESHOLDS)


def calibration_by_group(y_true, y_score, labels: pd.Series) -> list[dict[str, Any]]:
    """One row per group: n, base_rate, mean_score, ece, brier, roc_auc."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    y_score = np.asarray(y_score, dtype=float)
    codes, uniques = pd.factorize(labels.reset_index(drop=True), sort=True)
    rows = []
    for i, g in enumerate(uniques):
        m = codes == i
        yt, ys = y_true[m], y_score[m]
        rows.append(
            {
                "group": str(g),
                "n": int(m.sum()),
                "base_rate": float(yt.mean()),
                "mean_score": float(ys.mean()),
                "ece": expected_calibration_error(yt, ys),
                "brier": float(brier_score_loss(yt, ys, pos_label=1)),
                "roc_auc": float(roc_auc_score(yt, ys)) if np.unique(yt).size == 2 else float("nan"),
            }
        )
    return rows


def calibration_group_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """ECE/Brier/AUC per group and their gaps (see the module docstring)."""
    cfg = {**CALIBRATION_DEFAULTS, **(thresholds or {})}
    min_size = int(cfg["min_group_size"])
    used = {"min_group_size": float(min_size)}
    if cfg["max_ece_gap"] is not None:
        used["max_ece_gap"] = float(cfg["max_ece_gap"])
    if inputs.extra.get("hard_predictions") or inputs.sensitive.shape[1] == 0:
        why = (
            "only hard predictions were given: calibration needs scores"
            if inputs.extra.get("hard_predictions")
            else "no sensitive columns"
        )
        return AuditResult(name="calibration_by_group", status=Status.SKIPPED, thresholds=used, notes=[why])
    metrics: dict[str, float] = {}
    by_group: list[dict[str, Any]] = []
    gates = []
    notes = [
        "ECE: 15 equal-width bins on the positive-class score; Brier: mean (score − y)²; "
        f"gaps = max − min over groups with n >= {min_size}"
    ]
    aggregates = (inputs.extra or {}).get("aggregates")  # a streamed decision log (audits.aggregates)
    if aggregates is not None:
        notes.append(
            f"streamed: ROC AUC per group from a {aggregates.grid:,}-bin score histogram, within each "
            "group's roc_auc_error_bound of the exact value; n, base rate, mean score, ECE and Brier are exact"
        )
        attrs = aggregates.attributes(cfg["intersections"])
    else:
        attrs = _attributes(inputs.sensitive, cfg["intersections"])
    for attr, labels in attrs.items():
        if aggregates is not None:
            from .aggregates import group_statistics

            uniques, sums = aggregates.by_group(labels)
            rows = []
            for i, g in enumerate(uniques):
                stats = group_statistics(sums, i)
                stats.pop("log_loss")
                rows.append({"group": g, **stats})
        else:
            rows = calibration_by_group(inputs.y_true, inputs.y_score, labels)
        for r in rows:
            r["attribute"] = attr
            r["too_small"] = r["n"] < min_size
        by_group.extend(rows)
        judged = [r for r in rows if not r["too_small"]]
        for key in ("ece", "brier", "roc_auc"):
            vals = [r[key] for r in judged if np.isfinite(r[key])]
            metrics[f"calibration/{attr}/{key}_gap"] = (max(vals) - min(vals)) if len(vals) >= 2 else float("nan")
        if cfg["max_ece_gap"] is not None:
            gates.append(
                compare_gate(
                    f"calibration/{attr}/ece_gap",
                    metrics[f"calibration/{attr}/ece_gap"],
                    float(cfg["max_ece_gap"]),
                    "<=",
                )
            )
    return AuditResult(
        name="calibration_by_group",
        status=overall_status(gates),
        metrics=metrics,
        by_group=by_group,
        thresholds=used,
        gates=gates,
        notes=notes,
        details={"covers": []},
    )
