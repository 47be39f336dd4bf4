"""Privacy audit: loss-threshold membership inference and the DP bound it must respect."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .inputs import AuditInputs
from .results import AuditResult, Gate, Status, overall_status
from .stats import compare_gate, downsample_curve
from .thresholds import Threshold, at_most, defaults

PRIVACY_THRESHOLDS: dict[str, Threshold] = {"max_mia_auc": at_most("mia_auc", 0.6)}
PRIVACY_DEFAULTS = defaults(PRIVACY_THRESHOLDS)
ATTACK_NAME = "loss-threshold (Yeom et al. 2018)"
_KS_C95 = 1.3581  # two-sample Kolmogorov-Smirnov critical coefficient c(0.05)


def _tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Largest TPR among ROC points with FPR <= target (Carlini et al. 2022 low-FPR figure)."""
    ok = fpr <= target
    return float(tpr[ok].max()) if ok.any() else 0.0


def loss_threshold_mia(member_loss, nonmember_loss, seed: int = 0) -> dict[str, Any]:
    """Loss-threshold membership inference (Yeom et al. 2018, "Privacy Risk in Machine
    Learning", CSF): predict "member" when the loss is low, i.e. score = −loss, members are
    the positive class.

    Returns ``auc``, ``advantage`` = max over thresholds of TPR − FPR, ``tpr_at_1pct_fpr`` and
    ``tpr_at_0.1pct_fpr`` (largest TPR with FPR <= 1 % / 0.1 % on sklearn's ROC), the counts
    used (``n_members``, ``n_nonmembers``, before balancing ``n_members_total``,
    ``n_nonmembers_total``), ``balanced`` (True when the larger set was subsampled without
    replacement, with ``seed``, to the smaller one's size, so the prior is 50/50 as in the DP
    membership experiment), ``n_dropped_nan`` and ``roc`` ({fpr, tpr}, <= 200 points, low-FPR
    end kept). With an empty set every value is nan.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    mem = np.asarray(member_loss, dtype=float).reshape(-1)
    non = np.asarray(nonmember_loss, dtype=float).reshape(-1)
    n_nan = int(np.isnan(mem).sum() + np.isnan(non).sum())
    mem, non = mem[~np.isnan(mem)], non[~np.isnan(non)]
    out: dict[str, Any] = {
        "n_members_total": int(mem.size),
        "n_nonmembers_total": int(non.size),
        "n_dropped_nan": n_nan,
        "balanced": False,
        "seed": seed,
    }
    m = min(mem.size, non.size)
    if m == 0:
        nan = float("nan")
        out.update(
            auc=nan,
            advantage=nan,
            tpr_at_1pct_fpr=nan,
            **{"tpr_at_0.1pct_fpr": nan},
            n_members=int(mem.size),
            n_nonmembers=int(non.size),
            roc={"fpr": [], "tpr": []},
        )
        return out
    if mem.size != non.size:
        rng = np.random.default_rng(seed)
        if mem.size > m:
            mem = mem[rng.choice(mem.size, size=m, replace=False)]
        else:
            non = non[rng.choice(non.size, size=m, replace=False)]
        out["balanced"] = True
    y = np.concatenate([np.ones(m, dtype=int), np.zeros(m, dtype=int)])
    big = np.finfo(float).max
    score = np.nan_to_num(-np.concatenate([mem, non]), posinf=big, neginf=-big)
    fpr, tpr, _ = roc_curve(y, score, drop_intermediate=False)
    out.update(
        auc=float(roc_auc_score(y, score)),
        advantage=float(np.max(tpr - fpr)),
        tpr_at_1pct_fpr=_tpr_at_fpr(fpr, tpr, 0.01),
        **{"tpr_at_0.1pct_fpr": _tpr_at_fpr(fpr, tpr, 0.001)},
        n_members=m,
        n_nonmembers=m,
        roc=downsample_curve(fpr, tpr, max_points=200, keep_low_fpr=True),
    )
    return out


def dp_advantage_bound(epsilon: float, delta: float) -> float:
    """Upper bound on membership advantage (TPR − FPR) of any attack on an (ε, δ)-DP
    mechanism: (e^ε − 1 + 2δ) / (e^ε + 1).

    It is the largest TPR − FPR inside the DP hypothesis-testing region
    TPR <= e^ε·FPR + δ, 1 − FPR >= e^ε·(1 − TPR) − δ (Kairouz, Oh, Viswanath 2015, "The
    Composition Theorem for Differential Privacy"); stated as a membership-advantage bound by
    Humphries et al. 2023 ("Investigating Membership Inference Attacks under Data
    Dependencies", CSF). For δ = 0 it is tanh(ε/2); e.g. ε = 1 → (e − 1)/(e + 1) ≈ 0.4621.
    """
    if epsilon < 0 or delta < 0:
        raise ValueError("epsilon and delta must be non-negative")
    if math.isinf(epsilon):
        return 1.0
    e = math.exp(epsilon)
    return min(1.0, (e - 1.0 + 2.0 * delta) / (e + 1.0))


def privacy_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """Loss-threshold MIA on member vs non-member losses, gated by ``max_mia_auc``
    (default 0.6) and, for DP runs, by the (ε, δ) advantage bound."""
    cfg = {**PRIVACY_DEFAULTS, **(thresholds or {})}
    unknown = sorted(set(cfg) - set(PRIVACY_DEFAULTS))
    max_auc = float(cfg["max_mia_auc"])
    used = {"max_mia_auc": max_auc}
    metrics: dict[str, float] = {}
    gates: list[Gate] = []
    notes = [
        "loss-threshold membership inference is a weak diagnostic: it lands near AUC 0.5 on "
        "well-regularised models, so a low value is not evidence of privacy; the stronger audits are "
        "offline LiRA (privacy_audit.reference_models >= 1) and the one-run canary audit "
        "(privacy_audit.canaries), reported as privacy_lira and privacy_canary when they ran",
    ]
    if unknown:
        notes.append(f"ignored unknown privacy threshold keys: {unknown}")
    details: dict[str, Any] = {"attack": ATTACK_NAME, "score": "-loss (members = positives)"}

    bound = None
    if inputs.epsilon is not None:
        delta = 0.0 if inputs.delta is None else float(inputs.delta)
        if inputs.delta is None:
            notes.append("delta not given: the DP bound uses delta = 0")
        bound = dp_advantage_bound(float(inputs.epsilon), delta)
        metrics.update(
            {"privacy/epsilon": float(inputs.epsilon), "privacy/delta": delta, "privacy/mia_advantage_bound": bound}
        )

    if inputs.member_loss is None or inputs.nonmember_loss is None:
        notes.append("member/non-member losses not provided: membership inference not measured")
        return AuditResult(
            name="privacy", status=Status.NOT_MEASURED, metrics=metrics, thresholds=used, notes=notes, details=details
        )

    mia = loss_threshold_mia(inputs.member_loss, inputs.nonmember_loss)
    metrics.update(
        {
            "privacy/mia_auc": mia["auc"],
            "privacy/mia_advantage": mia["advantage"],
            "privacy/mia_tpr_at_1pct_fpr": mia["tpr_at_1pct_fpr"],
            "privacy/mia_tpr_at_0.1pct_fpr": mia["tpr_at_0.1pct_fpr"],
        }
    )
    m = mia["n_members"]
    noise = _KS_C95 * math.sqrt(2.0 / m) if m else float("nan")
    details.update(
        {
            "roc": mia["roc"],
            "n_members": m,
            "n_nonmembers": mia["n_nonmembers"],
            "n_members_total": mia["n_members_total"],
            "n_nonmembers_total": mia["n_nonmembers_total"],
            "balanced": mia["balanced"],
            "seed": mia["seed"],
            "n_dropped_nan": mia["n_dropped_nan"],
            # 95 % quantile of max(TPR - FPR) between two size-m samples of one distribution
            # (two-sample KS): the advantage a memorisation-free model can show by chance
            "advantage_sampling_noise_95": noise,
        }
    )
    if mia["balanced"]:
        notes.append(
            f"member and non-member sets differ in size ({mia['n_members_total']} vs "
            f"{mia['n_nonmembers_total']}): the larger was subsampled to {m} "
            f"(seed {mia['seed']})"
        )
    if mia["n_dropped_nan"]:
        notes.append(f"{mia['n_dropped_nan']} nan losses dropped")
    if m and m < 1000:
        notes.append(
            f"with {m} non-members the smallest non-zero FPR is {1 / m:.4g}: the "
            "TPR at 0.1% FPR" + (" and 1% FPR" if m < 100 else "") + " is coarse"
        )

    gates.append(compare_gate("privacy/mia_auc", mia["auc"], max_auc, "<="))
    if bound is not None:
        g = compare_gate(
            "privacy/mia_advantage",
            mia["advantage"],
            bound,
            "<=",
            note="empirical advantage must not exceed the (epsilon, delta)-DP bound",
        )
        gates.append(g)
        if g.status is Status.FAIL:
            notes.append(
                f"membership advantage {mia['advantage']:.4f} exceeds the DP bound "
                f"{bound:.4f}: a bug in training/accounting or a broken privacy claim, unless "
                f"sampling noise explains it (about {noise:.4f} at 95% for {m} per set)"
            )
    return AuditResult(
        name="privacy",
        status=overall_status(gates),
        metrics=metrics,
        thresholds=used,
        gates=gates,
        notes=notes,
        details=details,
    )
