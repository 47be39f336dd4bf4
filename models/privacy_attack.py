"""Models trained only to attack another model's privacy: LiRA reference models and the
one-run canary audit. Pure functions (no Prefect/MLflow); the tasks in ``tasks/privacy.py``
wrap them and the audits in ``audits/lira.py`` turn their outputs into findings.

Audit scheme (LiRA, offline, Carlini et al. 2022):
- audited members     = ``n_audit`` rows drawn (seeded) from the training split — the audited
                        model was trained on them;
- audited non-members = ``n_audit`` rows drawn from the held-out split the loss-threshold
                        attack uses (test, or validation when the test set is an official one);
- population pool     = the training rows that are NOT audited members. Reference model k is
                        trained, with the audited model's family, hyperparameters and DP
                        settings, on a seeded random half of the pool, so no reference model
                        ever sees an audited row ("OUT" models for every target).

One-run canary audit (Steinke, Nasr, Jagielski 2023): m canaries = held-out rows with a label
(rating) drawn at random among the other values — mislabelled rows, which a model can only
fit by memorising them. Each canary is included in the training data with probability ½
(seeded); ONE model is trained with the run's settings (DP if the run is DP) on training
rows + included canaries; every canary is scored by −loss on its canary label.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from impactflow.models.base import Family, Roles, targets
from impactflow.models.data import Split
from impactflow.models.training import PrivacySettings
from impactflow.task_kind import TaskKind


@dataclass(frozen=True)
class AuditRows:
    members: pd.DataFrame
    nonmembers: pd.DataFrame
    pool: pd.DataFrame
    nonmember_source: str


def audit_rows(split: Split, n_audit: int, seed: int) -> AuditRows:
    """Audited members / non-members / reference pool (see the module docstring)."""
    rng = np.random.default_rng(seed)
    held = split.validation if split.predefined_test else split.test
    source = "validation split" if split.predefined_test else "test split"
    n = int(min(n_audit, len(split.train) // 2, len(held)))
    mem_idx = rng.choice(len(split.train), size=n, replace=False)
    non_idx = rng.choice(len(held), size=n, replace=False)
    in_pool = np.ones(len(split.train), dtype=bool)
    in_pool[mem_idx] = False
    return AuditRows(
        members=split.train.iloc[np.sort(mem_idx)].reset_index(drop=True),
        nonmembers=held.iloc[np.sort(non_idx)].reset_index(drop=True),
        pool=split.train[in_pool].reset_index(drop=True),
        nonmember_source=source,
    )


def audit_frame(rows: AuditRows) -> pd.DataFrame:
    """Members then non-members, the order every LiRA array follows."""
    return pd.concat([rows.members, rows.nonmembers], ignore_index=True)


def train_reference_model(
    family: Family,
    params: dict[str, Any],
    split: Split,
    roles: Roles,
    *,
    k: int,
    n_audit: int,
    seed: int,
    privacy: PrivacySettings = PrivacySettings(),
    threads: int | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Reference model ``k``: trained on a seeded random half of the pool (``seed`` + 1000 + k)
    with the audited model's settings; returns its outputs on the audited rows (members first)."""
    from impactflow.models.fit import fit_family_model

    rows = audit_rows(split, n_audit, seed)
    rng = np.random.default_rng(seed + 1000 + k)
    half = rng.permutation(len(rows.pool))[: max(1, len(rows.pool) // 2)]
    ref_split = Split(
        train=rows.pool.iloc[np.sort(half)].reset_index(drop=True),
        validation=split.validation,
        test=rows.nonmembers.iloc[:1],
        predefined_test=split.predefined_test,
    )
    t0 = time.perf_counter()
    fitted = fit_family_model(
        family,
        params,
        ref_split,
        roles,
        seed=seed + 1000 + k,
        device=device,
        amp=False,
        threads=threads,
        privacy=privacy,
    )
    wall = time.perf_counter() - t0
    return {
        "k": k,
        "output": fitted.predictor.predict(audit_frame(rows)),
        "n_train": len(ref_split.train),
        "wall_time_s": wall,
        "epsilon": (fitted.training.get("dp") or {}).get("epsilon"),
    }


def lira_inputs(
    target_predictor, split: Split, roles: Roles, task: str, references: list[dict], *, n_audit: int, seed: int
) -> dict[str, Any]:
    """What ``impactflow.audits.lira.lira_audit`` reads from ``AuditInputs.extra["lira"]``: targets and the
    audited and reference models' outputs on the audited rows (members first)."""
    rows = audit_rows(split, n_audit, seed)
    frame = audit_frame(rows)
    n = len(rows.members)
    groups = {c: frame[c].astype(str).to_numpy() for c in roles.groups if c in frame.columns}
    return {
        "y": targets(frame, roles),
        "target_output": target_predictor.predict(frame),
        "reference_outputs": [r["output"] for r in sorted(references, key=lambda r: r["k"])],
        "member": np.r_[np.ones(n, dtype=bool), np.zeros(len(rows.nonmembers), dtype=bool)],
        "groups": groups,
        "seed": seed,
        "statistic": "-squared error" if task == TaskKind.RATING else "log p_y - log(1 - p_y)",
        "scheme": (
            f"{n} audited training rows vs {len(rows.nonmembers)} rows of the {rows.nonmember_source}; "
            f"{len(references)} reference models, each trained on a random half of the "
            f"{len(rows.pool)} training rows not audited"
        ),
        "wall_time_s": float(sum(r["wall_time_s"] for r in references)),
    }


def make_canaries(split: Split, roles: Roles, m: int, seed: int) -> pd.DataFrame:
    """``m`` canaries: held-out rows (test split; validation rows stay out, early stopping reads
    them) whose target is replaced by a different value drawn uniformly from the training
    targets' distinct values (a mislabelled row / a wrong rating)."""
    rng = np.random.default_rng(seed)
    source = split.test
    idx = rng.choice(len(source), size=min(m, len(source)), replace=False)
    canaries = source.iloc[np.sort(idx)].reset_index(drop=True).copy()
    values = pd.unique(split.train[roles.target])
    if len(values) < 2:
        raise ValueError(f"column {roles.target!r}: canaries need at least two distinct target values")
    new = []
    for v in canaries[roles.target]:
        others = [x for x in values if x != v]
        new.append(others[rng.integers(len(others))])
    canaries[roles.target] = pd.Series(new, dtype=split.train[roles.target].dtype)
    return canaries


def canary_run(
    family: Family,
    params: dict[str, Any],
    split: Split,
    roles: Roles,
    *,
    m: int,
    guess_fraction: float,
    seed: int,
    privacy: PrivacySettings = PrivacySettings(),
    threads: int | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """The one-run audit's training run: canaries in with probability ½, one model trained,
    every canary scored by −loss on its canary label; returns what ``impactflow.audits.lira.canary_audit``
    reads from ``AuditInputs.extra["canary"]``. ``k_pos = k_neg = round(guess_fraction · m)``
    (fixed before training, as the bound requires)."""
    from impactflow.models.base import per_example_loss
    from impactflow.models.fit import fit_family_model

    canaries = make_canaries(split, roles, m, seed + 2000)
    included = np.random.default_rng(seed + 2001).random(len(canaries)) < 0.5
    train = pd.concat([split.train, canaries[included]], ignore_index=True)
    run_split = Split(
        train=train, validation=split.validation, test=split.test.iloc[:1], predefined_test=split.predefined_test
    )
    t0 = time.perf_counter()
    fitted = fit_family_model(
        family, params, run_split, roles, seed=seed + 2002, device=device, amp=False, threads=threads, privacy=privacy
    )
    wall = time.perf_counter() - t0
    loss = per_example_loss(targets(canaries, roles), fitted.predictor.predict(canaries), family.task)
    k = int(round(guess_fraction * len(canaries)))
    dp = fitted.training.get("dp") or {}
    return {
        "scores": -loss,
        "included": included,
        "k_pos": k,
        "k_neg": k,
        "epsilon": dp.get("epsilon") if dp.get("enabled") else None,
        "delta": dp.get("delta") if dp.get("enabled") else None,
        "canary_kind": "held-out rows with a wrong label/rating drawn at random",
        "statistic": "-loss on the canary label",
        "wall_time_s": wall,
        "n_train": len(train),
    }
