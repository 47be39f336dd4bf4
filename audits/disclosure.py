"""Statistical disclosure control for everything a run shows: tables and plots carry
aggregates only, and no cell describes fewer than ``k`` people.

A pure function over a report-like document (``suppress_small_cells``), applied once where the
report is written and to the audit JSON logged to MLflow, so it does not depend on the report's
section layout. It walks the document generically by convention:

- a *table* is a list of dicts; a row is a *cell* when it has a count field (``n``, ``count``,
  ``n_rows``, ``support``, ``size``, ``n_ratings``, ``n_users``, ``n_examples``) with an integer
  value. A row whose count is below ``k`` is removed from its table (its group label may itself
  identify someone: a rare native country, a 3-person occupation). Rows are dropped, not
  merged: rates of different groups cannot be merged without their numerators.
- inside a kept row, secondary counts (``tp``, ``fp``, ``tn``, ``fn``, ``positives``,
  ``negatives``) with ``0 < value < k`` become ``None``;
- a matrix (list of equal-length lists of integers, e.g. a confusion matrix) has its cells with
  ``0 < value < k`` set to ``None`` (zero cells are kept: "nobody" reveals no one).

This is the threshold rule of statistical disclosure control (cell suppression below a minimum
frequency; Hundepool et al. 2012, "Statistical Disclosure Control", Wiley, Sec. 5.2 and 6.2).
The document gains ``disclosure = {"min_cell_size": k, "suppressed_rows": m,
"suppressed_values": v}`` (counts only, never what was suppressed) so a reader knows cells are
missing. The input is not modified.
"""
from __future__ import annotations

from typing import Any

DEFAULT_MIN_CELL_SIZE = 10
COUNT_KEYS = ("n", "count", "n_rows", "support", "size", "n_ratings", "n_users", "n_examples")
SECONDARY_COUNT_KEYS = ("tp", "fp", "tn", "fn", "positives", "negatives")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _row_count(row: dict) -> int | None:
    for key in COUNT_KEYS:
        v = row.get(key)
        if _is_int(v) or (isinstance(v, float) and v.is_integer()):
            return int(v)
    return None


def _is_int_matrix(m: Any) -> bool:
    return (isinstance(m, list) and bool(m) and all(isinstance(r, list) and r for r in m)
            and all(_is_int(c) for r in m for c in r))


class _Counter:
    rows = 0
    values = 0


def _walk(obj: Any, k: int, c: _Counter) -> Any:
    if isinstance(obj, dict):
        out = {}
        for key, v in obj.items():
            if key in SECONDARY_COUNT_KEYS and (_is_int(v) or isinstance(v, float)) and 0 < v < k:
                out[key] = None
                c.values += 1
            else:
                out[key] = _walk(v, k, c)
        return out
    if isinstance(obj, list):
        if _is_int_matrix(obj):
            rows = []
            for r in obj:
                rows.append([None if 0 < x < k else x for x in r])
                c.values += sum(1 for x in r if 0 < x < k)
            return rows
        kept = []
        for item in obj:
            if isinstance(item, dict):
                n = _row_count(item)
                if n is not None and n < k:
                    c.rows += 1
                    continue
            kept.append(_walk(item, k, c))
        return kept
    return obj


def suppress_small_cells(doc: dict, min_cell_size: int = DEFAULT_MIN_CELL_SIZE,
                         skip: tuple[str, ...] = ("config", "provenance", "summary")) -> dict:
    """A copy of ``doc`` with every cell of fewer than ``min_cell_size`` people suppressed
    (see the module doc). Top-level keys in ``skip`` are copied unchanged (the run's own
    settings and the gate list hold no per-group data). ``min_cell_size <= 1`` disables it."""
    if min_cell_size < 1:
        raise ValueError(f"min_cell_size must be >= 1, got {min_cell_size}")
    c = _Counter()
    out = {key: (v if key in skip or min_cell_size <= 1 else _walk(v, min_cell_size, c))
           for key, v in doc.items()}
    out["disclosure"] = {"min_cell_size": int(min_cell_size), "suppressed_rows": c.rows,
                         "suppressed_values": c.values}
    return out


EXAMPLE_TEXT = "example message"


def synthetic_example(frame, n: int = 5):
    """An input example that is no one's row, for the logged model's signature: numeric
    columns hold their median (cast back to the column's dtype), short categorical columns
    their most frequent value (a group of many people), free-text columns a fixed sentence,
    array columns (images) zeros of the first array's shape and dtype. MLflow stores the
    example beside the model (input_example.json, serving_input_example.json), so raw rows
    there would publish data subjects' records."""
    import numpy as np
    import pandas as pd

    out = {}
    for col in frame.columns:
        s = frame[col]
        first = s.iloc[0] if len(s) else None
        if isinstance(first, np.ndarray):
            value = np.zeros_like(first)
        elif pd.api.types.is_bool_dtype(s.dtype):
            value = bool(s.mode().iloc[0]) if len(s) else False
        elif pd.api.types.is_numeric_dtype(s.dtype):
            med = s.median() if len(s) else 0
            value = np.asarray([med]).astype(s.dtype)[0] if not pd.isna(med) else med
        else:
            text = s.dropna().astype(str)
            free_text = len(text) and text.nunique() > 0.5 * len(text)
            value = EXAMPLE_TEXT if free_text or not len(text) else text.mode().iloc[0]
        out[col] = [value] * n
    return pd.DataFrame(out).astype({c: frame[c].dtype for c in frame.columns
                                     if not isinstance(out[c][0], np.ndarray)}, errors="ignore")
