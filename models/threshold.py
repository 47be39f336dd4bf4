"""The decision threshold of a binary model (issue 21, item 5): fixed, or chosen from costs.

``model.threshold`` fixes it (predicted 1 iff P(positive) >= threshold). ``model.costs``
(``false_positive``, ``false_negative``: the cost of each error, e.g. German credit's 5:1 for
calling a bad risk good) chooses it instead: the threshold that minimises the total cost
``c_fp * FP + c_fn * FN`` on the **validation split** (never the test split, which the audits
read). Candidates are 0 (everyone 1), every distinct validation score (predicted 1 iff
score >= it) and a value above the highest score (everyone 0); ties go to the candidate nearest
the Bayes threshold ``c_fp / (c_fp + c_fn)`` (the optimum for calibrated scores), then to the
lower one. Neither set: 0.5, as before.

Under DP a threshold fitted on rows would not be covered by the (ε, δ), so a private model with
costs uses the Bayes threshold itself, which depends on the costs only (and says so).
Pure: numpy only; ``apply_decision`` sets the fitted predictor's threshold and records it in
``training["decision"]``, which the report shows.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from impactflow.task_kind import TaskKind

DEFAULT_THRESHOLD = 0.5


def bayes_threshold(cost_fp: float, cost_fn: float) -> float:
    """``c_fp / (c_fp + c_fn)``: predict 1 when P(1) * c_fn > (1 - P(1)) * c_fp."""
    return float(cost_fp) / (float(cost_fp) + float(cost_fn))


def choose_threshold(y_true, y_score, cost_fp: float, cost_fn: float) -> dict[str, Any]:
    """The cost-minimising threshold on (``y_true``, ``y_score``) (see the module docstring), with
    its counts and cost: ``{threshold, cost, cost_per_row, fp, fn, n, bayes_threshold}``."""
    y = np.asarray(y_true).astype(int).reshape(-1)
    s = np.asarray(y_score, dtype=float).reshape(-1)
    if y.size == 0 or y.size != s.size:
        raise ValueError("choose_threshold needs as many labels as scores, at least one")
    if not (cost_fp > 0 and cost_fn > 0):
        raise ValueError("costs must be positive")
    uniq = np.unique(s)
    top = float(uniq[-1])
    above = np.nextafter(top, np.inf) if top < 1.0 else np.nextafter(1.0, np.inf)
    candidates = np.concatenate([[0.0], uniq, [above]])
    candidates = np.unique(np.clip(candidates, 0.0, None))
    order = np.argsort(s)
    s_sorted, y_sorted = s[order], y[order]
    # rows with score < t are predicted 0: count them by binary search on the sorted scores
    below = np.searchsorted(s_sorted, candidates, side="left")
    pos_below = np.concatenate([[0], np.cumsum(y_sorted)])[below]  # positives predicted 0: FN
    neg_below = below - pos_below
    n_neg = int((y == 0).sum())
    fn = pos_below
    fp = n_neg - neg_below
    cost = cost_fp * fp + cost_fn * fn
    bayes = bayes_threshold(cost_fp, cost_fn)
    best = np.flatnonzero(cost == cost.min())
    pick = int(min(best, key=lambda i: (abs(candidates[i] - bayes), candidates[i])))
    return {
        "threshold": float(candidates[pick]),
        "cost": float(cost[pick]),
        "cost_per_row": float(cost[pick]) / y.size,
        "fp": int(fp[pick]),
        "fn": int(fn[pick]),
        "n": int(y.size),
        "bayes_threshold": bayes,
    }


def decision_record(decision: dict | None, *, private: bool, y_val=None, score_val=None) -> dict[str, Any]:
    """``training["decision"]`` for one binary model: the threshold and how it was set.
    ``decision``: ``{"threshold": t}``, ``{"costs": {"false_positive": a, "false_negative": b}}`` or
    None/empty (0.5). Validation labels and scores are read only to choose from costs without DP."""
    decision = decision or {}
    costs = decision.get("costs")
    if decision.get("threshold") is not None:
        t = float(decision["threshold"])
        return {
            "threshold": t,
            "method": "fixed",
            "source": "model.threshold",
            "text": f"fixed at {t:g} (model.threshold)",
        }
    if costs:
        c_fp, c_fn = float(costs["false_positive"]), float(costs["false_negative"])
        bayes = bayes_threshold(c_fp, c_fn)
        base = {
            "cost_false_positive": c_fp,
            "cost_false_negative": c_fn,
            "bayes_threshold": bayes,
            "source": "model.costs",
        }
        if private:
            return {
                **base,
                "threshold": bayes,
                "method": "bayes (DP: not fitted on rows)",
                "text": f"{bayes:.4f} = c_fp / (c_fp + c_fn) = {c_fp:g} / ({c_fp:g} + {c_fn:g}), from the costs "
                "alone: a threshold chosen on rows would not be covered by the model's (ε, δ)",
            }
        chosen = choose_threshold(y_val, score_val, c_fp, c_fn)
        return {
            **base,
            "threshold": chosen["threshold"],
            "method": "min cost on the validation split",
            "validation_cost": chosen["cost"],
            "validation_cost_per_row": chosen["cost_per_row"],
            "validation_fp": chosen["fp"],
            "validation_fn": chosen["fn"],
            "validation_n": chosen["n"],
            "text": f"{chosen['threshold']:.4f}: the lowest total cost {c_fp:g} x FP + {c_fn:g} x FN on the "
            f"validation split ({chosen['n']} rows: {chosen['fp']} FP, {chosen['fn']} FN, cost "
            f"{chosen['cost']:g}); the Bayes threshold of these costs is {bayes:.4f}",
        }
    return {
        "threshold": DEFAULT_THRESHOLD,
        "method": "default",
        "source": "default",
        "text": f"{DEFAULT_THRESHOLD:g} (the default: neither model.threshold nor model.costs set)",
    }


def apply_decision(fitted, split, roles, decision: dict | None, *, private: bool):
    """``fitted`` with its predictor's threshold set (``decision_record``) and the record in
    ``training["decision"]``; non-binary models are returned unchanged."""
    if getattr(fitted, "task", None) != TaskKind.BINARY:
        return fitted
    y_val = score_val = None
    if (decision or {}).get("costs") and not private:
        from impactflow.models.base import targets

        y_val = targets(split.validation, roles).astype(int)
        score_val = fitted.predictor.predict(split.validation)
    record = decision_record(decision, private=private, y_val=y_val, score_val=score_val)
    fitted.predictor.threshold = record["threshold"]  # an instance attribute: predict_frame's cut
    training = {**fitted.training, "decision": record}
    dp = training.get("dp") or {}
    if dp.get("enabled") and record["threshold"] != DEFAULT_THRESHOLD:
        from impactflow.models.dp_claim import decision_rule

        old = f"fixed at {DEFAULT_THRESHOLD:g}"
        training["dp"] = {
            **dp,
            "preprocessing": {
                **(dp.get("preprocessing") or {}),
                "decision": decision_rule(TaskKind.BINARY, record["threshold"]),
            },
            "covers": str(dp.get("covers") or "").replace(old, f"fixed at {record['threshold']:g}"),
        }
    return replace(fitted, training=training)
