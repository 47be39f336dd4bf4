"""Proxy detection: do the model's features, or its score, carry a sensitive attribute?

Leaving a sensitive column out of the features (``data.exclude_sensitive_from_features``) does
not take it out of the model when other features encode it: on UCI Adult, ``relationship``
("Husband"/"Wife") tells sex almost exactly. For each sensitive attribute:

- **proxy AUC**: how well the model's features predict the attribute, as the cross-validated
  (stratified k-fold) ROC AUC of a logistic regression (one-hot categories, standardised
  numbers, median-imputed: ``encode``) -- for an attribute of more than two groups, the mean of
  the groups' one-vs-rest AUCs (macro), each group from its own one-vs-rest regression;
- **strongest proxies**: each feature's mutual information with the attribute (in nats, from
  the joint counts; numeric features in ``n_bins`` quantile bins), highest first, with each
  feature's own cross-validated AUC for the top few;
- **score AUC**: how well the model's score alone separates the groups (the AUC of the score
  for membership of each group, folded to >= 0.5, the largest over groups): a model that
  carries the attribute in its output can discriminate by it whatever its inputs.

Cost is bounded: at most ``sample_size`` rows (a seeded sample), stated in the result. The
only gate, ``max_proxy_auc``, is off unless configured: a strong proxy is a prompt to look.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .inputs import AuditInputs
from .results import AuditResult, Status, overall_status
from .stats import compare_gate
from .thresholds import Threshold, at_most, defaults, setting

PROXY_THRESHOLDS: dict[str, Threshold] = {
    "max_proxy_auc": at_most("proxy_auc"),
    "sample_size": setting(5000, "count"),  # rows used (seeded sample)
    "folds": setting(5, "count"),
    "n_bins": setting(10, "count"),  # quantile bins of a numeric feature for mutual information
    "top": setting(5, "count"),  # strongest proxies listed per attribute
    "seed": setting(0, "whole"),
}
PROXY_DEFAULTS = defaults(PROXY_THRESHOLDS)
FRAME_KEY = "proxy_frame"  # AuditInputs.extra: the model's feature columns of the test rows
EXCLUDED_KEY = "sensitive_excluded"  # AuditInputs.extra: the sensitive columns are not model features
STRONG_AUC = 0.8  # a proxy AUC from which the report says the attribute is carried by the features


def _discrete(s: pd.Series, n_bins: int) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(s) and s.nunique() > n_bins:
        return pd.qcut(s, n_bins, labels=False, duplicates="drop").fillna(-1).to_numpy()
    return s.astype(str).fillna("(missing)").to_numpy()


MIN_CATEGORY_ROWS = 5  # rarer categories share one "(rare)" column


def encode(features: pd.DataFrame) -> tuple[np.ndarray, dict[str, list[int]]]:
    """The features as one float matrix for a logistic regression: numbers median-imputed and
    standardised, categories one-hot (missing is a category; categories of fewer than
    ``MIN_CATEGORY_ROWS`` rows pooled), and each feature's columns in it. Fitted on the whole
    sample: scaling and the category list use no target, so nothing leaks across the folds."""
    blocks, columns, start = [], {}, 0
    for c in features.columns:
        s = features[c]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            v = s.to_numpy(dtype=float)
            v = np.where(np.isnan(v), np.nanmedian(v) if np.isfinite(v).any() else 0.0, v)
            sd = v.std()
            block = ((v - v.mean()) / (sd if sd > 0 else 1.0))[:, None]
        else:
            cats = s.astype(object).where(s.notna(), "(missing)").astype(str)
            counts = cats.value_counts()
            cats = cats.where(cats.map(counts) >= MIN_CATEGORY_ROWS, "(rare)")
            block = pd.get_dummies(cats, dtype=float).to_numpy()
        blocks.append(block)
        columns[str(c)] = list(range(start, start + block.shape[1]))
        start += block.shape[1]
    return np.hstack(blocks) if blocks else np.zeros((len(features), 0)), columns


def _auc(X: np.ndarray, target: np.ndarray, folds: int, seed: int) -> float:
    """Cross-validated (stratified k-fold) ROC AUC of a logistic regression from ``X`` to
    ``target``; for more than two groups, the mean of each group's one-vs-rest AUC, each from
    its own one-vs-rest regression (liblinear: these are small problems, where it is much
    faster than lbfgs, whose multinomial fit took minutes on Adult's five race groups)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    labels = np.unique(target)
    splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(X, target))
    aucs = []
    for g in labels[1:] if labels.size == 2 else labels:
        member = target == g
        proba = np.empty(target.size)
        for train, test in splits:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = LogisticRegression(solver="liblinear", max_iter=1000).fit(X[train], member[train])
            proba[test] = model.predict_proba(X[test])[:, 1]
        aucs.append(float(roc_auc_score(member, proba)))
    return float(np.mean(aucs))


def score_auc(score: np.ndarray, groups: np.ndarray) -> float:
    """The largest, over groups, AUC of the score for membership of the group, folded to >= 0.5."""
    from sklearn.metrics import roc_auc_score

    best = 0.5
    for g in np.unique(groups):
        member = groups == g
        if 0 < member.sum() < member.size:
            auc = float(roc_auc_score(member, score))
            best = max(best, auc, 1.0 - auc)
    return best


def proxy_strength(
    features: pd.DataFrame,
    sensitive: pd.DataFrame,
    score: np.ndarray | None = None,
    *,
    sample_size: int = 5000,
    folds: int = 5,
    n_bins: int = 10,
    top: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Per sensitive attribute: the proxy AUC, the features by mutual information (the top
    ``top`` with their own AUC) and the score AUC; see the module doc."""
    from sklearn.metrics import mutual_info_score

    if features.shape[1] == 0:
        raise ValueError("no model features to test as proxies")
    if sample_size < 1:
        raise ValueError(f"sample_size must be at least 1, got {sample_size}")
    if len(features) != len(sensitive):
        raise ValueError(f"features have {len(features)} rows but the sensitive columns {len(sensitive)}")
    features, sensitive = features.reset_index(drop=True), sensitive.reset_index(drop=True)
    rows = np.arange(len(features))
    if rows.size > sample_size:
        rows = np.sort(np.random.default_rng(seed).choice(rows, sample_size, replace=False))
    out: dict[str, Any] = {"rows": int(rows.size), "of": int(len(features)), "attributes": {}}
    for attr in sensitive.columns:
        target = sensitive[attr].iloc[rows]
        known = target.notna().to_numpy()
        y = target[known].astype(str).to_numpy()
        labels, counts = np.unique(y, return_counts=True)
        X = features.iloc[rows][known].reset_index(drop=True)
        if labels.size < 2 or counts.min() < folds:
            out["attributes"][attr] = {"skipped": f"fewer than {folds} rows in a group of {attr!r}"}
            continue
        mi = {c: float(mutual_info_score(y, _discrete(X[c], n_bins))) for c in X.columns}
        ranked = sorted(mi, key=lambda c: -mi[c])
        matrix, columns = encode(X)
        out["attributes"][attr] = {
            "proxy_auc": _auc(matrix, y, folds, seed),
            "groups": int(labels.size),
            "proxies": [
                {"feature": c, "mutual_information": mi[c], "auc": _auc(matrix[:, columns[str(c)]], y, folds, seed)}
                for c in ranked[:top]
            ],
            "score_auc": None if score is None else score_auc(np.asarray(score)[rows][known], y),
        }
    return out


def proxy_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """Proxy detection over ``inputs.extra["proxy_frame"]`` and ``inputs.sensitive`` (module doc)."""
    cfg = {**PROXY_DEFAULTS, **{k: v for k, v in (thresholds or {}).items() if v is not None}}
    frame = inputs.extra.get(FRAME_KEY)
    if frame is None or frame.shape[1] == 0:
        return AuditResult(name="proxies", status=Status.NOT_MEASURED, notes=["no model features to test as proxies"])
    real = [c for c in inputs.sensitive.columns if c not in set(inputs.synthetic_groups)]
    if not real:
        return AuditResult(name="proxies", status=Status.SKIPPED, notes=["no sensitive attribute declared"])
    score = inputs.y_score if inputs.y_score.ndim == 1 else None
    found = proxy_strength(
        frame,
        inputs.sensitive[real],
        score,
        sample_size=int(cfg["sample_size"]),
        folds=int(cfg["folds"]),
        n_bins=int(cfg["n_bins"]),
        top=int(cfg["top"]),
        seed=int(cfg["seed"]),
    )
    metrics: dict[str, float | None] = {}
    excluded = inputs.extra.get(EXCLUDED_KEY)  # None: not known (audit-only: a table's columns)
    statements = []
    notes = [
        f"{found['rows']} of {found['of']} test rows (seeded sample); {cfg['folds']}-fold cross-validated "
        "logistic regression from the model's features to each attribute"
    ]
    for attr, r in found["attributes"].items():
        if "skipped" in r:
            notes.append(f"{attr}: {r['skipped']}")
            continue
        metrics[f"proxies/{attr}/proxy_auc"] = r["proxy_auc"]
        metrics[f"proxies/{attr}/score_auc"] = r["score_auc"]
        top = r["proxies"][0]
        notes.append(
            f"{attr}: the features predict it with AUC {r['proxy_auc']:.3f}; strongest proxy "
            f"{top['feature']!r} (AUC {top['auc']:.3f} alone)"
        )
        if r["proxy_auc"] >= STRONG_AUC:
            strength = f"predict it with AUC {r['proxy_auc']:.3f} (strongest proxy: {top['feature']}, AUC {top['auc']:.3f} alone)"
            if excluded is None:
                statements.append(f"{attr}: the table's other columns {strength}")
            elif excluded:
                statements.append(
                    f"{attr} is left out of the model's features, but the other features {strength}: "
                    "leaving it out does not keep it out of the model"
                )
            else:
                statements.append(f"{attr} is one of the model's features, and the other features {strength}")
    aucs = [v for k, v in metrics.items() if k.endswith("/proxy_auc") and v is not None]
    metrics["proxies/proxy_auc"] = max(aucs) if aucs else None
    gates = []
    if cfg.get("max_proxy_auc") is not None:
        gates = [
            compare_gate(k, v, float(cfg["max_proxy_auc"]), "<=")
            for k, v in metrics.items()
            if k.endswith("/proxy_auc") and k != "proxies/proxy_auc"
        ]
    return AuditResult(
        name="proxies",
        status=overall_status(gates),
        metrics=metrics,
        thresholds={k: cfg[k] for k in ("sample_size", "folds", "n_bins")},
        gates=gates,
        notes=notes,
        details={
            **found,
            "sensitive_excluded": excluded,
            "statements": statements,
            "strong_auc": STRONG_AUC,
        },
    )
