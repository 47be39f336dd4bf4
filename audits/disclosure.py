"""Statistical disclosure control for everything a run shows: tables and plots carry
aggregates only, and no cell describes fewer than ``k`` people -- neither printed, nor
rebuildable from what is printed beside it.

A pure function over a report-like document (``suppress_small_cells``), applied once where the
report is written and to the audit JSON logged to MLflow, so it does not depend on the report's
section layout. It walks the document generically by convention:

- a *table* is a list of dicts; a row is a *cell* when it has a count field (``n``, ``count``,
  ``n_rows``, ``support``, ``size``, ``n_ratings``, ``n_users``, ``n_examples``) with an integer
  value. A row whose count is below ``k`` is removed from its table (its group label may itself
  identify someone: a rare native country, a 3-person occupation). Rows are dropped, not
  merged: rates of different groups cannot be merged without their numerators.
- **complementary rows**: in a group table (rows with a ``group`` label) where exactly one row
  of an attribute was removed, its size and outcomes are the attribute's total (the test-set
  size, the overall confusion matrix) minus the other rows; the smallest remaining row of that
  attribute is removed too, so only the sum of the two is implied.
- inside a kept row, the secondary counts partition the row's ``n`` (``PARTITIONS``: tp/fp/tn/fn,
  positives/negatives, deferred + the automated rest). A part with ``0 < value < k`` becomes
  ``None``, and since ``n`` minus the shown parts would give it back, **complementary** parts
  are suppressed too (the smallest non-zero ones) until the hidden parts cannot be told apart:
  at least two, with a sum above their number (as if each hidden part were known to be >= 1),
  zeros used last. A part that is only implied (``n - deferred``) counts as hidden, and when it is
  small the shown part is suppressed. When that cannot hide them the row is removed.
- **derived values**: in a row where any count was suppressed, every other number -- rates,
  their confidence bounds (a Wilson interval is a function of k and n), ratios, accuracy -- is
  suppressed too, since each is a function of the hidden counts and ``n``; only the count
  fields and ``share`` (n / total) stay. Rates over ``n`` (``RATES_OVER_N``) whose implied count
  ``rate x n`` (or its complement) is small are suppressed with their bounds even where no
  count is printed.
- a matrix (list of equal-length lists of integers, e.g. a confusion matrix) has its cells with
  ``0 < value < k`` set to ``None`` (zero cells are kept: "nobody" reveals no one), and then,
  because its row and column totals follow from rates printed elsewhere (prevalence, selection
  rate), complementary cells: every row and column holds no hidden cell or at least two.

This is the threshold rule of statistical disclosure control with secondary (complementary)
suppression (Hundepool et al. 2012, "Statistical Disclosure Control", Wiley, Sec. 5.2, 6.2 and
4.4). Known limits: protection is per table; the overall performance metrics (accuracy,
precision, recall over the whole test set) are released and determine the overall confusion
matrix, and gap metrics (max - min over judged groups) are released because they are what the
fairness gates judge -- a reader who combines them with the shown rows learns at most what the
gap definition implies about the hidden row's rate. The document gains
``disclosure = {"min_cell_size": k, "suppressed_rows": m, "suppressed_values": v,
"complementary_rows": c, "complementary_values": w}`` (counts only, never what was suppressed;
``suppressed_*`` include the complementary ones) so a reader knows cells are missing. The input
is not modified.
"""

from __future__ import annotations

from typing import Any

DEFAULT_MIN_CELL_SIZE = 10
COUNT_KEYS = ("n", "count", "n_rows", "support", "size", "n_ratings", "n_users", "n_examples")
#: counts that split a row's n into parts; True: the listed parts sum to n, False: the rest of n
#: (n - the parts) is a further part that is not printed
PARTITIONS: tuple[tuple[tuple[str, ...], bool], ...] = (
    (("tp", "fp", "tn", "fn"), True),
    (("positives", "negatives"), True),
    (("deferred",), False),
)
SECONDARY_COUNT_KEYS = tuple(k for keys, _ in PARTITIONS for k in keys) + ("n_members", "n_nonmembers")
#: rates whose denominator is the row's n: rate x n is a count of people
RATES_OVER_N = ("selection_rate", "positive_rate", "deferral_rate", "accuracy")
#: numbers in a row that depend on n only, kept when its counts are suppressed
N_ONLY_KEYS = ("share",)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_count(v: Any) -> bool:
    return _is_int(v) or (isinstance(v, float) and v.is_integer())


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _row_count(row: dict) -> int | None:
    for key in COUNT_KEYS:
        v = row.get(key)
        if v is not None and _is_count(v):
            return int(v)
    return None


def _is_int_matrix(m: Any) -> bool:
    return (
        isinstance(m, list)
        and bool(m)
        and all(isinstance(r, list) and r for r in m)
        and all(_is_int(c) for r in m for c in r)
    )


class _Counter:
    def __init__(self) -> None:
        self.rows = self.values = self.comp_rows = self.comp_values = 0


def _small(v: Any, k: int) -> bool:
    return _is_number(v) and 0 < v < k


def _hide_enough(hidden: list[int], shown: dict[Any, int]) -> list[Any] | None:
    """Keys of ``shown`` to hide as well so that parts summing to a known total cannot be told
    apart: none hidden, or at least two with a sum above their number (as if the reader knew
    each is >= 1). The smallest non-zero parts go first, then zeros. None when even hiding
    every part does not."""
    extra: list = []
    candidates = sorted(((v == 0, v), key) for key, v in shown.items())
    while hidden and (len(hidden) < 2 or sum(hidden) <= len(hidden)):
        if not candidates:
            return None
        (_, v), key = candidates.pop(0)
        hidden.append(v)
        extra.append(key)
    return extra


def _suppress_row(row: dict, k: int, c: _Counter) -> dict | None:
    """The row with small parts, their complements and everything derived from them blanked;
    None when the row must go."""
    n = _row_count(row)
    out = dict(row)
    primary: list[str] = []
    comp: list[str] = []
    for keys, complete in PARTITIONS:
        present = {key: int(row[key]) for key in keys if _is_count(row.get(key))}
        if not present:
            continue
        small = [key for key, v in present.items() if 0 < v < k]
        hidden = [present[key] for key in small]
        if not complete and n is not None:
            rest = n - sum(present.values())
            if rest > 0:
                hidden.append(rest)  # never printed, but n - the parts gives it
                if not small and rest >= k:
                    continue
            elif not small:
                continue
        elif not small:
            continue
        extra = _hide_enough(hidden, {key: v for key, v in present.items() if key not in small})
        if extra is None:
            return None
        primary += small
        comp += extra
    for key in ("n_members", "n_nonmembers"):  # audit-set counts: no total printed beside them
        if _small(row.get(key), k):
            primary.append(key)
    implied = [
        key
        for key in RATES_OVER_N
        if n is not None
        and _is_number(row.get(key))
        and (_small(round(row[key] * n), k) or _small(n - round(row[key] * n), k))
    ]
    if not (primary or comp or implied):
        return out
    for key in primary + comp:
        out[key] = None
    c.values += len(primary) + len(comp)
    c.comp_values += len(comp)
    if primary or comp:  # every number of the row is a function of the hidden counts and n
        for key, v in row.items():
            if key not in COUNT_KEYS and key not in N_ONLY_KEYS and key not in SECONDARY_COUNT_KEYS and _is_number(v):
                out[key] = None
                c.values += 1
    else:
        for key, v in row.items():
            if _is_number(v) and any(key == r or key.startswith(r + "_") for r in implied):
                out[key] = None
                c.values += 1
    return out


def _suppress_matrix(m: list[list[int]], k: int, c: _Counter) -> list[list]:
    hidden = [[0 < x < k for x in r] for r in m]
    c.values += sum(map(sum, hidden))
    changed = True
    while changed:
        changed = False
        lines = [[(i, j) for j in range(len(m[i]))] for i in range(len(m))]
        lines += [[(i, j) for i in range(len(m))] for j in range(len(m[0]))]
        for line in lines:
            vals = [m[i][j] for i, j in line if hidden[i][j]]
            if not vals:
                continue
            shown = {(i, j): m[i][j] for i, j in line if not hidden[i][j]}
            extra = _hide_enough(vals, shown)
            if extra is None:  # hiding the whole line is all there is
                extra = list(shown)
            for i, j in extra:
                if not hidden[i][j]:
                    hidden[i][j] = changed = True
                    c.values += 1
                    c.comp_values += 1
    return [[None if h else x for x, h in zip(r, hr)] for r, hr in zip(m, hidden)]


def _suppress_table(items: list, k: int, c: _Counter) -> list:
    counts = [_row_count(it) if isinstance(it, dict) else None for it in items]
    drop = {i for i, n in enumerate(counts) if n is not None and n < k}
    # complementary rows: per attribute of a group table, never exactly one row removed
    attrs: dict[Any, list[int]] = {}
    for i, it in enumerate(items):
        if isinstance(it, dict) and "group" in it and counts[i] is not None:
            attrs.setdefault(it.get("attribute"), []).append(i)
    comp = set()
    for rows in attrs.values():
        gone = [i for i in rows if i in drop]
        left = sorted((counts[i], i) for i in rows if i not in drop)
        if len(gone) == 1 and left:
            comp.add(left[0][1])
    kept = []
    for i, item in enumerate(items):
        if i in drop or i in comp:
            c.rows += 1
            c.comp_rows += i in comp
            continue
        if isinstance(item, dict) and counts[i] is not None:
            row = _suppress_row(item, k, c)
            if row is None:
                c.rows += 1
                continue
            item = row
        kept.append(_walk(item, k, c))
    return kept


def _walk(obj: Any, k: int, c: _Counter) -> Any:
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for key, v in obj.items():
            if key in SECONDARY_COUNT_KEYS and _is_number(v) and 0 < v < k:
                out[key] = None
                c.values += 1
            else:
                out[key] = _walk(v, k, c)
        return out
    if isinstance(obj, list):
        if _is_int_matrix(obj):
            return _suppress_matrix(obj, k, c)
        return _suppress_table(obj, k, c)
    return obj


def suppress_small_cells(
    doc: dict, min_cell_size: int = DEFAULT_MIN_CELL_SIZE, skip: tuple[str, ...] = ("config", "provenance", "summary")
) -> dict:
    """A copy of ``doc`` with every cell of fewer than ``min_cell_size`` people suppressed,
    with the complementary cells and derived values that would give it back (see the module
    doc). Top-level keys in ``skip`` are copied unchanged (the run's own settings and the gate
    list hold no per-group data). ``min_cell_size <= 1`` disables it."""
    if min_cell_size < 1:
        raise ValueError(f"min_cell_size must be >= 1, got {min_cell_size}")
    c = _Counter()
    # a data sheet describes the whole data set, not a group: its cells are walked, but it is
    # never dropped as a "row" of fewer than k people (the report needs one; k above the data
    # set's size left none, and the run ended in a schema traceback)
    out = {
        key: (
            v
            if key in skip or min_cell_size <= 1
            else [_walk(s, min_cell_size, c) for s in v]
            if key == "datasheets" and isinstance(v, list)
            else _walk(v, min_cell_size, c)
        )
        for key, v in doc.items()
    }
    out["disclosure"] = {
        "min_cell_size": int(min_cell_size),
        "suppressed_rows": c.rows,
        "suppressed_values": c.values,
        "complementary_rows": c.comp_rows,
        "complementary_values": c.comp_values,
    }
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
        value: Any
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
    return pd.DataFrame(out).astype(
        {c: frame[c].dtype for c in frame.columns if not isinstance(out[c][0], np.ndarray)}, errors="ignore"
    )
