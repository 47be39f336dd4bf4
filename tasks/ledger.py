"""Privacy bookkeeping tasks: the privacy-budget ledger (reserve before training, finalise after)
and the k-anonymity of the contract's quasi-identifiers. Storage and arithmetic live in
``impactflow.tasks.ledger_store`` (no Prefect, so it is cheap to import from the CLI and worker processes).
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from impactflow.tasks.spec import RunSpec
from impactflow.tasks.ledger_store import (
    BudgetExceeded,
    Ledger,
    NON_PRIVATE_RUN,
    report_view,
    ledger_url,
    planned_models,
)

__all__ = ["reserve_budget", "finalize_budget", "log_budget", "anonymity", "BudgetExceeded"]


@task(name="reserve-privacy-budget", cache_policy=NONE)
def reserve_budget(
    privacy: dict,
    spec: RunSpec,
    baselines: list[str],
    data_info: dict,
    run_id: str,
    output_dir: str,
    canaries: int = 0,
    reference_models: int = 0,
) -> dict:
    """Check the dataset's budget and record this run's models (with the privacy audit's canary
    and reference models) in the ledger, before training."""
    models = planned_models(privacy, spec.family.model_name, baselines, canaries, reference_models)
    sha, budget = data_info["dataset_sha256"], privacy.get("budget_epsilon")
    non_private = [m["model"] for m in models if not m["private"]]
    if budget is not None and non_private:
        raise BudgetExceeded(NON_PRIVATE_RUN.format(budget=budget, sha=sha[:12], models=", ".join(non_private)))
    if privacy["enabled"] and privacy.get("target_epsilon") is None:
        for m in models:  # noise_multiplier, no budget: epsilon known after training
            if m["private"]:
                m["epsilon"] = None
    ledger = Ledger(ledger_url(output_dir))
    try:
        ids = ledger.reserve(sha, data_info["contract"], run_id, models, budget, privacy.get("budget_delta"))
    finally:
        ledger.close()
    return {"output_dir": output_dir, "dataset_sha256": sha, "entry_ids": ids, "models": models}


@task(name="finalize-privacy-budget", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def finalize_budget(reservation: dict, dp: dict, audit_epsilons: list | tuple = ()) -> dict:
    """Record the accountant's epsilon of the DP model and of the privacy audit's models
    (``audit_epsilons``: canary model, then reference models, as planned); return the dataset's
    totals for the report."""
    ledger = Ledger(ledger_url(reservation["output_dir"]))
    try:
        first = reservation["models"][0]
        if first["private"] and dp.get("enabled"):
            ledger.finalize(reservation["entry_ids"][0], dp["epsilon"], dp.get("delta"))
        n = len(audit_epsilons)
        if n:
            for m, entry, eps in zip(reservation["models"][-n:], reservation["entry_ids"][-n:], audit_epsilons):
                if m["private"] and eps is not None:
                    ledger.finalize(entry, eps, m.get("delta"))
        summary = ledger.summary(reservation["dataset_sha256"])
    finally:
        ledger.close()
    return report_view(summary)


@task(name="log-privacy-bookkeeping", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def log_budget(ctx: dict, budget: dict | None, anonymity: dict | None) -> None:
    """``privacy/budget_spent``, ``privacy/budget_remaining`` and ``data/k_anonymity`` on the parent run."""
    from impactflow.tasks import tracking

    metrics: dict[str, float] = {}
    if budget is not None:
        if budget["epsilon_spent"] is not None:
            metrics["privacy/budget_spent"] = budget["epsilon_spent"]
        if budget["remaining_epsilon"] is not None:
            metrics["privacy/budget_remaining"] = budget["remaining_epsilon"]
    if anonymity is not None and anonymity.get("k") is not None:
        metrics["data/k_anonymity"] = anonymity["k"]
        metrics["data/share_below_min_k"] = anonymity["share_below_min_k"]
    if metrics:
        tracking.log_metrics(ctx["uri"], ctx["parent_run_id"], metrics)


@task(name="k-anonymity", cache_policy=NONE)
def anonymity(df, spec: RunSpec, min_k: int) -> dict | None:
    """k-anonymity / l-diversity of the contract's declared quasi-identifiers (None if none)."""
    from impactflow.audits.anonymity import k_anonymity

    contract = spec.contract
    if not contract.quasi_identifiers:
        return None
    unit = dict(contract.roles_extra).get("user")
    return k_anonymity(df, contract.quasi_identifiers, min_k, sensitive=contract.target, unit=unit)
