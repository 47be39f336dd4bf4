"""Audits: pure functions ``(AuditInputs, thresholds) -> AuditResult``.

Add an audit by writing one function in this package and one line in ``AUDITS``.
Heavy libraries (sklearn, fairlearn) are imported inside the functions.
"""
from __future__ import annotations

from typing import Callable

from .fairness import fairness_audit
from .inputs import AuditInputs
from .performance import performance_audit
from .privacy import privacy_audit
from .results import AuditResult, Gate, Status, overall_status

AUDITS: dict[str, Callable[[AuditInputs, dict], AuditResult]] = {
    "performance": performance_audit,
    "fairness": fairness_audit,
    "privacy": privacy_audit,
}


def run_audits(
    inputs: AuditInputs, thresholds_by_audit: dict[str, dict] | None = None
) -> dict[str, AuditResult]:
    """Run every audit in ``AUDITS`` (in order) with its own thresholds dict (missing = {})."""
    thresholds_by_audit = thresholds_by_audit or {}
    unknown = set(thresholds_by_audit) - set(AUDITS)
    if unknown:
        raise ValueError(f"thresholds given for unknown audits: {sorted(unknown)}; "
                         f"known: {sorted(AUDITS)}")
    return {name: fn(inputs, thresholds_by_audit.get(name) or {}) for name, fn in AUDITS.items()}


__all__ = ["AUDITS", "AuditInputs", "AuditResult", "Gate", "Status", "overall_status",
           "run_audits"]
