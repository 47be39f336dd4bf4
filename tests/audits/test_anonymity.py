"""k-anonymity / distinct l-diversity on tiny frames, hand-computed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from impactflow.audits.anonymity import k_anonymity


def test_k_anonymity_hand_computed():
    # classes over (age, sex): (30,F) x3, (30,M) x2, (40,F) x1, (NaN,M) x2 -> k = 1
    df = pd.DataFrame(
        {
            "age": [30, 30, 30, 30, 30, 40, np.nan, np.nan],
            "sex": ["F", "F", "F", "M", "M", "F", "M", "M"],
            "y": [0, 1, 0, 1, 1, 0, 0, 1],
        }
    )
    r = k_anonymity(df, ["age", "sex", "zip"], min_k=3, sensitive="y")
    assert (r["k"], r["n_classes"], r["classes_below_min_k"], r["units_below_min_k"]) == (1, 4, 3, 5)
    assert r["share_below_min_k"] == 5 / 8 and r["missing_columns"] == ["zip"]
    # distinct y values per class: {0,1}, {1}, {0}, {0,1} -> l = 1
    assert r["l_diversity"] == 1
    assert k_anonymity(df, ["sex"], min_k=3)["k"] == 4  # F x4, M x4


def test_unit_counts_people_not_rows():
    # user 1 rated 3 items, user 2 one item: by users the class (F) has 2 people, not 4 rows
    df = pd.DataFrame({"user_id": [1, 1, 1, 2, 3], "sex": ["F", "F", "F", "F", "M"]})
    r = k_anonymity(df, ["sex"], min_k=2, unit="user_id")
    assert (r["k"], r["n_units"], r["units_below_min_k"]) == (1, 3, 1)


def test_no_quasi_identifiers_is_not_measured():
    r = k_anonymity(pd.DataFrame({"a": [1]}), ["b"])
    assert r["status"] == "not-measured" and r["k"] is None
