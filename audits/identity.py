"""Identity-term bias audit of a text classifier (text has no demographic column, so the audit
measures what the model does with identity terms).

Three measurements, each over the identity terms of Dixon et al. 2018 (adjectives_people.txt,
passed in ``inputs.extra["identity_terms"]``; never hard-coded here). A text belongs to the
subgroup of a term when it contains the term as a whole word (case-insensitive; a multi-word
term matches across any whitespace).

1. **Counterfactual invariance** (counterfactual token fairness, Garg et al. 2019,
   "Counterfactual Fairness in Text Classification through Robustness", AIES): for a seeded
   sample of held-out texts, each term t gives one counterfactual per text: the first identity
   term in the text is *swapped* for t, or, in a text without one, the sentence
   ``INSERT_TEMPLATE`` is *inserted* in front. Per term: flip rate = share of texts whose
   predicted label changes, mean score shift = mean(score(counterfactual) − score(original)).
2. **Template test** (Dixon, Li, Sorensen, Thain & Vasserman 2018, "Measuring and Mitigating
   Unintended Bias in Text Classification", AIES): FPR_t / FNR_t on the template sentences
   containing t; FPED = Σ_t |FPR − FPR_t|, FNED = Σ_t |FNR − FNR_t| (FPR, FNR over all
   template sentences; terms whose rate is undefined are left out of the sums).
3. **Bias AUCs** on the labelled test texts (Borkan, Dixon, Sorensen, Thain & Vasserman 2019,
   "Nuanced Metrics for Measuring Unintended Bias with Real Data for Text Classification",
   WWW; the Jigsaw Unintended Bias competition metric): Subgroup AUC (subgroup rows only),
   BPSN AUC (background positives + subgroup negatives), BNSP AUC (background negatives +
   subgroup positives), on raw scores. Across terms: generalized mean
   M_p(m) = ((1/N) Σ_s m_s^p)^(1/p) with p = −5; final score = 0.25 · overall AUC +
   0.25 · (M_p(Subgroup) + M_p(BPSN) + M_p(BNSP)). Terms with fewer than
   ``min_subgroup_size`` test texts, or without both classes where an AUC needs them, are
   listed as too small and left out of the means (stated in the notes).

With ``paired_texts`` (e.g. the fuzzed twin of each Jigsaw test comment, identity terms
swapped at random), also: AUC on the twins vs the originals and the share of predictions
that flip between them.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Sequence

import numpy as np

from .inputs import AuditInputs
from .results import AuditResult, Status, overall_status
from .stats import compare_gate
from .thresholds import Threshold, at_least, at_most, defaults, setting
from impactflow.task_kind import TaskKind

PREFIX = "fairness/identity"
INSERT_TEMPLATE = "I am {term}. {text}"
IDENTITY_THRESHOLDS: dict[str, Threshold] = {
    # worst term: at most 5% of predictions may change by swapping a term
    "max_flip_rate": at_most("max_flip_rate", 0.05),
    "max_template_fpr_range": at_most("template_fpr_range"),  # max - min of the per-term template FPRs
    "min_final_bias_score": at_least("final_bias_score"),  # Jigsaw final weighted score
    "min_subgroup_size": setting(10, "count"),  # test texts a term needs before its AUCs count
    "counterfactual_sample": setting(500, "count"),  # held-out texts used for counterfactuals (seeded sample)
    "template_sample": setting(5000, "count"),  # template sentences scored (seeded sample)
    "power": setting(-5.0, "number"),  # generalized-mean exponent (Borkan et al. 2019)
}
IDENTITY_DEFAULTS = defaults(IDENTITY_THRESHOLDS)
N_WORST = 5


# --------------------------------------------------------------------------- term matching


def term_key(term: str) -> str:
    """Metric-name form of a term: ``african american`` -> ``african_american``."""
    return "_".join(term.split())


def term_pattern(term: str) -> re.Pattern:
    """Whole-word, case-insensitive pattern of a (possibly multi-word) term."""
    body = r"\s+".join(re.escape(w) for w in term.split())
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


def term_membership(texts: Sequence[str], terms: Sequence[str]) -> dict[str, np.ndarray]:
    """term -> boolean mask: which texts contain the term as a whole word."""
    return {t: np.fromiter((bool(term_pattern(t).search(x)) for x in texts), bool, len(texts)) for t in terms}


def counterfactual_text(text: str, term: str, patterns: Sequence[re.Pattern]) -> tuple[str, str]:
    """(counterfactual, "swap" | "insert"): the earliest identity-term match in ``text`` (the
    longest one when several start at the same place) is replaced by ``term``; with no match,
    ``INSERT_TEMPLATE`` puts the term in front of the text."""
    best = None
    for pat in patterns:
        m = pat.search(text)
        if m and (best is None or m.start() < best.start() or (m.start() == best.start() and m.end() > best.end())):
            best = m
    if best is not None:
        return text[: best.start()] + term + text[best.end() :], "swap"
    return INSERT_TEMPLATE.format(term=term, text=text), "insert"


# --------------------------------------------------------------------------- formulas


def counterfactual_table(
    texts: Sequence[str], score_texts: Callable[[list[str]], np.ndarray], terms: Sequence[str], threshold: float = 0.5
) -> list[dict[str, Any]]:
    """Per term: ``flip_rate``, ``mean_score_shift`` (signed), ``mean_abs_score_shift``,
    ``n`` and ``n_swapped`` over ``texts`` (one scorer call for all counterfactuals)."""
    texts = [str(t) for t in texts]
    patterns = [term_pattern(t) for t in terms]
    base = np.asarray(score_texts(texts), dtype=float)
    made = [counterfactual_text(x, t, patterns) for t in terms for x in texts]
    scores = np.asarray(score_texts([c for c, _ in made]), dtype=float).reshape(len(terms), len(texts))
    kinds = np.array([k == "swap" for _, k in made]).reshape(len(terms), len(texts))
    rows = []
    for i, term in enumerate(terms):
        diff = scores[i] - base
        flips = (scores[i] >= threshold) != (base >= threshold)
        rows.append(
            {
                "term": term,
                "n": len(texts),
                "n_swapped": int(kinds[i].sum()),
                "flip_rate": float(flips.mean()) if len(texts) else math.nan,
                "mean_score_shift": float(diff.mean()) if len(texts) else math.nan,
                "mean_abs_score_shift": float(np.abs(diff).mean()) if len(texts) else math.nan,
            }
        )
    return rows


def _rate(num: int, den: int) -> float:
    return num / den if den else math.nan


def error_rate_equality(y_true, y_pred, membership: dict[str, np.ndarray]) -> dict[str, Any]:
    """Dixon et al. 2018: overall FPR/FNR, per-term FPR_t/FNR_t (with counts) and
    FPED = Σ_t |FPR − FPR_t|, FNED = Σ_t |FNR − FNR_t| over terms where the rate is defined."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)

    def rates(mask):
        yt, yp = y_true[mask], y_pred[mask]
        fp, tn = int(((yp == 1) & (yt == 0)).sum()), int(((yp == 0) & (yt == 0)).sum())
        fn, tp = int(((yp == 0) & (yt == 1)).sum()), int(((yp == 1) & (yt == 1)).sum())
        return {
            "n": int(mask.sum()),
            "n_neg": fp + tn,
            "n_pos": fn + tp,
            "fpr": _rate(fp, fp + tn),
            "fnr": _rate(fn, fn + tp),
        }

    overall = rates(np.ones(len(y_true), dtype=bool))
    per_term = {t: rates(m) for t, m in membership.items()}
    fped = sum(abs(overall["fpr"] - r["fpr"]) for r in per_term.values() if not math.isnan(r["fpr"]))
    fned = sum(abs(overall["fnr"] - r["fnr"]) for r in per_term.values() if not math.isnan(r["fnr"]))
    defined_fpr = [r["fpr"] for r in per_term.values() if not math.isnan(r["fpr"])]
    return {
        "overall": overall,
        "per_term": per_term,
        "fped": fped if not math.isnan(overall["fpr"]) else math.nan,
        "fned": fned if not math.isnan(overall["fnr"]) else math.nan,
        "fpr_range": (max(defined_fpr) - min(defined_fpr)) if defined_fpr else math.nan,
    }


def _auc(y, s) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y).astype(int)
    if y.size == 0 or y.min() == y.max():
        return math.nan
    return float(roc_auc_score(y, s))


def bias_aucs(y_true, y_score, in_subgroup) -> dict[str, float]:
    """Borkan et al. 2019: Subgroup AUC (subgroup rows), BPSN AUC (background positives +
    subgroup negatives), BNSP AUC (background negatives + subgroup positives); nan when the
    rows lack a class."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(y_score, dtype=float)
    g = np.asarray(in_subgroup, dtype=bool)
    bpsn = (~g & (y == 1)) | (g & (y == 0))
    bnsp = (~g & (y == 0)) | (g & (y == 1))
    return {"subgroup_auc": _auc(y[g], s[g]), "bpsn_auc": _auc(y[bpsn], s[bpsn]), "bnsp_auc": _auc(y[bnsp], s[bnsp])}


def generalized_mean(values: Sequence[float], p: float = -5.0) -> float:
    """M_p = ((1/N) Σ m^p)^(1/p) over the finite values (nan if none). For p < 0 a zero value
    makes the mean 0 (its limit)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan
    if p == 0:
        return float(np.exp(np.log(v).mean()))
    if p < 0 and (v <= 0).any():
        return 0.0
    return float(np.mean(v**p) ** (1.0 / p))


def final_bias_score(overall_auc: float, subgroup: float, bpsn: float, bnsp: float, weight: float = 0.25) -> float:
    """Jigsaw Unintended Bias final metric: w·overall AUC + w·(M_p(Subgroup) + M_p(BPSN) + M_p(BNSP))."""
    return float(weight * overall_auc + weight * (subgroup + bpsn + bnsp))


# --------------------------------------------------------------------------- audit


def identity_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """Counterfactual term swaps/insertions, Dixon template FPR/FNR with FPED/FNED, and Jigsaw
    bias AUCs per identity term, gated by ``max_flip_rate`` (worst term),
    ``max_template_fpr_range`` and ``min_final_bias_score`` when configured."""
    cfg = {**IDENTITY_DEFAULTS, **(thresholds or {})}
    extra = inputs.extra or {}
    notes: list[str] = []
    unknown = sorted(set(cfg) - set(IDENTITY_DEFAULTS))
    if unknown:
        notes.append(f"ignored unknown identity threshold keys: {unknown}")
    used = {
        k: float(cfg[k])
        for k in ("max_flip_rate", "max_template_fpr_range", "min_final_bias_score")
        if cfg[k] is not None
    }
    score_texts, terms, texts = extra.get("score_texts"), extra.get("identity_terms"), extra.get("texts")
    if inputs.task != TaskKind.BINARY or score_texts is None or not terms or texts is None:
        return AuditResult(
            name="identity",
            status=Status.NOT_MEASURED,
            thresholds=used,
            notes=notes
            + [
                "needs a binary text model with a scorer, held-out texts and identity terms "
                "(Family.audit_extras): not measured"
            ],
        )
    terms = [str(t) for t in terms]
    texts = [str(t) for t in texts]
    thr = inputs.decision_threshold
    p = float(cfg["power"])
    min_size = int(cfg["min_subgroup_size"])
    metrics: dict[str, float] = {}
    rows = {t: {"term": t} for t in terms}
    charts: list[dict[str, Any]] = []
    details: dict[str, Any] = {
        "insert_template": INSERT_TEMPLATE,
        "power": p,
        "min_subgroup_size": min_size,
        "n_terms": len(terms),
    }

    # 1. counterfactual invariance on a seeded sample of held-out texts
    n_cf = min(len(texts), int(cfg["counterfactual_sample"]))
    idx = np.sort(np.random.default_rng(0).choice(len(texts), size=n_cf, replace=False)) if n_cf else np.array([], int)
    cf = counterfactual_table([texts[i] for i in idx], score_texts, terms, thr) if n_cf else []
    for r in cf:
        k = term_key(r["term"])
        metrics[f"{PREFIX}/{k}/counterfactual_flip_rate"] = r["flip_rate"]
        metrics[f"{PREFIX}/{k}/counterfactual_score_shift"] = r["mean_score_shift"]
        rows[r["term"]].update(
            cf_flip_rate=r["flip_rate"], cf_score_shift=r["mean_score_shift"], cf_abs_shift=r["mean_abs_score_shift"]
        )
    if cf:
        flips = np.array([r["flip_rate"] for r in cf])
        shifts = np.array([r["mean_score_shift"] for r in cf])
        metrics[f"{PREFIX}/max_flip_rate"] = float(flips.max())
        metrics[f"{PREFIX}/mean_flip_rate"] = float(flips.mean())
        metrics[f"{PREFIX}/score_shift_range"] = float(shifts.max() - shifts.min())
        worst = sorted(cf, key=lambda r: (-r["flip_rate"], -abs(r["mean_score_shift"])))[:N_WORST]
        details["worst_terms"] = [
            f"{r['term']} (flip {r['flip_rate']:.3f}, shift {r['mean_score_shift']:+.4f})" for r in worst
        ]
        details["counterfactual_n_texts"] = n_cf
        details["counterfactual_n_swapped"] = int(cf[0]["n_swapped"])
        notes.append(
            f"counterfactuals: {n_cf} held-out texts x {len(terms)} terms; {cf[0]['n_swapped']} texts "
            f"contained an identity term (swapped), the others got '{INSERT_TEMPLATE}' inserted; "
            "shift = score(counterfactual) - score(original); worst terms: " + "; ".join(details["worst_terms"])
        )
        charts.append(
            {
                "title": "Counterfactual flip rate per identity term",
                "xlabel": "flip rate",
                "labels": [r["term"] for r in cf],
                "values": [r["flip_rate"] for r in cf],
            }
        )
        charts.append(
            {
                "title": "Mean score shift when the term is swapped/inserted",
                "xlabel": "score shift",
                "labels": [r["term"] for r in cf],
                "values": [r["mean_score_shift"] for r in cf],
            }
        )

    # 2. Dixon template test
    t_texts, t_labels = extra.get("template_texts"), extra.get("template_labels")
    template = None
    if t_texts is not None and t_labels is not None and len(t_texts):
        t_labels = np.asarray(t_labels)
        if len(t_texts) > int(cfg["template_sample"]):
            keep = np.sort(
                np.random.default_rng(0).choice(len(t_texts), size=int(cfg["template_sample"]), replace=False)
            )
            t_texts, t_labels = [t_texts[i] for i in keep], t_labels[keep]
        t_texts = [str(x) for x in t_texts]
        t_pred = (np.asarray(score_texts(t_texts), dtype=float) >= thr).astype(int)
        template = error_rate_equality(t_labels, t_pred, term_membership(t_texts, terms))
        metrics[f"{PREFIX}/template_fpr"] = template["overall"]["fpr"]
        metrics[f"{PREFIX}/template_fnr"] = template["overall"]["fnr"]
        metrics[f"{PREFIX}/fped"] = template["fped"]
        metrics[f"{PREFIX}/fned"] = template["fned"]
        metrics[f"{PREFIX}/template_fpr_range"] = template["fpr_range"]
        for t, r in template["per_term"].items():
            metrics[f"{PREFIX}/{term_key(t)}/template_fpr"] = r["fpr"]
            metrics[f"{PREFIX}/{term_key(t)}/template_fnr"] = r["fnr"]
            rows[t].update(template_n=r["n"], template_fpr=r["fpr"], template_fnr=r["fnr"])
        details["template_n_sentences"] = len(t_texts)
        notes.append(
            f"template test (Dixon et al. 2018) on {len(t_texts)} held-out template sentences: "
            "FPED = sum over terms of |FPR - FPR_t|, FNED likewise"
            + (f"; {extra['template_label_note']}" if extra.get("template_label_note") else "")
        )
        charts.append(
            {
                "title": "Template false-positive rate per identity term",
                "xlabel": "FPR",
                "labels": terms,
                "values": [template["per_term"][t]["fpr"] for t in terms],
            }
        )
    else:
        notes.append("no template sentences given: template test not measured")

    # 3. Jigsaw bias AUCs on the labelled test texts
    final = math.nan
    if len(texts) == len(inputs.y_true):
        overall_auc = _auc(inputs.y_true, inputs.y_score)
        metrics[f"{PREFIX}/overall_auc"] = overall_auc
        member = term_membership(texts, terms)
        measured, small = [], []
        for t in terms:
            n = int(member[t].sum())
            rows[t]["test_n"] = n
            aucs = bias_aucs(inputs.y_true, inputs.y_score, member[t]) if n >= min_size else {}
            if not aucs or any(math.isnan(v) for v in aucs.values()):
                small.append(t)
                continue
            measured.append(t)
            rows[t].update(aucs)
            for name, v in aucs.items():
                metrics[f"{PREFIX}/{term_key(t)}/{name}"] = v
        means = {
            name: generalized_mean([rows[t][name] for t in measured], p)
            for name in ("subgroup_auc", "bpsn_auc", "bnsp_auc")
        }
        for name, v in means.items():
            metrics[f"{PREFIX}/{name}_power_mean"] = v
        if measured and math.isfinite(overall_auc):
            final = final_bias_score(overall_auc, means["subgroup_auc"], means["bpsn_auc"], means["bnsp_auc"])
            metrics[f"{PREFIX}/final_bias_score"] = final
        metrics[f"{PREFIX}/n_terms_measured"] = float(len(measured))
        details["auc_terms_measured"] = len(measured)
        notes.append(
            f"bias AUCs (Borkan et al. 2019) on {len(texts)} test texts: {len(measured)} of {len(terms)} "
            f"terms have >= {min_size} texts and both classes where needed; generalized mean p = {p:g}; "
            "final = 0.25 overall AUC + 0.25 each power mean"
            + (f"; too small or one class only: {', '.join(small)}" if small else "")
        )
        if measured:
            charts.append(
                {
                    "title": "BPSN AUC per identity term (test)",
                    "xlabel": "BPSN AUC",
                    "labels": measured,
                    "values": [rows[t]["bpsn_auc"] for t in measured],
                }
            )
    else:
        notes.append("held-out texts and labels differ in length: bias AUCs not measured")

    # 4. paired counterfactual texts (e.g. fuzzed twins)
    paired = extra.get("paired_texts")
    if paired is not None and len(paired) == len(texts) and len(texts) == len(inputs.y_true):
        twin_scores = np.asarray(score_texts([str(x) for x in paired]), dtype=float)
        name = extra.get("paired_name", "paired")
        metrics[f"{PREFIX}/{name}_auc"] = _auc(inputs.y_true, twin_scores)
        metrics[f"{PREFIX}/{name}_flip_rate"] = float(((twin_scores >= thr) != (inputs.y_score >= thr)).mean())
        notes.append(
            f"'{name}': each test text's twin with identity terms swapped; compare "
            f"{PREFIX}/{name}_auc with the overall AUC (a large drop shows identity-term bias)"
        )

    gates = []
    if "max_flip_rate" in used:
        gates.append(
            compare_gate(f"{PREFIX}/max_flip_rate", metrics.get(f"{PREFIX}/max_flip_rate"), used["max_flip_rate"], "<=")
        )
    if "max_template_fpr_range" in used:
        gates.append(
            compare_gate(
                f"{PREFIX}/template_fpr_range",
                metrics.get(f"{PREFIX}/template_fpr_range"),
                used["max_template_fpr_range"],
                "<=",
            )
        )
    if "min_final_bias_score" in used:
        gates.append(compare_gate(f"{PREFIX}/final_bias_score", final, used["min_final_bias_score"], ">="))
    details["bar_charts"] = charts
    details["conventions"] = {
        "subgroup membership": "whole-word, case-insensitive match of the term (texts are not sensitive columns)",
        "flip": f"predicted label (score >= {thr}) differs between original and counterfactual",
        "FPED/FNED": "Dixon et al. 2018: sum over terms of |overall rate - term rate|",
        "bias AUCs": "Borkan et al. 2019 on raw scores; generalized mean p = -5; final = 0.25 x 4 terms",
    }
    if not gates:
        notes.append("no identity thresholds configured: nothing gated")
    return AuditResult(
        name="identity",
        status=overall_status(gates),
        metrics=metrics,
        by_group=list(rows.values()),
        thresholds=used,
        gates=gates,
        notes=notes,
        details=details,
    )
