"""Shared pieces of the ratings datasets (MovieLens, the synthetic generator): column names,
age bands, and the frame every ratings loader returns (one row per rating, user attributes
joined on), so one contract layout and one model family fit both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from impactflow.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

#: Columns of a loaded ratings frame, in order. ``title`` is NaN when the item is unknown to
#: the items table, user attributes are NaN when the user is unknown to the users table:
#: the contracts turn both into failed expectations ("the users table joins").
RATING_COLUMNS: tuple[str, ...] = (
    "user_id",
    "item_id",
    "rating",
    "timestamp",
    "gender",
    "age",
    "age_band",
    "occupation",
    "title",
)

#: Age bands of MovieLens 1M's u.users documentation (the 100K file has exact ages):
#: lower bounds and labels.
AGE_BANDS: tuple[tuple[int, str], ...] = (
    (0, "<18"),
    (18, "18-24"),
    (25, "25-34"),
    (35, "35-44"),
    (45, "45-49"),
    (50, "50-55"),
    (56, "56+"),
)
AGE_BAND_LABELS: tuple[str, ...] = tuple(label for _, label in AGE_BANDS)

DUPLICATE_USER = "{path}: user_id {user!r} appears {count} times in the users table"


def age_band(age) -> "pd.Series":
    """Age (years) -> band label (``AGE_BANDS``); NaN or non-numeric stays NaN."""
    import numpy as np
    import pandas as pd

    values = pd.to_numeric(pd.Series(age), errors="coerce")
    edges = [lo for lo, _ in AGE_BANDS[1:]]
    idx = np.searchsorted(edges, values.to_numpy(dtype=float), side="right")
    labels = np.asarray(AGE_BAND_LABELS, dtype=object)[np.clip(idx, 0, len(AGE_BANDS) - 1)]
    return pd.Series(np.where(values.isna(), None, labels), index=values.index, dtype=object)


def join_ratings(
    ratings: "pd.DataFrame", users: "pd.DataFrame", items: "pd.DataFrame | None", users_path
) -> "pd.DataFrame":
    """Ratings (user_id, item_id, rating, timestamp) left-joined with users (user_id, age,
    gender, occupation) and items (item_id, title). A user listed twice is a ``DataError``
    (it would duplicate that user's ratings); unknown ids stay visible as NaN attributes."""
    dup = users["user_id"].value_counts()
    dup = dup[dup > 1]
    if len(dup):
        raise DataError(DUPLICATE_USER.format(path=users_path, user=_plain_id(dup.index[0]), count=int(dup.iloc[0])))
    users = users.assign(age_band=age_band(users["age"]).to_numpy())
    df = ratings.merge(users, on="user_id", how="left")
    if items is not None:
        items = items.drop_duplicates("item_id")
        df = df.merge(items[["item_id", "title"]], on="item_id", how="left")
    else:
        df["title"] = None
    return df[list(RATING_COLUMNS)].reset_index(drop=True)


def _plain_id(value):
    """numpy scalar -> Python value, so messages read ``user_id 1`` rather than ``np.int64(1)``."""
    return value.item() if hasattr(value, "item") else value
