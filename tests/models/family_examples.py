"""Tiny, seeded example data for every family (one function per family + one line in EXAMPLES).

Each returns ``(frame, roles)``: a small DataFrame the family's preprocessor accepts and the
column roles. The family-generic tests in ``test_families.py`` refuse a family without one.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from models.base import Roles


def tabular_example(n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "num_a": rng.normal(size=n),
        "num_b": rng.integers(0, 10, size=n).astype(float),
        "cat": rng.choice(["x", "y", "z"], size=n),
    })
    df["y"] = np.where(df["num_a"] > 0, "pos", "neg")
    roles = Roles(target="y", task="binary", features=("num_a", "num_b", "cat"), positive_label="pos",
                  labels=("neg", "pos"), categorical=("cat",), numeric=("num_a", "num_b"))
    return df, roles


EXAMPLES = {
    "tabular": tabular_example,
}
