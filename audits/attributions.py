"""Attributions by sensitive group: which features drive the model's output, and do they drive it
differently for different groups?

For each feature ``j`` and row ``x`` of a seeded sample of the test rows, the **marginal
(interventional) single-feature attribution** is

    attribution_j(x) = f(x) - mean over r = 1..R of f(x with x_j replaced by x'_j),

where ``x'_j`` is column ``j`` of a random row of the sample: the effect of knowing ``x_j``
rather than drawing it from the data (an "ablation"). Each repeat is one whole-column
permutation of the sample (``rng.permutation``), so each repeat of each feature is one batched
``predict`` call on the sample, and each row's draw is uniform over the sample (itself
included). For an additive model ``f(x) = sum_j g_j(x_j)`` its expectation is
``g_j(x_j) - mean over the sample of g_j``: exactly the interventional SHAP value with the
sample as background data (``tests/audits/test_attributions.py`` checks it on a linear model).
For a model with interactions it is the feature's total effect at ``x`` given the others, not
a Shapley share of it; what it measures is stated in ``details["method"]``.

``f`` is the score P(y = 1) of a binary model; for a multiclass model, the probability of the
class the model predicts on the unperturbed row; for a rating model, the predicted rating.

The report gives, per sensitive attribute and group, each feature's mean absolute attribution
over the group's sampled rows (groups of fewer than ``MIN_GROUP_ROWS`` sampled rows are left
out and named under ``small_groups``, for disclosure; a missing value is its own group,
``"(missing)"``), and the ``top`` features whose mean absolute attribution differs most between
two groups (the gap, max minus min over the groups). No gate: a difference is a prompt to look.

Cost is bounded: at most ``sample_size`` rows (default 2000, seeded) and ``1 + repeats x
features`` predict calls of at most that many rows, stated in the result.

Why not shap at run time: shap pulls numba and llvmlite, heavy compiled packages, into a pipeline
that must install fast, and its model-agnostic explainers cost far more predictions than this
one. The attribution here needs only the model's ``predict``, is the same measure for every model
(so models compare), and works with categorical (string) columns. shap is a test dependency:
``tests/audits/test_attributions_shap.py`` checks these values against shap's exact
interventional Shapley values on an additive model, row by row.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd
from impactflow.task_kind import TaskKind

from .inputs import AuditInputs
from .results import AuditResult, Gate, Status, overall_status
from .thresholds import Threshold, defaults, setting

ATTRIBUTION_THRESHOLDS: dict[str, Threshold] = {
    "sample_size": setting(2000, "count"),  # rows used (seeded sample)
    "repeats": setting(5, "count"),  # permutations per feature (R)
    "top": setting(5, "count"),  # features with the largest between-group gaps listed per attribute
    "seed": setting(0, "whole"),
}
ATTRIBUTION_DEFAULTS = defaults(ATTRIBUTION_THRESHOLDS)
#: ``AuditInputs.extra[FRAME_KEY]``: ``{"frame": DataFrame of the model's input rows (aligned
#: with ``inputs.sensitive``), "predict": callable(DataFrame) -> array, "columns": [features]}``,
#: or ``{"reason": "..."}`` when per-column attributions do not apply to the model.
FRAME_KEY = "attribution"
MIN_GROUP_ROWS = 30  # sampled rows a group needs for its attributions to be shown
MISSING = "(missing)"  # the group of a missing sensitive value

_OUTPUT = {
    TaskKind.BINARY: "the score P(y = 1)",
    TaskKind.MULTICLASS: "the probability of the class the model predicts on the unperturbed row",
    TaskKind.RATING: "the predicted rating",
}


def _output(raw: Any, task: TaskKind, rows: int, cls: np.ndarray | None) -> np.ndarray:
    """``f`` for each row from what ``predict`` returned (module doc)."""
    out = np.asarray(raw, dtype=float)
    if task is TaskKind.MULTICLASS:
        if out.ndim != 2 or out.shape[0] != rows:
            raise ValueError(f"a multiclass predict must return ({rows}, K) probabilities, got shape {out.shape}")
        if cls is None:
            return out
        return out[np.arange(rows), cls]
    if out.ndim == 2 and out.shape[1] == 2 and task is TaskKind.BINARY:
        out = out[:, 1]  # (N, 2) class probabilities: P(y = 1)
    out = out.reshape(-1) if out.ndim == 2 and out.shape[1] == 1 else out
    if out.shape != (rows,):
        raise ValueError(f"predict must return one value per row ({rows}), got shape {out.shape}")
    return out


def marginal_attributions(
    frame: pd.DataFrame,
    predict: Callable[[pd.DataFrame], Any],
    columns: list | None = None,
    *,
    task: TaskKind | str = TaskKind.BINARY,
    sample_size: int = 2000,
    repeats: int = 5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, A)``: the positions of the sampled rows in ``frame`` (sorted) and ``A[i, j]``, the
    marginal attribution of ``columns[j]`` for sampled row ``i`` (module doc)."""
    task = TaskKind.parse(task)
    columns = list(frame.columns) if columns is None else list(columns)
    if sample_size < 1:
        raise ValueError(f"sample_size must be at least 1, got {sample_size}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        raise ValueError(f"columns to attribute are not in the frame: {unknown}")
    rng = np.random.default_rng(seed)
    rows = np.arange(len(frame))
    if rows.size > sample_size:
        rows = np.sort(rng.choice(rows, sample_size, replace=False))
    X = frame.iloc[rows].reset_index(drop=True)
    n = len(X)
    attr = np.zeros((n, len(columns)))
    if n == 0 or not columns:
        return rows, attr
    base = _output(predict(X), task, n, None)
    cls = base.argmax(axis=1) if task is TaskKind.MULTICLASS else None
    f0 = base[np.arange(n), cls] if cls is not None else base
    for j, col in enumerate(columns):
        total = np.zeros(n)
        for _ in range(repeats):
            perturbed = X.copy()
            perturbed[col] = X[col].take(rng.permutation(n)).set_axis(X.index)  # keeps the dtype
            total += f0 - _output(predict(perturbed), task, n, cls)  # an unchanged output adds exactly 0
        attr[:, j] = total / repeats
    return rows, attr


def _groups(values: pd.Series) -> np.ndarray:
    """Group labels as strings, a missing value as its own group."""
    return np.where(values.isna().to_numpy(), MISSING, values.astype(str).to_numpy()).astype(object)


def attributions_by_group(
    attr: np.ndarray,
    columns: list,
    sensitive: pd.DataFrame,
    *,
    top: int = 5,
    min_group_rows: int = MIN_GROUP_ROWS,
) -> dict[str, Any]:
    """Mean |attribution| overall, per attribute and group (groups of at least ``min_group_rows``
    rows), the groups left out, and per attribute the ``top`` features by between-group gap.
    ``sensitive`` holds the same rows as ``attr``, in the same order."""
    if len(sensitive) != attr.shape[0]:
        raise ValueError(f"sensitive has {len(sensitive)} rows but there are {attr.shape[0]} attributions")
    names = [str(c) for c in columns]
    magnitude = np.abs(attr)
    overall = {c: float(v) for c, v in zip(names, magnitude.mean(axis=0))} if attr.shape[0] else {}
    by_group: dict[str, dict[str, dict[str, float]]] = {}
    small: dict[str, list[str]] = {}
    differences: dict[str, list[dict[str, Any]]] = {}
    for attribute in sensitive.columns:
        labels = _groups(sensitive[attribute].reset_index(drop=True))
        groups, counts = np.unique(labels, return_counts=True)
        kept = {g: magnitude[labels == g].mean(axis=0) for g, k in zip(groups, counts) if k >= min_group_rows}
        if len(kept) < len(groups):
            small[str(attribute)] = [str(g) for g, k in zip(groups, counts) if k < min_group_rows]
        by_group[str(attribute)] = {str(g): {c: float(v) for c, v in zip(names, m)} for g, m in kept.items()}
        rows = []
        if len(kept) >= 2:
            table = np.stack(list(kept.values()))  # groups x features
            keys = [str(g) for g in kept]
            hi, lo = table.argmax(axis=0), table.argmin(axis=0)
            for j, c in enumerate(names):
                high, low = float(table[hi[j], j]), float(table[lo[j], j])
                rows.append(
                    {
                        "feature": c,
                        "max_group": keys[hi[j]],
                        "max": high,
                        "min_group": keys[lo[j]],
                        "min": low,
                        "gap": high - low,
                    }
                )
            rows.sort(key=lambda r: -r["gap"])  # stable: ties keep the column order
        differences[str(attribute)] = rows[:top]
    return {"overall": overall, "by_group": by_group, "small_groups": small, "differences": differences}


def _not_measured(why: str) -> AuditResult:
    return AuditResult(name="attributions", status=Status.NOT_MEASURED, notes=[why])


def attribution_audit(inputs: AuditInputs, thresholds: dict) -> AuditResult:
    """Attributions by sensitive group over ``inputs.extra["attribution"]`` (module doc)."""
    cfg = {**ATTRIBUTION_DEFAULTS, **{k: v for k, v in (thresholds or {}).items() if v is not None}}
    for key in ("sample_size", "repeats", "top"):
        if not int(cfg[key]) >= 1:
            raise ValueError(f"attributions: {key} must be at least 1, got {cfg[key]!r}")
    given = inputs.extra.get(FRAME_KEY)
    if not given:
        return _not_measured("no model input rows and predict function given: attributions not computed")
    if given.get("frame") is None or given.get("predict") is None:
        return _not_measured(str(given.get("reason") or "no model input rows and predict function given"))
    frame: pd.DataFrame = given["frame"]
    columns = list(frame.columns) if given.get("columns") is None else list(given["columns"])
    if not columns:
        return _not_measured("no feature columns to attribute")
    if inputs.sensitive.shape[1] == 0:
        return AuditResult(name="attributions", status=Status.SKIPPED, notes=["no sensitive attribute declared"])
    if len(frame) != len(inputs.sensitive):
        raise ValueError(
            f"the attribution frame has {len(frame)} rows but the sensitive columns {len(inputs.sensitive)}"
        )
    sample_size, repeats, top, seed = (int(cfg[k]) for k in ("sample_size", "repeats", "top", "seed"))
    rows, attr = marginal_attributions(
        frame.reset_index(drop=True),
        given["predict"],
        columns,
        task=inputs.task,
        sample_size=sample_size,
        repeats=repeats,
        seed=seed,
    )
    found = attributions_by_group(attr, columns, inputs.sensitive.iloc[rows], top=top)
    used = int(rows.size)
    method = (
        f"Marginal (interventional) attribution of each feature: the model's output ({_OUTPUT[inputs.task]}) on a "
        f"row minus its mean over {repeats} draws of that feature from random rows of the {used}-row sample, "
        "the others held fixed (for an additive model, exactly the interventional SHAP value)."
    )
    metrics: dict[str, float | None] = {"attributions/sample_size": float(used)}
    notes = [
        f"{used} of {len(frame)} test rows (seeded sample); {repeats} whole-column permutations per feature, "
        f"{1 + repeats * len(columns)} predict calls"
    ]
    for attribute, diffs in found["differences"].items():
        metrics[f"attributions/max_gap/{attribute}"] = diffs[0]["gap"] if diffs else None
        if diffs:
            d = diffs[0]
            notes.append(
                f"{attribute}: the largest difference is {d['feature']!r}, mean |attribution| {d['max']:.3g} for "
                f"{d['max_group']} vs {d['min']:.3g} for {d['min_group']}"
            )
        else:
            notes.append(f"{attribute}: fewer than two groups of >= {MIN_GROUP_ROWS} sampled rows; no difference")
    for attribute, groups in found["small_groups"].items():
        notes.append(f"{attribute}: {len(groups)} group(s) under {MIN_GROUP_ROWS} sampled rows not shown")
    synthetic = [str(c) for c in inputs.sensitive.columns if c in set(inputs.synthetic_groups)]
    if synthetic:
        notes.append(f"groups made up by the project (synthetic): {', '.join(synthetic)}")
    gates: list[Gate] = []
    return AuditResult(
        name="attributions",
        status=overall_status(gates),
        metrics=metrics,
        thresholds={k: cfg[k] for k in ("sample_size", "repeats", "top", "seed")},
        gates=gates,
        notes=notes,
        details={"sample_size": used, "repeats": repeats, "method": method, **found},
    )
