"""``pipe_table``: '|'-separated text with a header row, every value text."""

from __future__ import annotations


def load_pipe_table(paths):
    import pandas as pd

    return pd.concat([pd.read_csv(p, sep="|", dtype=str, keep_default_na=False) for p in paths], ignore_index=True)
