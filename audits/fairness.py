"""Fairness audit: per-group rates with Wilson CIs, parity gaps and the four-fifths rule.

Conventions (fairlearn's, ``method="between_groups"``):
- demographic parity difference = max − min selection rate across groups; ratio = min / max;
- equalized odds difference = max(TPR gap, FPR gap), each gap = max − min across groups;
- four-fifths rule (29 CFR 1607.4(D)): every group's selection rate >= 0.8 × the highest;
- CIs are Wilson score intervals on each group's confusion counts.
Gate values use only groups with n >= ``min_group_size``; smaller groups stay in ``by_group``
(flagged ``too_small``) and are named in the notes, and the ``*_all_groups`` metrics repeat
the computation over every group (report-only). When fewer than two groups of an attribute are
large enough (every group too small included) its gates are not measured, with the reason.

The outcome's direction (issue 21): ``inputs.extra["favourable_prediction"]`` says which hard
prediction is good for the person: 1 (default: a positive prediction is favourable, e.g. a
granted loan) or 0 (the positive prediction is adverse, e.g. COMPAS "high risk"). The
selection-rate checks -- each group's ``selection_rate`` (the rate of the *favourable* decision),
the demographic parity difference/ratio, the four-fifths ratio and the adverse-impact notes --
use the favourable decision's rate; ``positive_prediction_rate`` keeps P(prediction = 1).
TPR/FPR/FNR keep their meaning with respect to the label (positive = the contract's positive
label), whatever is favourable. Every gap names its pair of groups and the disadvantaged one
(``details.gaps``, the gates' notes and a note per attribute).

Degenerate intervals: a percentile bootstrap of a gap collapses to [x, x] when no resample can
move it -- typically a DP ratio of 0 because a small judged group has no positive prediction.
That is an artefact of small counts, not certainty. The bootstrap intervals (validated against
fairlearn's row bootstrap) are kept as they are; a zero-width one gets the flag
``fairness/<attr>/<metric>_ci_degenerate = 1`` next to it and a note, and for the DP ratio the
interval of the ratio of Jeffreys-posterior selection rates, Beta(k + 1/2, n - k + 1/2) per
group (``<metric>_jeffreys_ci_low/high``), which cannot collapse, is reported beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .inputs import AuditInputs
from .results import AuditResult, Gate, Status, overall_status
from .bootstrap import (
    FN,
    FP,
    RATE_CELLS,
    TN,
    TP,
    bootstrap_counts,
    bootstrap_intervals,
    degenerate,
    gaps,
    group_counts,
    jeffreys_ratio_interval,
    percentile_intervals,
    rates,
)
from .stats import compare_gate, wilson_interval
from .thresholds import Threshold, at_least, at_most, defaults, setting

FAIRNESS_THRESHOLDS: dict[str, Threshold] = {
    "max_demographic_parity_difference": at_most("demographic_parity_difference", 0.1),
    "max_equalized_odds_difference": at_most("equalized_odds_difference", 0.1),
    "four_fifths_ratio": at_least("four_fifths_min_ratio", 0.8),
    "min_group_size": setting(30, "count"),
    "intersections": setting(None, "columns"),  # None -> all sensitive columns together when there are >= 2
    "ci_level": setting(0.95, "fraction"),
    "n_boot": setting(1000, "whole"),  # bootstrap replicates for the CIs of the gap metrics (0 = none)
}
FAIRNESS_DEFAULTS = defaults(FAIRNESS_THRESHOLDS)

INTERSECTION_SEP = "_x_"
GROUP_SEP = " & "
MISSING_LABEL = "(missing)"


def group_labels(sensitive: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One string label per row: the column's value, or the values joined with ' & '."""
    parts = []
    for c in columns:
        s = sensitive[c].astype(object)
        parts.append(s.where(s.notna(), MISSING_LABEL).astype(str))
    out = parts[0]
    for p in parts[1:]:
        out = out + GROUP_SEP + p
    return out.rename(INTERSECTION_SEP.join(columns)).reset_index(drop=True)


def _attributes(sensitive: pd.DataFrame, intersections) -> dict[str, pd.Series]:
    columns = [str(c) for c in sensitive.columns]
    sensitive = sensitive.set_axis(columns, axis=1)
    if intersections is None:
        intersections = [columns] if len(columns) >= 2 else []
    attrs: dict[str, pd.Series] = {c: group_labels(sensitive, [c]) for c in columns}
    for combo in intersections:
        combo = [str(c) for c in combo]
        missing = [c for c in combo if c not in columns]
        if missing:
            raise ValueError(
                f"fairness intersection {combo} names columns not in the sensitive data: {missing} (have {columns})"
            )
        name = INTERSECTION_SEP.join(combo)
        if name not in attrs:
            attrs[name] = group_labels(sensitive, combo)
    return attrs


# the confusion cells seen from the negative prediction: TN takes TP's place, FN takes FP's, so the
# "selection rate" of these counts, (TN + FN) / n, is the rate of the decision 0
FLIPPED_CELLS = [TN, FN, TP, FP]


def favourable_prediction(inputs: AuditInputs) -> int:
    """1 when a positive prediction is the favourable decision (the default), 0 when it is the
    adverse one (``inputs.extra["favourable_prediction"]``)."""
    value = (inputs.extra or {}).get("favourable_prediction", 1)
    if value in (0, 1, True, False):
        return int(value)
    raise ValueError(f"favourable_prediction must be 0 or 1, got {value!r}")


def favourable_extra(positive_label: Any, favourable_outcome: Any) -> dict[str, Any]:
    """The ``AuditInputs.extra`` entries that tell the fairness audit which prediction is
    favourable: the label ``favourable_outcome`` (None: not declared, the positive label is taken
    as favourable, as before) compared, as text, with the positive label."""
    if favourable_outcome is None or positive_label is None:
        return {}
    fav = str(favourable_outcome).strip()
    if fav == str(positive_label).strip():
        return {
            "favourable_prediction": 1,
            "favourable_text": f"a positive prediction (1 = '{fav}', the positive label)",
        }
    return {
        "favourable_prediction": 0,
        "favourable_text": f"a negative prediction (0 = '{fav}'; the positive label '{positive_label}' "
        "is the adverse outcome)",
    }


def selection_counts(counts: np.ndarray, favourable: int) -> np.ndarray:
    """Counts whose selection rate is the favourable decision's rate (``counts`` itself for 1)."""
    return counts if favourable == 1 else counts[..., FLIPPED_CELLS]


def _gaps(counts: np.ndarray, favourable: int) -> dict[str, np.ndarray]:
    """DP difference/ratio on the favourable decision's rate; EO on the label's TPR/FPR."""
    out = gaps(counts)
    if favourable == 0:
        sel = gaps(selection_counts(counts, 0))
        out = {
            **out,
            "demographic_parity_difference": sel["demographic_parity_difference"],
            "demographic_parity_ratio": sel["demographic_parity_ratio"],
        }
    return out


def _intervals(counts: np.ndarray, favourable: int, n_boot: int, level: float) -> dict[str, tuple[float, float]]:
    """``bootstrap_intervals`` of the gaps as ``_gaps`` defines them (one set of replicates)."""
    if favourable == 1:
        return bootstrap_intervals(counts, n_boot, level)
    return percentile_intervals(_gaps(bootstrap_counts(counts, n_boot), favourable), level)


def _pair(rows: list[dict], rate: str, higher_is_worse: bool) -> dict[str, Any]:
    """The two groups behind a max - min gap of ``rate``: lowest and highest, and which one is
    disadvantaged (the lowest, unless a higher rate is the worse one)."""
    lo = min(rows, key=lambda r: (r[rate], r["group"]))
    hi = max(rows, key=lambda r: (r[rate], r["group"]))
    worse, better = (hi, lo) if higher_is_worse else (lo, hi)
    return {
        "rate": rate,
        "lowest_group": lo["group"],
        "lowest": lo[rate],
        "highest_group": hi["group"],
        "highest": hi[rate],
        "disadvantaged_group": worse["group"],
        "advantaged_group": better["group"],
    }


def gap_pairs(
    attr: str, judged: list[dict], metrics: dict[str, float], favourable: int, favourable_text: str
) -> list[dict]:
    """``details.gaps``: for each gate metric of ``attr``, the pair of judged groups behind it and
    the disadvantaged group: the one that gets the favourable decision less often -- overall for the
    selection-rate gaps, and among people with the same true label for the equalized odds
    difference (the larger of its TPR and FPR gaps: the lower rate is worse when a positive
    prediction is favourable, the higher one when it is adverse)."""
    p = f"fairness/{attr}"
    adverse_positive = favourable == 0
    sel = _pair(judged, "selection_rate", False)
    tpr = _pair(judged, "true_positive_rate", adverse_positive)
    fpr = _pair(judged, "false_positive_rate", adverse_positive)
    eo = tpr if tpr["highest"] - tpr["lowest"] >= fpr["highest"] - fpr["lowest"] else fpr
    return [
        {
            "attribute": attr,
            "metric": f"{p}/demographic_parity_difference",
            "value": metrics.get(f"{p}/demographic_parity_difference"),
            "favourable": favourable_text,
            **sel,
        },
        {
            "attribute": attr,
            "metric": f"{p}/four_fifths_min_ratio",
            "value": metrics.get(f"{p}/four_fifths_min_ratio"),
            "favourable": favourable_text,
            **sel,
        },
        {
            "attribute": attr,
            "metric": f"{p}/equalized_odds_difference",
            "value": metrics.get(f"{p}/equalized_odds_difference"),
            "favourable": favourable_text,
            **eo,
        },
    ]


RATE_WORDS = {"selection_rate": "favourable-decision rate", "true_positive_rate": "TPR", "false_positive_rate": "FPR"}


def gap_text(g: dict) -> str:
    """One sentence naming the pair of groups behind a gap and the disadvantaged group."""
    what = RATE_WORDS.get(g["rate"], g["rate"])
    return (
        f"{what} '{g['lowest_group']}' {g['lowest']:.4f} (lowest) vs '{g['highest_group']}' "
        f"{g['highest']:.4f} (highest); disadvantaged: '{g['disadvantaged_group']}'"
    )


def _group_rows(
    attr: str, uniques: list[str], counts: np.ndarray, min_size: int, level: float, favourable: int = 1
) -> list[dict[str, Any]]:
    """One row per group (counts, rates with Wilson CIs) from the (G, 4) count matrix of the
    groups ``uniques`` (sorted labels).

    Rates come from the confusion counts with fairlearn's conventions (``impactflow.audits.bootstrap``),
    so they equal fairlearn's ``MetricFrame`` values (tested) at a fraction of the cost."""
    point = rates(counts)
    total = int(counts.sum())
    rows = []
    for i, g in enumerate(uniques):
        c = counts[i]
        n = int(c.sum())
        row: dict[str, Any] = {
            "attribute": attr,
            "group": str(g),
            "n": n,
            "share": n / total if total else float("nan"),
            "too_small": n < min_size,
            "tp": int(c[TP]),
            "fp": int(c[FP]),
            "tn": int(c[TN]),
            "fn": int(c[FN]),
        }
        for rate, (num, den) in RATE_CELLS.items():
            k, d = int(c[list(num)].sum()), int(c[list(den)].sum())
            row[rate] = float(point[rate][i])
            row[f"{rate}_ci_low"], row[f"{rate}_ci_high"] = wilson_interval(k, d, level)
        row["positive_prediction_rate"] = row["selection_rate"]
        row["positive_prediction_rate_ci_low"] = row["selection_rate_ci_low"]
        row["positive_prediction_rate_ci_high"] = row["selection_rate_ci_high"]
        if favourable == 0:  # the selection rate is the favourable (negative) decision's rate
            k = int(c[TN] + c[FN])
            row["selection_rate"] = k / n if n else 0.0
            row["selection_rate_ci_low"], row["selection_rate_ci_high"] = wilson_interval(k, n, level)
        rows.append(row)
    return rows


def _degenerate_note(
    attr: str, metric: str, value: float, judged: list[dict], counts: np.ndarray, level: float, favourable: int = 1
) -> str:
    """The note beside a zero-width bootstrap interval: why it is not certainty."""
    smallest = min(judged, key=lambda r: r["n"])
    chosen = int(round(smallest["selection_rate"] * smallest["n"]))
    text = (
        f"{attr}: the bootstrap {level:.0%} interval of {metric} is [{value:.4g}, {value:.4g}] (degenerate, "
        f"flagged {metric}_ci_degenerate): no resample can move the value (smallest judged group "
        f"'{smallest['group']}': n={smallest['n']}, {chosen} "
        f"{'positive predictions' if favourable == 1 else 'favourable (negative) predictions'}), "
        "a small-sample artefact, not certainty"
    )
    if metric == "demographic_parity_ratio":
        lo, hi = jeffreys_ratio_interval(counts, level=level)
        text += (
            f"; the ratio of Jeffreys-posterior selection rates, Beta(k+1/2, n-k+1/2) per group, gives "
            f"[{lo:.4g}, {hi:.4g}] ({metric}_jeffreys_ci_low/high)"
        )
    return text


def fairness_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """Group-fairness audit of the hard predictions over each sensitive column and each
    intersection (see the module docstring for the conventions and threshold keys)."""
    cfg = {**FAIRNESS_DEFAULTS, **{k: v for k, v in (thresholds or {}).items()}}
    unknown = sorted(set(cfg) - set(FAIRNESS_DEFAULTS))
    max_dp = float(cfg["max_demographic_parity_difference"])
    max_eo = float(cfg["max_equalized_odds_difference"])
    ff = float(cfg["four_fifths_ratio"])
    min_size = int(cfg["min_group_size"])
    level = float(cfg["ci_level"])
    n_boot = int(cfg["n_boot"])
    used = {
        "max_demographic_parity_difference": max_dp,
        "max_equalized_odds_difference": max_eo,
        "four_fifths_ratio": ff,
        "min_group_size": float(min_size),
        "ci_level": level,
        "n_boot": float(n_boot),
    }
    conventions = {
        "difference": "max - min across groups (fairlearn method='between_groups')",
        "ratio": "min / max across groups",
        "equalized_odds": "max(TPR gap, FPR gap), each gap = max - min across groups",
        "ci": f"group rates: Wilson score interval at level {level}; gap metrics: percentile "
        f"bootstrap over rows ({n_boot} replicates, drawn as multinomial confusion counts); "
        "a zero-width bootstrap interval is flagged '_ci_degenerate' (a small-sample artefact, "
        "not certainty), and for the DP ratio a Jeffreys-posterior interval is given beside it",
        "four_fifths": f"29 CFR 1607.4(D): every judged group's selection rate >= {ff} x the "
        "highest judged group's (the regulation asks for significance testing "
        "with small samples: see the CIs)",
        "judged_groups": f"gate values use groups with n >= {min_size}; '_all_groups' metrics "
        "use every group (report-only)",
        "prediction": f"predicted label = 1 iff score >= {inputs.decision_threshold}",
    }
    fav = favourable_prediction(inputs)
    fav_text = str(
        (inputs.extra or {}).get("favourable_text")
        or ("a positive prediction (1)" if fav == 1 else "a negative prediction (0)")
    )
    conventions["favourable"] = (
        f"the favourable decision is {fav_text}: selection rates, the demographic "
        "parity difference/ratio and the four-fifths ratio use its rate; TPR/FPR/FNR "
        "are with respect to the label's positive class"
    )
    if (inputs.extra or {}).get("hard_predictions"):
        conventions["prediction"] = "hard predictions as given (no score, no threshold)"
    elif (inputs.extra or {}).get("decision_text"):  # how the threshold was set (models/threshold.py)
        conventions["prediction"] += f"; threshold {inputs.extra['decision_text']}"
    if inputs.sensitive.shape[1] == 0:
        return AuditResult(
            name="fairness",
            status=Status.SKIPPED,
            thresholds=used,
            notes=["no sensitive columns in the test data: fairness audit skipped"],
            details={"conventions": conventions, "attributes": []},
        )

    aggregates = (inputs.extra or {}).get("aggregates")  # a streamed decision log (audits.aggregates)
    if aggregates is not None:
        attrs = aggregates.attributes(cfg["intersections"])
        grouped = {attr: aggregates.confusion(cols) for attr, cols in attrs.items()}
    else:
        labelled = _attributes(inputs.sensitive, cfg["intersections"])
        attrs = dict(labelled)
        grouped = {}
        for attr, labels in labelled.items():
            codes, uniques = pd.factorize(labels, sort=True)
            grouped[attr] = ([str(g) for g in uniques], group_counts(codes, inputs.y_true, inputs.y_pred, len(uniques)))
    metrics: dict[str, float] = {}
    by_group: list[dict[str, Any]] = []
    gates: list[Gate] = []
    notes: list[str] = []
    gap_list: list[dict[str, Any]] = []
    if unknown:
        notes.append(f"ignored unknown fairness threshold keys: {unknown}")

    for attr, (uniques, counts) in grouped.items():
        rows = _group_rows(attr, uniques, counts, min_size, level, fav)
        judged = [r for r in rows if not r["too_small"]]
        small = [r for r in rows if r["too_small"]]
        ref = judged or rows
        max_sr = max((r["selection_rate"] for r in ref), default=0.0)
        for r in rows:
            r["selection_rate_ratio_to_max"] = r["selection_rate"] / max_sr if max_sr > 0 else float("nan")
        by_group.extend(rows)
        if small:
            listed = ", ".join(f"'{r['group']}' (n={r['n']})" for r in small)
            notes.append(
                f"{attr}: too small to judge (n < {min_size}): {listed}; "
                "reported in by_group, excluded from the gate values"
            )
        for r in rows:
            if r["tp"] + r["fn"] == 0:
                notes.append(
                    f"{attr}: group '{r['group']}' has no positive labels: TPR/FNR "
                    "undefined (fairlearn reports 0), which affects the EO difference"
                )
            if r["fp"] + r["tn"] == 0:
                notes.append(
                    f"{attr}: group '{r['group']}' has no negative labels: FPR "
                    "undefined (fairlearn reports 0), which affects the EO difference"
                )

        keep = np.array([not r["too_small"] for r in rows], dtype=bool)
        judged_gaps = {k: float(v) for k, v in _gaps(counts[keep], fav).items()}
        all_gaps = {k: float(v) for k, v in _gaps(counts, fav).items()}
        if len(judged) >= 2 and max_sr > 0:
            ff_ratio = min(r["selection_rate"] for r in judged) / max_sr
        else:
            ff_ratio = float("nan")
        p = f"fairness/{attr}"
        for k, v in judged_gaps.items():
            metrics[f"{p}/{k}"] = v
        metrics[f"{p}/four_fifths_min_ratio"] = ff_ratio
        metrics[f"{p}/n_groups_judged"] = float(len(judged))
        metrics[f"{p}/n_groups_too_small"] = float(len(small))
        for k, v in all_gaps.items():
            metrics[f"{p}/{k}_all_groups"] = v
        if n_boot > 0 and len(judged) >= 2:
            for k, (lo, hi) in _intervals(counts[keep], fav, n_boot, level).items():
                metrics[f"{p}/{k}_ci_low"], metrics[f"{p}/{k}_ci_high"] = lo, hi
                if degenerate((lo, hi)):
                    metrics[f"{p}/{k}_ci_degenerate"] = 1.0
                    sel = selection_counts(counts[keep], fav)
                    notes.append(_degenerate_note(attr, k, lo, judged, sel, level, fav))
                    if k == "demographic_parity_ratio":
                        jlo, jhi = jeffreys_ratio_interval(sel, level=level)
                        metrics[f"{p}/{k}_jeffreys_ci_low"], metrics[f"{p}/{k}_jeffreys_ci_high"] = jlo, jhi

        specs = [
            (f"{p}/demographic_parity_difference", judged_gaps["demographic_parity_difference"], max_dp, "<="),
            (f"{p}/equalized_odds_difference", judged_gaps["equalized_odds_difference"], max_eo, "<="),
            (f"{p}/four_fifths_min_ratio", ff_ratio, ff, ">="),
        ]
        if len(judged) < 2:
            why = f"only {len(judged)} group(s) of {attr} have n >= {min_size}: nothing to compare"
            notes.append(f"{attr}: gates not measured: {why}")
            gates.extend(Gate(n, Status.NOT_MEASURED, None, t, c, why) for n, _, t, c in specs)
            continue
        if max_sr == 0:
            notes.append(f"{attr}: no judged group has any favourable decision: selection-rate ratios undefined")
        pairs = gap_pairs(attr, judged, metrics, fav, fav_text)
        gap_list.extend(pairs)
        gap_why = {g["metric"]: gap_text(g) for g in pairs}
        for g in pairs:
            notes.append(f"{attr}: {g['metric'].rsplit('/', 1)[1]} {_num(g['value'])}: {gap_why[g['metric']]}")
        gates.extend(_with_note(compare_gate(n, v, t, c), gap_why.get(n)) for n, v, t, c in specs)
        for r in judged:
            if max_sr > 0 and r["selection_rate_ratio_to_max"] < ff:
                notes.append(
                    f"{attr}: group '{r['group']}' selection rate {r['selection_rate']:.4f} is "
                    f"{r['selection_rate_ratio_to_max']:.3f} x the highest judged group's "
                    f"({max_sr:.4f}): below the four-fifths ratio {ff}"
                )

    return AuditResult(
        name="fairness",
        status=overall_status(gates),
        metrics=metrics,
        by_group=by_group,
        thresholds=used,
        gates=gates,
        notes=notes,
        details={
            "conventions": conventions,
            "attributes": list(attrs),
            "intersections": list(attrs)[inputs.sensitive.shape[1] :],
            "favourable_prediction": fav,
            "favourable": fav_text,
            "gaps": gap_list,
        },
    )


def _num(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.4f}"


def _with_note(gate: Gate, note: str | None) -> Gate:
    """``gate`` with ``note`` appended (the pair of groups behind its value)."""
    if not note:
        return gate
    from dataclasses import replace

    return replace(gate, note=f"{gate.note}; {note}" if gate.note else note)
