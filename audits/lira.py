"""Stronger membership inference: offline LiRA, and the one-run canary audit, as audits.

Pure numpy/scipy/sklearn.metrics. The models are trained elsewhere (``models/privacy_attack.py``);
what arrives here, in ``AuditInputs.extra``, are per-example statistics:

- ``extra["lira"]``: ``y`` (targets of the audited examples), ``target_output`` (the audited
  model's outputs on them), ``reference_outputs`` (K outputs of reference models that never saw
  any audited example) — or ``target``/``reference`` (φ, n and K × n) directly —,
  ``member`` (bool: the audited example is a training row of the audited model),
  ``groups`` (optional {column: values}) and ``scheme`` (a sentence saying how rows were chosen).
- ``extra["canary"]``: ``scores`` (higher = looks included), ``included`` (bool),
  ``k_pos``/``k_neg`` (guesses fixed in advance), ``epsilon``/``delta`` of the canary run.

LiRA = Carlini, Chien, Nasr, Song, Terzis, Tramèr 2022, "Membership Inference Attacks From
First Principles" (IEEE S&P), offline variant (§VI-C): only OUT reference models are trained,
and an example is called a member when its φ under the target is unusually high compared with
the Gaussian N(μ_out, σ_out²) fitted to its φ under the reference models.

Which ε figure is a bound: only the canary audit's. Its canaries are included by independent
fair coin flips, which is what Steinke, Nasr, Jagielski 2023 need for a lower bound on ε that
holds at 95 % confidence from one training run; it alone feeds the ε_LB ≤ ε gates and
``privacy/epsilon_lower_bound``. LiRA's Clopper–Pearson figure (``privacy/lira_epsilon_estimate``,
threshold chosen on one half of the audited examples, Jagielski et al. 2020 on the other) treats
each audited example as an independent trial. That holds only if the audited examples were
i.i.d. members/non-members whose membership is independent of the reference models and of each
other; here one model is trained on fixed training rows and compared with fixed held-out rows,
so the figure is a heuristic estimate of leakage, reported but never used to accept or reject
a privacy claim.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .inputs import AuditInputs
from .privacy import _tpr_at_fpr
from .privacy_bounds import DEFAULT_ALPHA, epsilon_lower_bound_from_scores, one_run_epsilon_lower_bound, one_run_guesses
from .results import AuditResult, Gate, Status, overall_status
from .stats import compare_gate, downsample_curve
from .thresholds import Threshold, at_most, defaults
from impactflow.task_kind import TaskKind

LIRA_THRESHOLDS: dict[str, Threshold] = {"max_lira_auc": at_most("lira_auc")}
LIRA_DEFAULTS = defaults(LIRA_THRESHOLDS)
#: what the LiRA ε figure is (notes and details of the privacy_lira audit)
LIRA_EPSILON_KIND = "heuristic estimate, not a certified lower bound"
LIRA_EPSILON_NOTE = (
    "LiRA epsilon estimate {value:.4f} ({kind}): the Clopper-Pearson bound of Jagielski et al. 2020 with "
    "the threshold chosen on one half of the audited examples holds only if the audited examples are "
    "i.i.d. members/non-members whose membership is independent of the reference models and of each "
    "other; one model trained on fixed training rows does not satisfy this, so the figure is not used "
    "by the epsilon_LB <= epsilon gate (the one-run canary audit, with coin-flip inclusion, is the "
    "sound bound)"
)
CANARY_THRESHOLDS: dict[str, Threshold] = {}
#: Carlini et al. 2022 (§VI-B, Fig. 7): below ~64 reference models a per-example variance is
#: too noisy; one global σ_out over all examples does better.
GLOBAL_VARIANCE_BELOW = 64
PROB_EPS = 1e-12


def logit_confidence(y, outputs, task: str) -> np.ndarray:
    """LiRA's per-example statistic φ (Carlini et al. 2022, eq. 4), roughly Gaussian over
    training runs:

    - binary (``outputs`` = P(y=1)) and multiclass (``outputs`` = class probabilities):
      φ = log p_y − log Σ_{y'≠y} p_{y'} = log p_y − log(1 − p_y);
    - rating: φ = −(ŷ − y)², the negative squared error (a regression model has no class
      probabilities; this is the loss attack's statistic, and the Gaussian fit is still done
      per example, which is what makes LiRA stronger than a global loss threshold).
    """
    y = np.asarray(y)
    out = np.asarray(outputs, dtype=float)
    if task == TaskKind.RATING:
        return -((out.reshape(-1) - y.astype(float).reshape(-1)) ** 2)
    if task == TaskKind.BINARY:
        p1 = out.reshape(-1)
        p_y = np.where(y.reshape(-1).astype(int) == 1, p1, 1.0 - p1)
    elif task == TaskKind.MULTICLASS:
        p_y = out[np.arange(len(y)), y.astype(int).reshape(-1)]
    else:
        raise ValueError(f"unknown task {task!r}")
    p_y = np.clip(p_y, PROB_EPS, 1.0 - PROB_EPS)
    return np.log(p_y) - np.log1p(-p_y)


def lira_offline_scores(target, reference, global_variance: bool | None = None) -> tuple[np.ndarray, dict]:
    """Offline LiRA score per example: z = (φ_target − μ_out) / σ_out, where μ_out is the mean
    of the example's φ over the K reference models and σ_out their standard deviation — one
    global σ (pooled over examples) when K < ``GLOBAL_VARIANCE_BELOW`` or asked, else per
    example. The one-sided test of Carlini et al. (member iff Pr[Z > φ_target] is small under
    N(μ_out, σ_out²)) ranks examples exactly as z does, so z is the score; ``p_value`` =
    1 − Φ(z) is returned too."""
    from scipy.stats import norm

    t = np.asarray(target, dtype=float).reshape(-1)
    ref = np.atleast_2d(np.asarray(reference, dtype=float))
    if ref.shape[1] != t.size:
        raise ValueError(f"reference has {ref.shape[1]} examples per model, target has {t.size}")
    k = ref.shape[0]
    mu = ref.mean(axis=0)
    if global_variance is None:
        global_variance = k < GLOBAL_VARIANCE_BELOW
    if k < 2:
        # one reference model: no spread to estimate; fall back to the spread of target − μ
        sigma = np.full_like(t, float(np.std(t - mu)) or 1.0)
        how = "K=1: sigma = std over examples of (target - reference)"
    elif global_variance:
        sigma = np.full_like(t, float(np.sqrt(np.mean(ref.var(axis=0, ddof=1)))))
        how = f"global sigma (pooled over examples; K={k} < {GLOBAL_VARIANCE_BELOW})"
    else:
        sigma = ref.std(axis=0, ddof=1)
        how = f"per-example sigma (K={k})"
    sigma = np.where(sigma > 0, sigma, 1e-6)
    z = (t - mu) / sigma
    return z, {"k": k, "variance": how, "p_value": norm.sf(z)}


def attack_metrics(score, member, seed: int = 0, delta: float = 0.0, alpha: float = DEFAULT_ALPHA) -> dict[str, Any]:
    """AUC, TPR at 1 % / 0.1 % FPR, ROC (low-FPR end kept) and the Clopper–Pearson ε lower
    bound (split-half threshold, ``impactflow.audits.privacy_bounds``) of a membership score
    (higher = member)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    s = np.nan_to_num(np.asarray(score, dtype=float).reshape(-1), nan=-np.inf, posinf=1e300, neginf=-1e300)
    y = np.asarray(member, dtype=bool).reshape(-1)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        nan = float("nan")
        return {
            "auc": nan,
            "tpr_at_1pct_fpr": nan,
            "tpr_at_0.1pct_fpr": nan,
            "roc": {"fpr": [], "tpr": []},
            "n_members": n_pos,
            "n_nonmembers": n_neg,
            "epsilon_lower_bound": {"epsilon_lower_bound": 0.0},
        }
    fpr, tpr, _ = roc_curve(y.astype(int), s, drop_intermediate=False)
    bound = epsilon_lower_bound_from_scores(s[y], s[~y], delta=delta, alpha=alpha, seed=seed)
    return {
        "auc": float(roc_auc_score(y.astype(int), s)),
        "tpr_at_1pct_fpr": _tpr_at_fpr(fpr, tpr, 0.01),
        "tpr_at_0.1pct_fpr": _tpr_at_fpr(fpr, tpr, 0.001),
        "roc": downsample_curve(fpr, tpr, max_points=200, keep_low_fpr=True),
        "n_members": n_pos,
        "n_nonmembers": n_neg,
        "epsilon_lower_bound": bound,
    }


def group_exposure(score, member, groups: dict[str, Any] | None, min_per_class: int = 10) -> list[dict]:
    """Per sensitive group: AUC and TPR at 1 % FPR of the same attack restricted to the
    group's audited examples (are some groups more exposed?). Groups with fewer than
    ``min_per_class`` members or non-members get nan."""
    from sklearn.metrics import roc_auc_score, roc_curve

    rows: list[dict] = []
    s = np.nan_to_num(np.asarray(score, dtype=float).reshape(-1), nan=-np.inf, posinf=1e300, neginf=-1e300)
    y = np.asarray(member, dtype=bool).reshape(-1)
    for column, values in (groups or {}).items():
        v = np.asarray(values, dtype=object).reshape(-1)
        for g in sorted({str(x) for x in v}):
            mask = np.array([str(x) == g for x in v])
            n_pos, n_neg = int((y & mask).sum()), int((~y & mask).sum())
            auc = tpr1 = float("nan")
            if n_pos >= min_per_class and n_neg >= min_per_class:
                auc = float(roc_auc_score(y[mask].astype(int), s[mask]))
                fpr, tpr, _ = roc_curve(y[mask].astype(int), s[mask], drop_intermediate=False)
                tpr1 = _tpr_at_fpr(fpr, tpr, 0.01)
            rows.append(
                {
                    "attribute": column,
                    "group": g,
                    "n_members": n_pos,
                    "n_nonmembers": n_neg,
                    "lira_auc": auc,
                    "lira_tpr_at_1pct_fpr": tpr1,
                }
            )
    return rows


def lira_statistics(data: dict, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(φ under the audited model (n,), φ under each reference model (K, n)) from ``extra["lira"]``."""
    if "target" in data:
        return np.asarray(data["target"], dtype=float), np.atleast_2d(np.asarray(data["reference"], dtype=float))
    y = data["y"]
    return (
        logit_confidence(y, data["target_output"], task),
        np.vstack([logit_confidence(y, out, task) for out in data["reference_outputs"]]),
    )


def _epsilon_gate(name: str, eps_lb: float, epsilon: float | None, notes: list[str]) -> Gate | None:
    if epsilon is None:
        return None
    g = compare_gate(
        name,
        eps_lb,
        float(epsilon),
        "<=",
        note="empirical epsilon lower bound must not exceed the accountant's epsilon",
    )
    if g.status is Status.FAIL:
        notes.append(
            f"empirical epsilon lower bound {eps_lb:.4f} exceeds the accountant's epsilon "
            f"{float(epsilon):.4f}: a bug in training/accounting or a broken privacy claim "
            f"(the bound holds at 95% confidence)"
        )
    return g


def lira_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """Offline LiRA against the audited model: AUC, TPR at low FPR, per-group exposure, and a
    heuristic ε estimate (see the module doc: not a certified bound, never gated); gated only
    by ``max_lira_auc`` when set."""
    cfg = {**LIRA_DEFAULTS, **(thresholds or {})}
    data = (inputs.extra or {}).get("lira")
    metrics: dict[str, float] = {}
    notes: list[str] = []
    used = {k: v for k, v in cfg.items() if v is not None and k in LIRA_DEFAULTS}
    if not data:
        notes.append("LiRA not run: set privacy_audit.reference_models >= 1 to train reference models")
        return AuditResult(name="privacy_lira", status=Status.NOT_MEASURED, thresholds=used, notes=notes)
    delta = 0.0 if inputs.delta is None else float(inputs.delta)
    z, how = lira_offline_scores(*lira_statistics(data, inputs.task))
    member = np.asarray(data["member"], dtype=bool)
    res = attack_metrics(z, member, seed=int(data.get("seed", 0)), delta=delta)
    eps_lb = float(res["epsilon_lower_bound"]["epsilon_lower_bound"])
    metrics.update(
        {
            "privacy/lira_auc": res["auc"],
            "privacy/lira_tpr_at_1pct_fpr": res["tpr_at_1pct_fpr"],
            "privacy/lira_tpr_at_0.1pct_fpr": res["tpr_at_0.1pct_fpr"],
            "privacy/lira_epsilon_estimate": eps_lb,
            "privacy/lira_reference_models": float(how["k"]),
        }
    )
    if inputs.epsilon is not None:
        metrics["privacy/epsilon"] = float(inputs.epsilon)
    by_group = group_exposure(z, member, data.get("groups"))
    aucs = [r["lira_auc"] for r in by_group if not math.isnan(r["lira_auc"])]
    if len(aucs) >= 2:
        metrics["privacy/lira_group_auc_gap"] = float(max(aucs) - min(aucs))
    gates: list[Gate] = []
    if cfg.get("max_lira_auc") is not None:
        gates.append(compare_gate("privacy/lira_auc", res["auc"], float(cfg["max_lira_auc"]), "<="))
    n = min(res["n_members"], res["n_nonmembers"])
    notes.append(
        f"offline LiRA (Carlini et al. 2022) with {how['k']} reference models, {how['variance']}; "
        f"{res['n_members']} audited members vs {res['n_nonmembers']} non-members"
    )
    notes.append(LIRA_EPSILON_NOTE.format(value=eps_lb, kind=LIRA_EPSILON_KIND))
    if n and n < 1000:
        notes.append(
            f"with {res['n_nonmembers']} non-members the smallest non-zero FPR is "
            f"{1 / res['n_nonmembers']:.3g}: the TPR at 0.1% FPR is coarse"
        )
    if by_group:
        notes.append(
            "by-group rows: the same attack restricted to each group's audited examples "
            "(groups with < 10 members or non-members: nan, too few for an AUC)"
        )
    details = {
        "attack": "offline LiRA (Carlini et al. 2022)",
        "statistic": data.get("statistic", "phi"),
        "scheme": data.get("scheme", ""),
        "variance": how["variance"],
        "roc": res["roc"],
        "n_members": res["n_members"],
        "n_nonmembers": res["n_nonmembers"],
        "epsilon_estimate_method": res["epsilon_lower_bound"].get("method", ""),
        "epsilon_estimate_kind": LIRA_EPSILON_KIND,
        "wall_time_reference_models_s": data.get("wall_time_s"),
    }
    status = overall_status(gates) if gates else Status.PASS
    return AuditResult(
        name="privacy_lira",
        status=status,
        metrics=metrics,
        by_group=by_group,
        thresholds=used,
        gates=gates,
        notes=notes,
        details=details,
    )


def canary_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """One-run canary audit (Steinke et al. 2023): ε_LB from the auditor's correct guesses,
    next to the accountant's ε of the same (canary) training run; gated ε_LB <= ε. Also
    reports ``privacy/epsilon_lower_bound`` = this bound, the model's only certified empirical
    lower bound (LiRA's figure is a heuristic estimate: see the module doc)."""
    data = (inputs.extra or {}).get("canary")
    notes: list[str] = []
    if not data:
        notes.append("canary audit not run: set privacy_audit.canaries > 0")
        return AuditResult(name="privacy_canary", status=Status.NOT_MEASURED, notes=notes)
    delta = float(data.get("delta") or (inputs.delta or 0.0))
    g = one_run_guesses(data["scores"], data["included"], int(data["k_pos"]), int(data["k_neg"]))
    eps_lb = one_run_epsilon_lower_bound(g["m"], g["r"], g["v"], delta=delta, alpha=DEFAULT_ALPHA)
    metrics: dict[str, float] = {
        "privacy/canary_epsilon_lower_bound": eps_lb,
        "privacy/canary_guesses": float(g["r"]),
        "privacy/canary_correct": float(g["v"]),
        "privacy/canaries": float(g["m"]),
    }
    best = eps_lb
    metrics["privacy/epsilon_lower_bound"] = best
    run_eps = data.get("epsilon")
    eps = run_eps if run_eps is not None else inputs.epsilon
    gates: list[Gate] = []
    if eps is not None:
        metrics["privacy/epsilon"] = float(inputs.epsilon if inputs.epsilon is not None else eps)
        metrics["privacy/canary_run_epsilon"] = float(eps)
        gate = _epsilon_gate("privacy/canary_epsilon_lower_bound", eps_lb, eps, notes)
        assert gate is not None  # (an epsilon was given)
        gates.append(gate)
        if inputs.epsilon is not None:
            run_gate = _epsilon_gate("privacy/epsilon_lower_bound", best, float(inputs.epsilon), notes)
            assert run_gate is not None
            gates.append(run_gate)
    else:
        notes.append("not a DP run: the bound is an empirical leakage measure with no claim to check")
    notes.append(
        f"one-run audit (Steinke, Nasr, Jagielski 2023): {g['m']} canaries, each included with "
        f"probability 1/2; {g['r']} guesses ({data['k_pos']} IN, {data['k_neg']} OUT), {g['v']} correct; "
        f"bound at 95% confidence with delta={delta:g}"
    )
    details = {
        "attack": "one-run canary audit (Steinke et al. 2023)",
        "canary": data.get("canary_kind", ""),
        "score": data.get("statistic", "-loss"),
        "m": g["m"],
        "r": g["r"],
        "v": g["v"],
        "n_included": int(np.asarray(data["included"], dtype=bool).sum()),
        "wall_time_s": data.get("wall_time_s"),
    }
    gates = _vacuous_above_ceiling(gates, g, delta, metrics)
    status = overall_status(gates) if gates else Status.PASS
    return AuditResult(
        name="privacy_canary", status=status, metrics=metrics, thresholds={}, gates=gates, notes=notes, details=details
    )


def _vacuous_above_ceiling(gates: list[Gate], g: dict, delta: float, metrics: dict) -> list[Gate]:
    """Mark the ε_LB <= ε gates vacuous when even every guess right could not exceed ε: with r
    guesses the one-run bound is at most ``one_run_epsilon_lower_bound(m, r, r)`` (e.g. about 4
    for 200 guesses), so a claimed ε at or above that ceiling cannot be contradicted by this audit."""
    from dataclasses import replace

    if not gates:
        return gates
    ceiling = one_run_epsilon_lower_bound(g["m"], g["r"], g["r"], delta=delta, alpha=DEFAULT_ALPHA)
    metrics["privacy/canary_epsilon_lower_bound_max"] = ceiling
    out = []
    for gate in gates:
        if gate.status is Status.PASS and gate.threshold is not None and ceiling <= gate.threshold:
            why = (
                f"vacuous: even {g['r']} of {g['r']} guesses right bound epsilon at {ceiling:.3g} <= "
                f"{gate.threshold:.3g}, so this audit cannot contradict the claim"
            )
            gate = replace(gate, vacuous=True, note=f"{gate.note}; {why}" if gate.note else why)
        out.append(gate)
    return out
