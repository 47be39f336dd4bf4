from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from impactflow.errors import DataError
from impactflow.models.data import split_frame, stratum_labels


def _frame(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "y": rng.choice(["a", "b"], size=n, p=[0.75, 0.25]),
            "sex": rng.choice(["F", "M"], size=n, p=[0.3, 0.7]),
            "race": rng.choice(["r1", "r2", "r3"], size=n, p=[0.9, 0.095, 0.005]),
            "x": np.arange(n),
        }
    )


def test_split_sizes_disjoint_and_seeded():
    df = _frame()
    s1 = split_frame(df, target="y", stratify_on=["sex", "race"], validation=0.15, test=0.15, seed=7)
    s2 = split_frame(df, target="y", stratify_on=["sex", "race"], validation=0.15, test=0.15, seed=7)
    assert s1.sizes() == {"train": 1400, "validation": 300, "test": 300}
    ids = [set(s.x) for s in (s1.train, s1.validation, s1.test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert sum(map(len, ids)) == len(df)
    assert list(s1.test.x) == list(s2.test.x)


def test_split_preserves_label_by_group_shares():
    df = _frame(n=6000)
    s = split_frame(df, target="y", stratify_on=["sex"], validation=0.15, test=0.15, seed=0)
    full = df.groupby(["y", "sex"]).size() / len(df)
    test = s.test.groupby(["y", "sex"]).size() / len(s.test)
    assert np.allclose(full.values, test.values, atol=0.005)


def test_rare_strata_fall_back_to_label_only():
    df = pd.DataFrame({"y": ["a"] * 12 + ["b"] * 3, "g": ["u"] * 11 + ["v"] + ["u"] * 3})
    labels = stratum_labels(df, ["y", "g"], min_count=10)
    # the 11 (a,u) rows keep their joint stratum; (a,v) has 1 row and (b,u) 3 rows: label only
    assert labels.tolist() == ["a|u"] * 11 + ["a"] + ["b"] * 3


def test_too_few_rows_is_a_data_error():
    with pytest.raises(DataError, match="5 rows"):
        split_frame(_frame(n=5), target="y", stratify_on=[], validation=0.15, test=0.15, seed=0)
