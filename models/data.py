"""Model-agnostic data preparation: the seeded, stratified train/validation/test split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from impactflow.errors import DataError

TOO_FEW_ROWS = "Dataset has {n} rows after loading; at least {need} are needed to split it"


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    predefined_test: bool = False  # the test rows are an official test set, not a random draw

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def stratum_codes(df: pd.DataFrame, columns: list[str], min_count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, names)``: the stratum of each row as an integer code into ``names``.

    A stratum is the values of ``columns`` joined with "|" (their ``astype(str)`` forms);
    strata rarer than ``min_count`` are merged by dropping the sensitive part (keeping the
    first column, the label), so every stratum can be split. ``names`` is sorted, so the codes
    order strata exactly as their string labels sort: scikit-learn's stratified splitters see
    the same classes in the same order as with the strings, and draw the same split.

    Work is done on integer codes (``pd.factorize`` per column) and strings are built only for
    the distinct combinations: joining strings row by row took 22 s at 1M rows, this ~0.3 s.
    """
    combo = np.zeros(len(df), dtype=np.int64)
    for c in columns:
        code, uniq = pd.factorize(df[c], use_na_sentinel=False)
        combo = combo * max(len(uniq), 1) + code
    _, first, inverse, counts = np.unique(combo, return_index=True, return_inverse=True, return_counts=True)
    reps = df.iloc[first]  # one row per distinct combination: its strings are the stratum's
    joined = reps[columns[0]].astype(str)
    for c in columns[1:]:
        joined = joined + "|" + reps[c].astype(str)
    label = reps[columns[0]].astype(str)
    per_combo = np.where(counts >= min_count, joined.to_numpy(dtype=object), label.to_numpy(dtype=object))
    names, combo_code = np.unique(per_combo.astype(str), return_inverse=True)
    return combo_code[inverse.reshape(-1)], names


def stratum_labels(df: pd.DataFrame, columns: list[str], min_count: int) -> pd.Series:
    """Stratum label per row (see ``stratum_codes``) as strings, e.g. ``">50K|Female"``."""
    codes, names = stratum_codes(df, columns, min_count)
    return pd.Series(names[codes], index=df.index, dtype=object)


def split_frame(
    df: pd.DataFrame,
    *,
    target: str,
    stratify_on: list[str],
    validation: float,
    test: float,
    seed: int,
    predefined: str | None = None,
    stratify: bool = True,
) -> Split:
    """Seeded split stratified by the label and the sensitive columns (jointly).

    Strata with fewer than 10 rows fall back to label-only stratification, so tiny
    intersections (e.g. one race x sex x label cell) cannot break the split.
    ``predefined``: a column whose "test" rows are the official test set (kept as is);
    the validation split is then drawn from the other rows, with ``validation`` read as a
    share of those. ``stratify=False`` for continuous targets (ratings are stratified as
    classes only when there are few distinct values).
    """
    from sklearn.model_selection import train_test_split

    need = 20
    if len(df) < need:
        raise DataError(TOO_FEW_ROWS.format(n=len(df), need=need))
    cols = [target] + [c for c in stratify_on if c != target]
    df = df.reset_index(drop=True)
    idx = np.arange(len(df))
    if predefined is not None:
        is_test = (df[predefined] == "test").to_numpy()
        if is_test.all() or not is_test.any():
            raise DataError(f"column {predefined!r} must mark some (not all) rows as 'test'")
        rest, test_idx = idx[~is_test], idx[is_test]
        val_share = validation
    else:
        strata = stratum_codes(df, cols, min_count=10)[0] if stratify else None
        rest, test_idx = train_test_split(idx, test_size=test, random_state=seed, stratify=strata)
        val_share = validation / (1.0 - test)
    rest_strata = stratum_codes(df.iloc[rest], cols, min_count=10)[0] if stratify else None
    train_idx, val_idx = train_test_split(rest, test_size=val_share, random_state=seed + 1, stratify=rest_strata)
    return Split(
        train=df.iloc[np.sort(train_idx)].reset_index(drop=True),
        validation=df.iloc[np.sort(val_idx)].reset_index(drop=True),
        test=df.iloc[np.sort(test_idx)].reset_index(drop=True),
        predefined_test=predefined is not None,
    )
