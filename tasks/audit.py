"""Audit task: run every registered audit on a fitted model's held-out predictions."""
from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from tasks import progress


@task(name="audit-model", cache_policy=NONE)
def audit_model(fitted, test_frame, sensitive: list[str], gates: dict[str, dict]) -> dict[str, Any]:
    """Performance, fairness and privacy audits of one model (findings, never exceptions)."""
    from audits import AuditInputs, run_audits

    progress.stage(f"audit {fitted.name}")
    dp = fitted.training.get("dp") or {}
    inputs = AuditInputs(
        y_true=fitted.y_test,
        y_score=fitted.test_score,
        sensitive=test_frame[list(sensitive)],
        member_loss=fitted.member_loss,
        nonmember_loss=fitted.nonmember_loss,
        epsilon=dp.get("epsilon") if dp.get("enabled") else None,
        delta=dp.get("delta") if dp.get("enabled") else None,
    )
    return run_audits(inputs, gates)
