"""Data drift: this run's training data against a *reference*, a summary stored with an earlier run.

Raw rows are never stored: a run keeps only ``summarize``'s JSON-able summary of its data (counts
and sums), and the next run compares its own data with it. The summary holds, for each audited
column, counts per bin (numeric) or per category (categorical) plus a missing count, and for each
sensitive attribute, per group, the number of rows and the label's positives (binary label) or
sum and sum of squares (rating label). What it never holds:

- a row's value: numeric bins are cut at equal-frequency (quantile) points rounded to **two
  significant digits** (an exact quantile is some row's own value); a column of at most ``bins``
  distinct values gets a bin per value, its cut points rounded the same way. Ties stay whole (a
  mass point such as capital-gain's zeros is one bin; the other bins share the rest of the rows)
  and a bin holds at least ``min_group_size`` rows of the reference;
- a small category or group: categories of fewer than ``min_group_size`` rows are pooled as
  ``(other)``; groups of a sensitive attribute below it are pooled as ``(suppressed)``, their
  names and label statistics not stored. While the rows whose label statistics are not stored
  (suppressed or attribute missing) are fewer than ``min_group_size``, the smallest shown
  groups' label statistics are withheld too (complementary suppression: a small group's
  positives cannot be had by subtracting the shown groups' from the label's total).

This run is summarized *on the reference's bins and categories* (``summarize(...,
reference=ref)``), so the two align; a category the reference has not seen counts in ``(other)``.
``drift_audit`` then tests, per column and per group:

- **PSI** (population stability index) over the bins or categories, missing included:
  sum((q - p) ln(q / p)) for the reference's proportions p and this run's q, an empty cell's
  proportion taken as 1e-4 (as Evidently does);
- **KS** for a numeric column: D = max |F_ref - F_cur| over the bin edges (missing counted as a
  value above every other), p = ``scipy.stats.kstwo.sf(D, round(n m / (n + m)))`` as scipy's
  ``ks_2samp(method="asymp")``. D at the edges is at most the D of the raw values, so the test is
  conservative; when every distinct value is its own bin it is exactly ks_2samp's;
- **chi-square** for a categorical column: ``scipy.stats.chi2_contingency`` on the 2 x K table
  (reference / this run x categories, ``(other)`` and missing), all-zero columns dropped, no
  continuity correction;
- per sensitive group stored in both summaries: its **share** of the rows (two-proportion z-test,
  the change with Newcombe's hybrid-score 95 % interval) and its **base rate** (binary: positives
  over labelled rows, two-proportion z-test, Wilson 95 % interval of this run's rate; rating: the
  mean label, Welch's t-test from n, sum and sum of squares, t 95 % interval of this run's mean).

All the audit's p-values (columns and groups) go through Benjamini-Hochberg at ``fdr``
(``scipy.stats.false_discovery_control``), each hypothesis once: the two shares of a two-group
attribute are one test (and the chi-square of that attribute's column, when it is also a column
of just those two values, the same one again: chi-square = z squared). A column or group whose
q is at most ``fdr`` has *drifted*. On same-distribution samples (5,000 rows a side, 6 columns,
2 attributes, 15 tests) 46 of 1,000 seeds flagged anything: the 5 % the FDR allows, no more. With many rows, any real change is significant: PSI and the group shifts say how large
it is, and the gates (off unless configured) read those and the count of drifted columns.

Why scipy.stats and not evidently, frouros or alibi-detect: the tests are a few lines over scipy,
which the project already has, while those libraries would add heavy dependencies for the same
tests; and evidently compares two raw frames, so it would need the reference's rows, which a run
never keeps (only this summary). Pure: numpy, pandas, scipy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .results import AuditResult, Gate, Status, overall_status
from .stats import compare_gate, wilson_interval
from .thresholds import Threshold, at_most, defaults, setting

DRIFT_THRESHOLDS: dict[str, Threshold] = {
    "max_psi": at_most("max_psi", kind="number"),  # largest column PSI
    "max_drifted_columns": at_most("drifted_columns", kind="whole"),  # columns significant after BH
    "max_group_shift": at_most("max_group_shift"),  # largest |change| of a group's share or base rate
    "fdr": setting(0.05, "open_fraction"),  # Benjamini-Hochberg level over all the audit's tests
    "bins": setting(20, "count"),  # quantile bins of a numeric column
    "min_group_size": setting(20, "count"),  # smaller categories pooled, smaller groups suppressed
}
DRIFT_DEFAULTS = defaults(DRIFT_THRESHOLDS)
SUMMARY_VERSION = 1

KINDS = ("numeric", "categorical")
LABEL_KINDS = ("binary", "rating")
OTHER = "(other)"  # categories below min_group_size, and (this run) categories the reference lacks
SUPPRESSED = "(suppressed)"  # groups below min_group_size: pooled, names and label statistics not stored
# Evidently's get_binned_data (evidently/calculations/stattests/utils.py, feel_zeroes) replaces an
# empty bin's proportion by 0.0001 before the PSI's logarithm; the same floor here.
PSI_FLOOR = 1e-4
# threshold key -> the metric its gate reads (the gate carries the metric's name)
_GATE_METRIC = {
    "max_psi": "drift/max_psi",
    "max_drifted_columns": "drift/drifted_columns",
    "max_group_shift": "drift/max_group_shift",
}


# --------------------------------------------------------------------------- summaries


def round_sig(value: float, digits: int = 2) -> float:
    """``value`` rounded to ``digits`` significant digits (77516 -> 78000.0, 0.0123 -> 0.012)."""
    return float(f"{value:.{digits - 1}e}") + 0.0  # + 0.0: no negative zero


def column_kinds(frame: pd.DataFrame, columns: list[str], max_categories: int = 50) -> dict[str, str]:
    """'numeric' (non-bool numeric dtype) or 'categorical' (bool, object, category, string with at
    most max_categories distinct values); columns that are neither (free text with many values,
    arrays, dates) are left out."""
    out: dict[str, str] = {}
    for c in columns:
        dtype = frame[c].dtype
        if pd.api.types.is_bool_dtype(dtype):
            out[c] = "categorical"
        elif pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
            out[c] = "numeric"
        elif isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
            try:
                distinct = frame[c].nunique(dropna=True)
            except TypeError:  # unhashable values (lists, arrays)
                continue
            if distinct <= max_categories:
                out[c] = "categorical"
    return out


def _key(value: Any) -> str:
    """A category or group value as the summary's key (JSON keys are strings)."""
    return value if isinstance(value, str) else str(value)


def _jsonable_scalar(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if hasattr(value, "item"):  # numpy scalar
        return _jsonable_scalar(value.item())
    return str(value)


def _counts_by_key(s: pd.Series) -> dict[str, int]:
    """Non-missing rows per value (as ``_key``), from value_counts: no per-row Python."""
    vc = s.value_counts(dropna=True, sort=False)
    out: dict[str, int] = {}
    for value, k in zip(vc.index, vc.to_numpy()):
        if k:
            key = _key(value)
            out[key] = out.get(key, 0) + int(k)
    return out


def _cut_points(x: np.ndarray, bins: int, min_size: int) -> tuple[list[float], str]:
    """Bin edges of the non-missing values ``x``: each bin [edge_i, edge_i+1), the first from
    -inf, the last to +inf. Equal-frequency bins that keep ties whole (the next bin starts at the
    next distinct value once this one holds its share of the remaining rows, and at least
    ``min_size``), or one bin per distinct value for at most ``bins`` of them (a value of fewer
    than ``min_size`` rows joins the next). Every edge is then rounded to 2 significant digits,
    and a bin the rounding left with fewer than ``min_size`` rows merged into its smaller
    neighbour."""
    if x.size == 0:
        return [], "values"
    values, counts = np.unique(x, return_counts=True)
    discrete = values.size <= bins
    cum = np.cumsum(counts)
    n = int(cum[-1])
    cuts: list[float] = []
    start = 0
    while len(cuts) < bins - 1:
        target = min_size if discrete else max((n - start) / (bins - len(cuts)), min_size)
        j = int(np.searchsorted(cum, start + target, side="left"))
        if j >= values.size - 1 or n - int(cum[j]) < min_size:
            break  # what is left is one bin
        cuts.append(float(values[j + 1]))
        start = int(cum[j])
    edges = sorted({round_sig(c) for c in cuts if math.isfinite(c)})
    below = np.concatenate([[0], cum])  # below[searchsorted(values, e)]: the rows < e
    while edges:
        sizes = np.diff([0, *below[np.searchsorted(values, edges, side="left")], n])
        small = np.flatnonzero(sizes < min_size)
        if small.size == 0:
            break
        i = int(small[0])  # bin i spans [edges[i - 1], edges[i]): drop the edge to its smaller neighbour
        left = i > 0 and (i == len(edges) or sizes[i - 1] <= sizes[i + 1])
        edges.pop(i - 1 if left else i)
    return edges, "values" if discrete else "quantiles"


def _numeric(s: pd.Series, edges: list[float] | None, bins: int, min_size: int) -> dict[str, Any]:
    x = s.to_numpy(dtype=float, na_value=np.nan)
    missing = int(np.isnan(x).sum())
    binning = "reference"
    if edges is None:
        edges, binning = _cut_points(x[~np.isnan(x)] if missing else x, bins, min_size)
    # NaN sorts after every edge: it lands in the last bin, and is taken out of it
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=float), x, side="right"), minlength=len(edges) + 1)
    counts[-1] -= missing
    return {"kind": "numeric", "binning": binning, "edges": edges, "counts": counts.tolist(), "missing": missing}


def _categorical(s: pd.Series, categories: list[str] | None, min_size: int) -> dict[str, Any]:
    by_key = _counts_by_key(s)
    missing = int(len(s) - sum(by_key.values()))
    out: dict[str, Any] = {"kind": "categorical"}
    if categories is None:  # the reference: its categories of at least min_size rows, largest first
        categories = [k for k, v in sorted(by_key.items(), key=lambda kv: (-kv[1], kv[0])) if v >= min_size]
    else:  # this run, on the reference's categories; the reference's unseen ones count in (other)
        known = set(categories)
        out["new"] = {k: v for k, v in sorted(by_key.items()) if k not in known and v >= min_size}
    counts = [by_key.get(k, 0) for k in categories]
    out.update(categories=list(categories), counts=counts, other=int(sum(by_key.values()) - sum(counts)))
    out["missing"] = missing
    return out


def _label_arrays(frame: pd.DataFrame, label: str, label_kind: str, positive: Any) -> dict[str, np.ndarray]:
    y = frame[label]
    labelled = y.notna().to_numpy()
    if label_kind == "binary":
        return {"labelled": labelled, "positives": y.eq(positive).to_numpy(dtype=bool, na_value=False)}
    v = y.to_numpy(dtype=float, na_value=np.nan)
    labelled = ~np.isnan(v)
    v = np.where(labelled, v, 0.0)
    return {"labelled": labelled, "sum": v, "sumsq": v * v}


def _groups(s: pd.Series, label_arrays: Mapping[str, np.ndarray], min_size: int) -> dict[str, Any]:
    """One sensitive attribute's groups: n and the label's sums per group of at least
    ``min_size`` rows; the smaller ones pooled as (suppressed), n only. The label's sums over
    the suppressed and missing rows are not stored, but could be had by subtraction from the
    label's totals (the label as a summarized column) when those rows are few: while they are
    fewer than ``min_size``, the smallest shown groups' label sums are withheld too
    (complementary suppression: ``label_withheld``)."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    index: dict[str, int] = {}
    remap = np.array([0] + [1 + index.setdefault(_key(u), len(index)) for u in uniques], dtype=np.int64)
    g = remap[codes + 1]  # 0: missing; 1 + i: the i-th key
    width = len(index) + 1
    n = np.bincount(g, minlength=width)
    sums = {k: np.bincount(g, weights=w, minlength=width) for k, w in label_arrays.items()}
    keys = list(index)
    order = sorted(range(len(keys)), key=lambda i: (int(n[i + 1]), keys[i]))
    hidden = {i for i in order if n[i + 1] < min_size}
    pooled = int(sum(n[i + 1] for i in hidden))
    withheld: set[int] = set()
    unlabelled = pooled + int(n[0])  # rows whose label sums are not stored
    for i in order:
        if not (sums and pooled and unlabelled < min_size):
            break
        if i not in hidden:
            withheld.add(i)
            unlabelled += int(n[i + 1])
    groups: dict[str, dict[str, Any]] = {}
    for i in sorted(range(len(keys)), key=lambda i: (-int(n[i + 1]), keys[i])):
        if i in hidden:
            continue
        row: dict[str, Any] = {"n": int(n[i + 1])}
        if i in withheld:
            row["label_withheld"] = True
        else:
            for k, v in sums.items():
                row[k] = int(round(v[i + 1])) if k in ("labelled", "positives") else float(v[i + 1])
        groups[keys[i]] = row
    return {"groups": groups, SUPPRESSED: {"groups": len(hidden), "n": pooled}, "missing": int(n[0])}


def _check_version(summary: Mapping[str, Any], what: str) -> None:
    if summary.get("version") != SUMMARY_VERSION:
        raise ValueError(
            f"{what} is a drift summary of version {summary.get('version')!r}; this code reads {SUMMARY_VERSION}"
        )


def summarize(
    frame: pd.DataFrame,
    kinds: dict[str, str],
    sensitive: list[str],
    label: str | None,
    label_kind: str | None,
    positive: object = None,
    *,
    bins: int = 20,
    min_group_size: int = 20,
    reference: dict | None = None,
) -> dict:
    """JSON-able summary of ``frame`` (counts and sums only, never a row; module doc).

    ``kinds``: column -> 'numeric' | 'categorical' (``column_kinds``); ``sensitive``: the
    attributes whose groups are counted; ``label``/``label_kind`` ('binary' | 'rating' | None)
    and, for a binary label, ``positive`` (None: 1, which also matches True). With
    ``reference`` (an earlier summary) the numeric columns are binned on the reference's edges
    and the reference's categories counted, however few rows this run has of each, so the two
    align; a column whose kind differs from the reference's is summarized on its own."""
    if bins < 1 or min_group_size < 1:
        raise ValueError(f"bins and min_group_size must be at least 1, got {bins} and {min_group_size}")
    if label is None:
        label_kind, positive = None, None
    elif label_kind not in LABEL_KINDS:
        raise ValueError(f"label_kind must be one of {LABEL_KINDS} with a label, got {label_kind!r}")
    elif label_kind == "binary" and positive is None:
        positive = 1
    elif label_kind == "rating":
        positive = None
    bad = {c: k for c, k in kinds.items() if k not in KINDS}
    if bad:
        raise ValueError(f"unknown column kinds {bad}; expected one of {KINDS}")
    ref_columns: Mapping[str, Any] = {}
    if reference is not None:
        _check_version(reference, "the reference")
        ref_columns = reference.get("columns", {})
    columns: dict[str, Any] = {}
    for c, kind in kinds.items():
        ref = ref_columns.get(c) or {}
        aligned = ref.get("kind") == kind  # a column of another kind there: summarized on its own
        if kind == "numeric":
            columns[c] = _numeric(frame[c], ref["edges"] if aligned else None, bins, min_group_size)
        else:
            columns[c] = _categorical(frame[c], ref["categories"] if aligned else None, min_group_size)
    arrays = _label_arrays(frame, label, label_kind, positive) if label is not None and label_kind else {}
    groups = {a: _groups(frame[a], arrays, min_group_size) for a in sensitive}
    return {
        "version": SUMMARY_VERSION,
        "n_rows": int(len(frame)),
        "kinds": dict(kinds),
        "label": label,
        "label_kind": label_kind,
        "positive": _jsonable_scalar(positive),
        "sensitive": list(sensitive),
        "settings": {"bins": int(bins), "min_group_size": int(min_group_size)},
        "aligned_to_reference": reference is not None,
        "columns": columns,
        "groups": groups,
        "disclosure": (
            f"counts and sums only; numeric bin edges rounded to 2 significant digits; categories of fewer "
            f"than {min_group_size} rows pooled as {OTHER!r}; groups of fewer than {min_group_size} rows pooled "
            f"as {SUPPRESSED!r} (n only: names and label statistics not stored); while fewer than "
            f"{min_group_size} rows have no stored label statistics, the smallest shown groups' are withheld "
            "too (label_withheld)"
        ),
    }


def schema_differences(
    reference: dict,
    current_kinds: dict[str, str],
    label: str | None,
    sensitive: list[str],
    *,
    label_kind: str | None = None,
    positive: object = None,
) -> list[str]:
    """What differs between the reference's columns, label and sensitive attributes and this
    run's, as phrases ([] when they match). ``label_kind`` and ``positive`` are compared when
    given."""
    out: list[str] = []
    ref_kinds: Mapping[str, str] = reference.get("kinds", {})
    for c, kind in ref_kinds.items():
        if c not in current_kinds:
            out.append(f'column "{c}" is in the reference but not in this run')
        elif current_kinds[c] != kind:
            out.append(f'column "{c}" was {kind}, is {current_kinds[c]}')
    out += [f'column "{c}" is in this run but not in the reference' for c in current_kinds if c not in ref_kinds]
    ref_label = reference.get("label")
    if ref_label != label:
        was = f'"{ref_label}"' if ref_label is not None else "none"
        out.append(f"the label was {was}, is " + (f'"{label}"' if label is not None else "none"))
    elif label is not None:
        if label_kind is not None and reference.get("label_kind") != label_kind:
            out.append(f'the label "{label}" was {reference.get("label_kind")}, is {label_kind}')
        if positive is not None and reference.get("positive") != _jsonable_scalar(positive):
            out.append(
                f'the positive value of the label "{label}" was {reference.get("positive")!r}, is '
                f"{_jsonable_scalar(positive)!r}"
            )
    ref_sensitive = list(reference.get("sensitive", []))
    out += [
        f'sensitive attribute "{a}" is in the reference but not in this run'
        for a in ref_sensitive
        if a not in sensitive
    ]
    out += [
        f'sensitive attribute "{a}" is in this run but not in the reference'
        for a in sensitive
        if a not in ref_sensitive
    ]
    return out


# --------------------------------------------------------------------------- tests


def psi(reference_counts: Sequence[float], current_counts: Sequence[float], floor: float = PSI_FLOOR) -> float:
    """Population stability index sum((q - p) ln(q / p)) of two count vectors over the same
    cells; an empty cell's proportion is ``floor`` (Evidently's 0.0001)."""
    r = np.asarray(reference_counts, dtype=float)
    c = np.asarray(current_counts, dtype=float)
    p, q = r / r.sum(), c / c.sum()
    p, q = np.where(p == 0, floor, p), np.where(q == 0, floor, q)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_binned(reference_counts: Sequence[float], current_counts: Sequence[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov (D, p) from counts over ordered cells: D = the largest gap
    of the two cumulative proportions, p = ``kstwo.sf(D, round(n m / (n + m)))`` as scipy's
    ``ks_2samp(method="asymp")``."""
    from scipy.stats import kstwo

    r = np.asarray(reference_counts, dtype=float)
    c = np.asarray(current_counts, dtype=float)
    n, m = r.sum(), c.sum()
    d = float(np.max(np.abs(np.cumsum(r) / n - np.cumsum(c) / m))) if r.size else 0.0
    d = min(max(d, 0.0), 1.0)
    return d, float(kstwo.sf(d, max(np.round(n * m / (n + m)), 1.0)))


def chi_square(reference_counts: Sequence[float], current_counts: Sequence[float]) -> tuple[float, float]:
    """Pearson's chi-square (statistic, p) of the 2 x K table reference / this run x cells, all-zero
    cells dropped, no continuity correction (``scipy.stats.chi2_contingency``); one cell left: (0, 1)."""
    from scipy.stats import chi2_contingency

    table = np.array([reference_counts, current_counts], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    res = chi2_contingency(table, correction=False)
    return float(res.statistic), float(res.pvalue)


def two_proportions(x1: float, n1: float, x2: float, n2: float) -> dict[str, Any]:
    """x2/n2 - x1/n1 with Newcombe's hybrid-score 95 % interval (from Wilson intervals; Newcombe
    1998, method 10) and the pooled two-proportion z-test's two-sided p."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1)
    l2, u2 = wilson_interval(x2, n2)
    diff = p2 - p1
    ci = [diff - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), diff + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)]
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    p = (1.0 if diff == 0 else 0.0) if se == 0 else math.erfc(abs(diff) / se / math.sqrt(2.0))
    return {"ref": p1, "cur": p2, "diff": diff, "ci": ci, "p": p}


def welch(n1: float, s1: float, ss1: float, n2: float, s2: float, ss2: float) -> dict[str, Any]:
    """Welch's t-test of two means from n, sum and sum of squares: this run's mean minus the
    reference's, the two-sided p, and the t 95 % interval of this run's mean."""
    from scipy.stats import t as student_t

    m1, m2 = s1 / n1, s2 / n2
    v1 = max(ss1 - s1 * m1, 0.0) / (n1 - 1)
    v2 = max(ss2 - s2 * m2, 0.0) / (n2 - 1)
    a, b = v1 / n1, v2 / n2
    diff = m2 - m1
    if a + b == 0:
        p = 1.0 if diff == 0 else 0.0
    else:
        df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))
        p = float(2.0 * student_t.sf(abs(diff) / math.sqrt(a + b), df))
    half = float(student_t.ppf(0.975, n2 - 1)) * math.sqrt(b)
    return {"ref": m1, "cur": m2, "diff": diff, "ci": [m2 - half, m2 + half], "p": p}


def benjamini_hochberg(pvalues: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q), ``scipy.stats.false_discovery_control``; [] for none."""
    from scipy.stats import false_discovery_control

    p = np.asarray(pvalues, dtype=float)
    return p.copy() if p.size == 0 else np.asarray(false_discovery_control(p, method="bh"), dtype=float)


# --------------------------------------------------------------------------- the audit


def _skipped(cfg: Mapping[str, Any], reason: str) -> AuditResult:
    gates = [
        Gate(_GATE_METRIC[k], Status.SKIPPED, None, float(cfg[k]), t.comparison or "<=", reason)
        for k, t in DRIFT_THRESHOLDS.items()
        if t.is_gate and cfg.get(k) is not None
    ]
    return AuditResult(
        name="drift",
        status=Status.SKIPPED,
        thresholds={k: cfg[k] for k in DRIFT_THRESHOLDS if cfg.get(k) is not None},
        gates=gates,
        notes=[reason],
        details={"reference": None, "columns": [], "groups": [], "suppressed": [], "fdr": cfg["fdr"]},
    )


def _cells(col: Mapping[str, Any]) -> list[int]:
    extra = [col["missing"]] if col["kind"] == "numeric" else [col["other"], col["missing"]]
    return [*col["counts"], *extra]


def _column_row(name: str, ref: Mapping[str, Any], cur: Mapping[str, Any]) -> dict[str, Any]:
    key = "edges" if ref["kind"] == "numeric" else "categories"
    if list(ref[key]) != list(cur[key]):
        raise ValueError(f"column {name!r}: this run was not summarized on the reference's {key} (reference=...)")
    r, c = _cells(ref), _cells(cur)
    row: dict[str, Any] = {
        "column": name,
        "kind": ref["kind"],
        "test": "KS" if ref["kind"] == "numeric" else "chi-square",
    }
    if sum(r) == 0 or sum(c) == 0:
        return {**row, "psi": None, "statistic": None, "p": None, "q": None, "drifted": False, "cells": len(r)}
    statistic, p = ks_binned(r, c) if ref["kind"] == "numeric" else chi_square(r, c)
    return {**row, "psi": psi(r, c), "statistic": statistic, "p": p, "q": None, "drifted": False, "cells": len(r)}


def _group_rows(reference: Mapping[str, Any], current: Mapping[str, Any], min_size: int) -> tuple[list, list]:
    """Rows of the groups stored in both summaries, and the suppression entries."""
    rows: list[dict[str, Any]] = []
    suppressed: list[dict[str, Any]] = []
    kind = reference.get("label_kind")
    rates = (
        reference.get("label") is not None
        and reference.get("label") == current.get("label")
        and kind == current.get("label_kind")
        and reference.get("positive") == current.get("positive")
    )
    n_ref, n_cur = reference["n_rows"], current["n_rows"]
    for attr in reference.get("sensitive", []):
        if attr not in current.get("sensitive", []):
            continue
        ref_g, cur_g = reference["groups"][attr], current["groups"][attr]
        for where, g in (("reference", ref_g), ("this run", cur_g)):
            pool = g.get(SUPPRESSED, {})
            if pool.get("groups"):
                suppressed.append({"attribute": attr, "in": where, "groups": pool["groups"], "n": pool.get("n")})
        for name, r in ref_g["groups"].items():
            c = cur_g["groups"].get(name)
            if c is None:
                suppressed.append(
                    {
                        "attribute": attr,
                        "group": name,
                        "in": "this run",
                        "n_reference": r["n"],
                        "why": f"fewer than {min_size} rows in this run",
                    }
                )
                continue
            share = two_proportions(r["n"], n_ref, c["n"], n_cur)
            row: dict[str, Any] = {
                "attribute": attr,
                "group": name,
                "n_ref": r["n"],
                "n_cur": c["n"],
                "share_ref": share["ref"],
                "share_cur": share["cur"],
                "share_diff": share["diff"],
                "share_ci": share["ci"],
                "share_p": share["p"],
                "share_q": None,
                "rate_ref": None,
                "rate_cur": None,
                "rate_ci": None,
                "rate_diff": None,
                "rate_p": None,
                "rate_q": None,
                "drifted": False,
            }
            if rates and kind == "binary" and r.get("labelled") and c.get("labelled"):
                rate = two_proportions(r["positives"], r["labelled"], c["positives"], c["labelled"])
                rate["ci"] = list(wilson_interval(c["positives"], c["labelled"]))
            elif rates and kind == "rating" and r.get("labelled", 0) > 1 and c.get("labelled", 0) > 1:
                rate = welch(r["labelled"], r["sum"], r["sumsq"], c["labelled"], c["sum"], c["sumsq"])
            else:
                rate = None
            for where, side in (("reference", r), ("this run", c)):
                if side.get("label_withheld"):
                    why = "label statistics withheld (complementary suppression): base rate not compared"
                    suppressed.append({"attribute": attr, "group": name, "in": where, "why": why})
            if rate is not None:
                row.update(
                    rate_ref=rate["ref"],
                    rate_cur=rate["cur"],
                    rate_ci=rate["ci"],
                    rate_diff=rate["diff"],
                    rate_p=rate["p"],
                )
            rows.append(row)
        for name, c in cur_g["groups"].items():
            if name not in ref_g["groups"]:
                suppressed.append(
                    {
                        "attribute": attr,
                        "group": name,
                        "in": "reference",
                        "n_current": c["n"],
                        "why": f"fewer than {min_size} rows in the reference, or not in it",
                    }
                )
    return rows, suppressed


def _same_share_hypotheses(
    reference: Mapping[str, Any], current: Mapping[str, Any], columns: set[str]
) -> dict[str, tuple[str, ...]]:
    """Attribute -> one hypothesis id for all its share tests, where they are one test: exactly two
    groups, the same in both summaries, covering every row (none suppressed or missing); the id
    of the attribute's column test when that column, too, holds only those two values."""
    out: dict[str, tuple[str, ...]] = {}
    for attr in reference.get("sensitive", []):
        if attr not in current.get("sensitive", []):
            continue
        sides = (reference["groups"][attr], current["groups"][attr])
        names = {frozenset(g["groups"]) for g in sides}
        if len(names) != 1 or len(next(iter(names))) != 2:
            continue
        if any(g["missing"] or g[SUPPRESSED]["n"] for g in sides):
            continue
        out[attr] = ("share", attr)
        cols = [s["columns"].get(attr) for s in (reference, current)]
        if attr in columns and all(
            c
            and c["kind"] == "categorical"
            and set(c["categories"]) == next(iter(names))
            and not c["other"]
            and not c["missing"]
            for c in cols
        ):
            out[attr] = ("column", attr)
    return out


def drift_audit(
    reference: dict | None,
    current: dict,
    thresholds: dict,
    *,
    reference_label: str = "",
    no_reference_reason: str = "",
) -> AuditResult:
    """Drift of ``current`` (``summarize(..., reference=reference)``) from ``reference`` (module
    doc). ``reference`` None: SKIPPED, every configured gate skipped with
    ``no_reference_reason``. Raises ValueError for a summary of another version, or columns of
    ``current`` not binned on the reference's edges and categories."""
    cfg = {**DRIFT_DEFAULTS, **{k: v for k, v in (thresholds or {}).items() if v is not None}}
    fdr = float(cfg["fdr"])
    if not 0.0 < fdr < 1.0:
        raise ValueError(f"fdr must be in (0, 1), got {fdr}")
    if reference is None:
        return _skipped(cfg, no_reference_reason or "no reference summary")
    _check_version(reference, "the reference")
    _check_version(current, "this run's summary")
    settings = reference.get("settings", {})
    min_size = int(settings.get("min_group_size", cfg["min_group_size"]))
    schema = schema_differences(
        reference,
        current.get("kinds", {}),
        current.get("label"),
        current.get("sensitive", []),
        label_kind=current.get("label_kind"),
        positive=current.get("positive"),
    )
    ref_cols, cur_cols = reference["columns"], current["columns"]
    columns = [
        _column_row(c, ref_cols[c], cur_cols[c])
        for c in ref_cols
        if c in cur_cols and ref_cols[c]["kind"] == cur_cols[c]["kind"]
    ]
    groups, suppressed = _group_rows(reference, current, min_size)

    # Benjamini-Hochberg over every hypothesis of the audit (columns, group shares, group rates),
    # each counted once: the shares of a two-group attribute are one hypothesis (and that of its
    # column's chi-square when the column holds exactly those two values)
    same = _same_share_hypotheses(reference, current, {row["column"] for row in columns})
    slots: list[tuple[dict[str, Any], str, str, tuple[str, ...]]] = [
        (row, "p", "q", ("column", row["column"])) for row in columns if row["p"] is not None
    ]
    for row in groups:
        share = same.get(row["attribute"], ("share", row["attribute"], row["group"]))
        slots += [(row, "share_p", "share_q", share)] if row["share_p"] is not None else []
        slots += (
            [(row, "rate_p", "rate_q", ("rate", row["attribute"], row["group"]))] if row["rate_p"] is not None else []
        )
    hypotheses = {h: row[p] for row, p, _, h in reversed(slots)}  # the first slot's p (they are equal)
    q_of = dict(zip(hypotheses, benjamini_hochberg(list(hypotheses.values()))))
    for row, _, q, h in slots:
        row[q] = float(q_of[h])
    for row in columns:
        row["drifted"] = row["q"] is not None and row["q"] <= fdr
    for row in groups:
        row["drifted"] = any(row[q] is not None and row[q] <= fdr for q in ("share_q", "rate_q"))

    psis = [row["psi"] for row in columns if row["psi"] is not None]
    shifts = [abs(row[k]) for row in groups for k in ("share_diff", "rate_diff") if row[k] is not None]
    drifted_cols = [row for row in columns if row["drifted"]]
    drifted_groups = [row for row in groups if row["drifted"]]
    metrics: dict[str, float | None] = {
        "drift/max_psi": max(psis) if psis else None,
        "drift/drifted_columns": float(len(drifted_cols)),
        "drift/drifted_groups": float(len(drifted_groups)),
        "drift/max_group_shift": max(shifts) if shifts else None,
        "drift/n_reference": float(reference["n_rows"]),
        "drift/n_current": float(current["n_rows"]),
    }
    metrics.update({f"drift/psi/{row['column']}": row["psi"] for row in columns})
    gates = [
        compare_gate(_GATE_METRIC[k], metrics[_GATE_METRIC[k]], float(cfg[k]), "<=")
        for k, t in DRIFT_THRESHOLDS.items()
        if t.is_gate and cfg.get(k) is not None
    ]

    found = [f"{row['column']} (PSI {row['psi']:.3f})" for row in drifted_cols]
    found += [
        f"{row['attribute']}={row['group']} ("
        + ", ".join(
            f"{what} {row[a]:.3g} -> {row[b]:.3g}"
            for what, a, b, q in (
                ("share", "share_ref", "share_cur", "share_q"),
                ("base rate", "rate_ref", "rate_cur", "rate_q"),
            )
            if row[q] is not None and row[q] <= fdr
        )
        + ")"
        for row in drifted_groups
    ]
    n_tests = len(hypotheses)
    against = f" against {reference_label}" if reference_label else ""
    notes = [
        (f"drifted{against} (Benjamini-Hochberg q <= {fdr:g} over {n_tests} tests): " + "; ".join(found))
        if found
        else f"no column or group drifted{against} (Benjamini-Hochberg at FDR {fdr:g} over {n_tests} tests)"
    ]
    if schema:
        notes.append("schema differs from the reference: " + "; ".join(schema))
    lost = [s for s in suppressed if "n_reference" in s]  # shown in the reference, suppressed here
    if lost:
        notes.append(
            "groups of the reference with fewer than "
            f"{min_size} rows in this run (suppressed, not compared): "
            + ", ".join(f"{s['attribute']}={s['group']}" for s in lost)
        )
    used = {k: cfg[k] for k, t in DRIFT_THRESHOLDS.items() if t.is_gate and cfg.get(k) is not None}
    used.update(fdr=fdr, bins=settings.get("bins", cfg["bins"]), min_group_size=min_size)
    return AuditResult(
        name="drift",
        status=overall_status(gates),
        metrics=metrics,
        by_group=groups,
        thresholds=used,
        gates=gates,
        notes=notes,
        details={
            "reference": reference_label,
            "columns": columns,
            "groups": groups,
            "suppressed": suppressed,
            "schema": schema,
            "fdr": fdr,
            "tests": n_tests,
            "new_categories": {
                c: col["new"] for c, col in cur_cols.items() if col.get("kind") == "categorical" and col.get("new")
            },
        },
    )
