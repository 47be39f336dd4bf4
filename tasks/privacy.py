"""Privacy-attack tasks: LiRA reference models and the one-run canary training, fanned out
on the Dask task runner when configured (else run in place, see ``submit_privacy_attacks``). Thin wrappers around
``models/privacy_attack.py``; the findings are computed by ``audits/lira.py``.

No retries: training failures are deterministic.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from impactflow.tasks import progress
from impactflow.tasks.spec import RunSpec

#: canaries used by a DP run when ``privacy_audit.canaries`` is left unset (None)
DP_DEFAULT_CANARIES = 500


def _privacy(privacy_cfg: dict):
    from impactflow.models.training import PrivacySettings

    return PrivacySettings.from_config(privacy_cfg)


@task(name="train-reference-model", cache_policy=NONE)
def train_reference(
    split,
    spec: RunSpec,
    params: dict,
    train_cfg: dict,
    privacy_cfg: dict,
    k: int,
    n_audit: int,
    seed: int,
) -> dict:
    """Train LiRA reference model k on a random half of the non-audited training rows; its φ on the audited rows."""
    from impactflow.models.privacy_attack import train_reference_model

    progress.stage(f"train LiRA reference model {k}")
    return train_reference_model(
        spec.family,
        params,
        split,
        spec.roles,
        k=k,
        n_audit=n_audit,
        seed=seed,
        privacy=_privacy(privacy_cfg),
        threads=train_cfg.get("threads"),
        device=_device(train_cfg),
    )


@task(name="canary-training-run", cache_policy=NONE)
def canary_training(
    split,
    spec: RunSpec,
    params: dict,
    train_cfg: dict,
    privacy_cfg: dict,
    m: int,
    guess_fraction: float,
    seed: int,
) -> dict:
    """One training run with m canaries each included with probability 1/2; the canaries' scores."""
    from impactflow.models.privacy_attack import canary_run

    progress.stage(f"train canary-audit model ({m} canaries)")
    return canary_run(
        spec.family,
        params,
        split,
        spec.roles,
        m=m,
        guess_fraction=guess_fraction,
        seed=seed,
        privacy=_privacy(privacy_cfg),
        threads=train_cfg.get("threads"),
        device=_device(train_cfg),
    )


@task(name="lira-inputs", cache_policy=NONE)
def lira_target_inputs(
    fitted,
    split,
    spec: RunSpec,
    references: list,
    n_audit: int,
    seed: int,
) -> dict:
    """The audited model's φ on the audited rows, next to the reference models' φ."""
    from impactflow.models.privacy_attack import lira_inputs

    return lira_inputs(fitted.predictor, split, spec.roles, spec.family.task, references, n_audit=n_audit, seed=seed)


def _device(train_cfg: dict) -> str:
    from impactflow.models.base import select_device

    return select_device(train_cfg.get("device", "auto"))


def canaries_for(config: dict) -> int:
    """Canaries of the run: ``privacy_audit.canaries``, or 500 for DP runs / 0 otherwise when unset."""
    m = (config.get("privacy_audit") or {}).get("canaries")
    if m is None:
        return DP_DEFAULT_CANARIES if config["privacy"]["enabled"] else 0
    return int(m)


class _Done:
    """A result computed in place, with a future's ``result()``."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


def submit_privacy_attacks(split, spec: RunSpec, config: dict) -> dict[str, Any]:
    """Start the K reference models and the canary run that ``privacy_audit`` asks for; call
    inside a flow. With ``orchestration.task_runner: dask`` they are ``.submit()``-ed and run
    concurrently (separate processes) beside the main training; otherwise they run in place,
    one after another, like the pipeline's other trainings: torch's RNG is process-wide, so
    trainings in concurrent threads would make every seeded model (the audited one included)
    irreproducible. Returns future-likes for ``collect_privacy_attacks``."""
    pa = config.get("privacy_audit") or {}
    args = (split, spec, config["model"]["params"], config["train"], config["privacy"])
    seed = int(config["seed"])
    n_audit = int(pa.get("audit_members", 500))
    parallel = (config.get("orchestration") or {}).get("task_runner") == "dask"

    def start(t, *a):
        return t.submit(*a) if parallel else _Done(t(*a))

    refs = [start(train_reference, *args, k, n_audit, seed) for k in range(int(pa.get("reference_models", 0)))]
    m = canaries_for(config)
    canary = start(canary_training, *args, m, float(pa.get("canary_guess_fraction", 0.2)), seed) if m else None
    return {"references": refs, "canary": canary, "n_audit": n_audit, "seed": seed}


def collect_privacy_attacks(futures: dict[str, Any], fitted, split, spec: RunSpec) -> dict[str, Any]:
    """Wait for the attack runs; the ``AuditInputs.extra`` entries for the audited model."""
    extra: dict[str, Any] = {}
    if futures["references"]:
        refs = [f.result() for f in futures["references"]]
        extra["lira"] = lira_target_inputs(fitted, split, spec, refs, futures["n_audit"], futures["seed"])
    if futures["canary"] is not None:
        extra["canary"] = futures["canary"].result()
    return extra
