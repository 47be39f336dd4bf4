"""Training tasks: the family's torch model and its sklearn baselines.

No retries: training failures are deterministic, retrying would only hide them.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from impactflow.models.base import roles_for
from impactflow.tasks import progress


@task(name="train-model", cache_policy=NONE)
def train_model(
    split,
    contract_name: str,
    family_name: str,
    params: dict,
    train_cfg: dict,
    privacy_cfg: dict,
    exclude_sensitive: bool,
    seed: int,
    same_rows: dict | None = None,
) -> Any:
    """Fit the preprocessor on training rows and train the family's torch model (optionally DP).
    ``same_rows``: the run's other trainings on these rows (baselines, privacy-audit models),
    named in a DP model's ``training.dp.covers``."""
    from impactflow.data_contracts import get_contract
    from impactflow.models import get_family
    from impactflow.models.dp_claim import SameRows
    from impactflow.models.fit import fit_family_model
    from impactflow.models.training import PrivacySettings

    contract = get_contract(contract_name)
    family = get_family(family_name)
    # the run config's privacy section also holds ledger keys (budget_*, min_k) training ignores
    privacy = PrivacySettings.from_config(privacy_cfg)
    name = f"{family.model_name}-dp" if privacy.enabled else family.model_name
    progress.stage(f"train {name}")
    return _metered(
        lambda: fit_family_model(
            family,
            params,
            split,
            roles_for(contract, family.task, exclude_sensitive),
            seed=seed,
            device=train_cfg["device"],
            amp=train_cfg["amp"],
            threads=train_cfg.get("threads"),
            privacy=privacy,
            on_epoch=progress.epoch_callback(name),
            same_rows=SameRows.from_dict(same_rows),
        ),
        threads=train_cfg.get("threads"),
    )


@task(name="train-baseline", cache_policy=NONE)
def train_baseline(
    split, contract_name: str, family_name: str, baseline: str, exclude_sensitive: bool, seed: int
) -> Any:
    """Fit one scikit-learn baseline beside the torch model."""
    from impactflow.data_contracts import get_contract
    from impactflow.models import get_family
    from impactflow.models.fit import fit_baseline

    progress.stage(f"train baseline {baseline}")
    contract = get_contract(contract_name)
    family = get_family(family_name)
    return _metered(
        lambda: fit_baseline(family, baseline, split, roles_for(contract, family.task, exclude_sensitive), seed=seed),
        threads=1,
    )


def train_all(
    split,
    contract_name: str,
    family_name: str,
    params: dict,
    train_cfg: dict,
    privacy_cfg: dict,
    baselines: list[str],
    exclude_sensitive: bool,
    seed: int,
    same_rows: dict,
    *,
    dask: bool,
) -> list:
    """The configured model, then its baselines, each one task (called from the flow); on the
    Dask task runner they are submitted together and fan out on the cluster."""
    calls = [
        (
            train_model,
            (split, contract_name, family_name, params, train_cfg, privacy_cfg, exclude_sensitive, seed, same_rows),
        )
    ]
    calls += [(train_baseline, (split, contract_name, family_name, b, exclude_sensitive, seed)) for b in baselines]
    if dask:
        return [f.result() for f in [t.submit(*args) for t, args in calls]]
    return [t(*args) for t, args in calls]


@task(name="decision-threshold", cache_policy=NONE)
def decide_threshold(
    fitted, split, contract_name: str, family_name: str, exclude_sensitive: bool, decision: dict | None, private: bool
) -> Any:
    """Set a binary model's decision threshold (``model.threshold``, or chosen from ``model.costs``
    on the validation split; ``models/threshold.py``) and record it in ``training["decision"]``."""
    from impactflow.data_contracts import get_contract
    from impactflow.models import get_family
    from impactflow.models.threshold import apply_decision

    family = get_family(family_name)
    roles = roles_for(get_contract(contract_name), family.task, exclude_sensitive)
    is_private = bool(private and (fitted.training.get("dp") or {}).get("enabled"))
    return apply_decision(fitted, split, roles, decision, private=is_private)


def _metered(fit, threads: int | None) -> Any:
    """Run ``fit`` and add the report's resource inputs to its training record: CPU cores it
    could use and, where RAPL counters are readable, the measured energy (audits/resources.py)."""
    from impactflow.audits.resources import rapl_joules, read_rapl_uj

    before = read_rapl_uj()
    fitted = fit()
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    fitted.training = {
        **fitted.training,
        "cpu_cores": int(threads),
        "energy_j_measured": rapl_joules(before, read_rapl_uj()),
    }
    return fitted
