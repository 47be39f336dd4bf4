"""``row_count``: the number of test rows, gated by ``gates.row_count.min_count``."""

from __future__ import annotations

from impactflow.audits.results import AuditResult, overall_status
from impactflow.audits.stats import threshold_gates


def row_count_audit(inputs, thresholds: dict) -> AuditResult:
    metrics = {"row_count/n_rows": float(len(inputs.y_true))}
    gates, used = threshold_gates(thresholds or {}, {"min_count": ("row_count/n_rows", ">=")}, metrics)
    return AuditResult(name="row_count", status=overall_status(gates), metrics=metrics, thresholds=used, gates=gates)


row_count_audit.THRESHOLDS = {"min_count": None}
