"""k-anonymity and distinct l-diversity of the quasi-identifiers a contract declares (pure pandas).

k-anonymity (Sweeney 2002, "k-anonymity: a model for protecting privacy", IJUFKS 10(5)): rows
with the same values of every quasi-identifier form an equivalence class; the table is k-anonymous
for k = the size of its smallest class. Distinct l-diversity (Machanavajjhala et al. 2007, ACM
TKDD 1(1)): l = the smallest number of distinct sensitive values within a class.

Missing values are a value of their own (a class "age=NaN" is as identifying as any other). With a
``unit`` column (e.g. MovieLens' user_id: one row per rating), rows are first reduced to one per
unit, so classes count people, not their ratings. Only sizes and counts are returned: never a
class's values (they would identify the people in small classes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["k_anonymity"]


def k_anonymity(
    df: "pd.DataFrame",
    quasi_identifiers: Sequence[str],
    min_k: int = 5,
    sensitive: str | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    """k, the number of classes, how many classes/rows (units) sit in classes smaller than
    ``min_k``, and (with ``sensitive``) the distinct l-diversity."""
    qis = [c for c in quasi_identifiers if c in df.columns]
    missing = [c for c in quasi_identifiers if c not in df.columns]
    out: dict[str, Any] = {
        "quasi_identifiers": list(qis),
        "missing_columns": missing,
        "min_k": int(min_k),
        "unit": unit,
        "sensitive": sensitive,
    }
    if not qis or df.empty:
        return {
            **out,
            "status": "not-measured",
            "k": None,
            "n_units": int(len(df)),
            "n_classes": 0,
            "classes_below_min_k": 0,
            "units_below_min_k": 0,
            "share_below_min_k": None,
            "l_diversity": None,
        }
    frame = df
    if unit is not None and unit in df.columns:
        frame = df.drop_duplicates(subset=[unit])
    sizes = frame.groupby(qis, dropna=False, observed=True).size()
    small = sizes[sizes < min_k]
    n = int(len(frame))
    result = {
        **out,
        "status": "measured",
        "k": int(sizes.min()),
        "n_units": n,
        "n_classes": int(len(sizes)),
        "classes_below_min_k": int(len(small)),
        "units_below_min_k": int(small.sum()),
        "share_below_min_k": float(small.sum() / n),
        "l_diversity": None,
    }
    if sensitive is not None and sensitive in frame.columns:
        distinct = frame.groupby(qis, dropna=False, observed=True)[sensitive].nunique(dropna=False)
        result["l_diversity"] = int(distinct.min())
    return result
