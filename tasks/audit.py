"""Audit task: run every registered audit on a fitted model's held-out predictions."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from impactflow.tasks import progress
from impactflow.tasks.spec import RunSpec
from impactflow.task_kind import TaskKind


@task(name="audit-model", cache_policy=NONE)
def audit_model(
    fitted,
    split,
    spec: RunSpec,
    gates: dict[str, dict],
    privacy_attacks: dict | None = None,
    run_inputs: dict | None = None,
) -> dict[str, Any]:
    """The family's audits (performance, fairness, privacy, ...) of one model: findings, never exceptions.
    ``privacy_attacks`` (LiRA / canary outputs from tasks/privacy.py) adds the privacy_lira/privacy_canary audits;
    ``run_inputs`` (``{"drift": tasks.watch.drift_check(...)}``) adds the audits of the run's data (drift)."""
    from impactflow.audits import REPORT_AUDITS, AuditInputs, run_audits
    from impactflow.audits.fairness import favourable_extra
    from impactflow.models.base import discovery_inputs

    progress.stage(f"audit {fitted.name}")
    contract, family, roles = spec.contract, spec.family, spec.audit_roles
    extra = family.audit_extras(fitted.predictor, split, roles) if family.audit_extras else {}
    # what the slice, proxy and attribution audits read: the model's own features (spec.roles)
    extra = {**(extra or {}), **discovery_inputs(family, fitted.predictor, split, spec.roles, spec.exclude_sensitive)}
    if family.task == TaskKind.BINARY:  # the mitigation audit fits its post-processor on validation scores
        from impactflow.models.base import targets

        extra = {
            **(extra or {}),
            "validation": {
                "y_true": targets(split.validation, roles),
                "y_score": fitted.predictor.predict(split.validation),
                "sensitive": split.validation[list(roles.groups)],
            },
        }
    dp = fitted.training.get("dp") or {}
    inputs = AuditInputs(
        y_true=fitted.y_test,
        y_score=fitted.test_output,
        sensitive=split.test[list(roles.groups)],
        task=family.task,
        labels=tuple(roles.labels),
        synthetic_groups=tuple(contract.synthetic_groups),
        extra={
            **(extra or {}),
            **(privacy_attacks or {}),
            **({"secrets": fitted.training["secrets"]} if "secrets" in fitted.training else {}),
            **(run_inputs or {}),
            **(
                favourable_extra(contract.positive_label, contract.favourable_outcome)
                if family.task == TaskKind.BINARY
                else {}
            ),
            **(
                {"decision_text": (fitted.training.get("decision") or {}).get("text")}
                if (fitted.training.get("decision") or {}).get("text")
                else {}
            ),
        },
        member_loss=fitted.member_loss,
        nonmember_loss=fitted.nonmember_loss,
        epsilon=dp.get("epsilon") if dp.get("enabled") else None,
        delta=dp.get("delta") if dp.get("enabled") else None,
        # the model's own cut (model.threshold / model.costs: models/threshold.py), 0.5 by default
        decision_threshold=float(getattr(fitted.predictor, "threshold", 0.5)),
    )
    # post-processing by group thresholds (mitigation) compares binary decisions only; a LiRA or
    # canary gate configured without the attack run says so (the audit names the setting)
    names = [
        *family.audits,
        *(f"privacy_{k}" for k in ("lira", "canary") if k in (privacy_attacks or {}) or f"privacy_{k}" in gates),
        # secrets planted in a family that does not list the audit (text), or a gate without them
        *(
            ["memorisation"]
            if "memorisation" not in family.audits and ("secrets" in fitted.training or "memorisation" in gates)
            else []
        ),
        *(k for k in (run_inputs or {}) if k not in family.audits),
        *(a for a in REPORT_AUDITS if a not in family.audits and (a != "mitigation" or family.task == TaskKind.BINARY)),
    ]
    return run_audits(
        inputs,
        gates,
        names=names,
        not_run_reason=lambda audit: (
            f"the {family.name} family ({family.task}) does not run the {audit} audit (its audits: {', '.join(names)})"
        ),
    )
