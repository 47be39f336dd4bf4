"""Training tasks: the family's torch model and its sklearn baselines.

No retries: training failures are deterministic, retrying would only hide them.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from impactflow.tasks import progress
from impactflow.tasks.spec import RunSpec


@task(name="train-model", cache_policy=NONE)
def train_model(
    split,
    spec: RunSpec,
    params: dict,
    train_cfg: dict,
    privacy_cfg: dict,
    seed: int,
    same_rows: dict | None = None,
    secrets_cfg: dict | None = None,
) -> Any:
    """Fit the preprocessor on training rows and train the family's torch model (optionally DP).
    ``same_rows``: the run's other trainings on these rows (baselines, privacy-audit models),
    named in a DP model's ``training.dp.covers``; ``secrets_cfg``: ``privacy_audit.secrets``
    (secrets planted in the training rows for the memorisation audit, ``models/memorisation.py``)."""
    from impactflow.models.dp_claim import SameRows
    from impactflow.models.fit import fit_family_model
    from impactflow.models.memorisation import settings_for
    from impactflow.models.training import PrivacySettings

    family = spec.family
    # the run config's privacy section also holds ledger keys (budget_*, min_k) training ignores
    privacy = PrivacySettings.from_config(privacy_cfg)
    name = f"{family.model_name}-dp" if privacy.enabled else family.model_name
    progress.stage(f"train {name}")
    return _metered(
        lambda: fit_family_model(
            family,
            params,
            split,
            spec.roles,
            seed=seed,
            device=train_cfg["device"],
            amp=train_cfg["amp"],
            threads=train_cfg.get("threads"),
            privacy=privacy,
            on_epoch=progress.epoch_callback(name),
            same_rows=SameRows.from_dict(same_rows),
            secrets=settings_for(secrets_cfg or {"enabled": False}, family),
        ),
        threads=train_cfg.get("threads"),
    )


@task(name="train-baseline", cache_policy=NONE)
def train_baseline(split, spec: RunSpec, baseline: str, seed: int) -> Any:
    """Fit one scikit-learn baseline beside the torch model."""
    from impactflow.models.fit import fit_baseline

    progress.stage(f"train baseline {baseline}")
    return _metered(lambda: fit_baseline(spec.family, baseline, split, spec.roles, seed=seed), threads=1)


def train_all(split, spec: RunSpec, cfg: Any, same_rows: dict) -> list:
    """The configured model, then its baselines, each one task (called from the flow with the
    run's ``RunConfig``); on the Dask task runner they are submitted together and fan out on the
    cluster."""
    train, privacy = cfg.train.model_dump(), cfg.privacy.model_dump()
    calls: list[tuple[Any, tuple]] = [
        (
            train_model,
            (
                split,
                spec,
                cfg.model.params,
                train,
                privacy,
                cfg.seed,
                same_rows,
                cfg.privacy_audit.secrets.model_dump(),
            ),
        )
    ]
    calls += [(train_baseline, (split, spec, b, cfg.seed)) for b in cfg.model.baselines]
    dask = cfg.orchestration.task_runner == "dask"
    if dask:
        return [f.result() for f in [t.submit(*args) for t, args in calls]]
    return [t(*args) for t, args in calls]


@task(name="decision-threshold", cache_policy=NONE)
def decide_threshold(fitted, split, spec: RunSpec, decision: dict | None, private: bool) -> Any:
    """Set a binary model's decision threshold (``model.threshold``, or chosen from ``model.costs``
    on the validation split; ``models/threshold.py``) and record it in ``training["decision"]``."""
    from impactflow.models.threshold import apply_decision

    is_private = bool(private and (fitted.training.get("dp") or {}).get("enabled"))
    return apply_decision(fitted, split, spec.roles, decision, private=is_private)


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
