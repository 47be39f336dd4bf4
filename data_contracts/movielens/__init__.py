"""MovieLens 100K (GroupLens): the loader of its real files from a user-supplied folder.

The GroupLens licence forbids redistribution: nothing of MovieLens is shipped with or copied
into this project. Point ``data.path`` at the folder holding ``u.data``, ``u.user`` and
``u.item`` (or at those three files). Roles live in contract.yaml, expectations in
expectations.json (both in this folder).

Formats (the dataset's README): ``u.data`` is TAB-separated ``user_id item_id rating
timestamp``; ``u.user`` is ``|``-separated ``user_id|age|gender|occupation|zip_code``;
``u.item`` is ``|``-separated ``movie_id|title|release_date|video_release_date|IMDb_URL|``
+ 19 genre flags, encoded in Latin-1 (ISO-8859-1), not UTF-8. The zip code is not loaded
(a quasi-identifier the audits do not need).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from impactflow.errors import DataError
from impactflow.data_contracts.files import read_bytes
from impactflow.data_contracts.ratings import join_ratings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MOVIELENS_FILES", "OFFICIAL_SHA256", "load_movielens", "movielens_files"]

MOVIELENS_FILES = ("u.data", "u.user", "u.item")
# SHA-256 of the official ml-100k files (GroupLens ml-100k.zip), to recognise the release.
OFFICIAL_SHA256 = {
    "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
    "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
}

NOT_SHIPPED = (
    "MovieLens is not shipped with impactflow (its licence forbids redistribution): "
    "set data.path to the folder holding u.data, u.user and u.item"
)
MISSING = "{path}: file not found (MovieLens 100K needs {names} in one folder)"
BAD_FIELDS = "{path}: expected {expected} {sep}-separated fields, line {line} has {got}{hint}"
NO_ROWS = "{path}: no data rows"
_SEP_NAMES = {"\t": "TAB", "|": "'|'"}


def movielens_files(paths: Sequence[Path | str]) -> dict[str, Path]:
    """``{"u.data": path, "u.user": path, "u.item": path}`` from one folder or the three files."""
    given = [Path(p) for p in paths]
    if not given:
        raise DataError(NOT_SHIPPED)
    if len(given) == 1 and given[0].is_dir():
        files = {name: given[0] / name for name in MOVIELENS_FILES}
    else:
        files = {p.name: p for p in given}
        folder = given[0].parent
        files = {name: files.get(name, folder / name) for name in MOVIELENS_FILES}
    for name, path in files.items():
        if not path.is_file():
            raise DataError(MISSING.format(path=path, names=", ".join(MOVIELENS_FILES)))
    return files


def _read_table(path: Path, sep: str, columns: Sequence[str], n_fields: int, encoding: str) -> "pd.DataFrame":
    """Read a headerless ``sep``-separated file, checking the field count of every line
    (a file with another separator fails on line 1, naming the separator expected)."""
    import pandas as pd

    raw = read_bytes(path)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not {encoding} text (undecodable byte at offset {exc.start})") from None
    lines = [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise DataError(NO_ROWS.format(path=path))
    for lineno, line in lines:
        got = line.count(sep) + 1
        if got != n_fields:
            hint = ""
            for other in ("\t", "|", ",", ";", " "):
                if other != sep and line.count(other) + 1 == n_fields:
                    hint = f" (it looks {_SEP_NAMES.get(other, repr(other))}-separated)"
                    break
            raise DataError(
                BAD_FIELDS.format(path=path, expected=n_fields, sep=_SEP_NAMES[sep], line=lineno, got=got, hint=hint)
            )
    body = io.StringIO("\n".join(line for _, line in lines))
    usecols = list(range(len(columns)))
    return pd.read_csv(
        body,
        sep=sep,
        header=None,
        names=None,
        usecols=usecols,
        dtype=None,
        keep_default_na=False,
        na_values=[""],
        quoting=3,
    ).set_axis(list(columns), axis=1)


def load_movielens(paths: Sequence[Path | str]) -> "pd.DataFrame":
    """Ratings joined with users and item titles: one row per rating (``RATING_COLUMNS``).

    Raises ``DataError`` for a missing file, a wrong separator or field count, an undecodable
    file, or a user listed twice in u.user. Values are parsed as pandas infers them (a stray
    text id leaves the column as text, for the contract to report); unknown user/item ids
    leave NaN attributes, which the contract reports."""
    files = movielens_files(paths)
    ratings = _read_table(files["u.data"], "\t", ("user_id", "item_id", "rating", "timestamp"), 4, "utf-8")
    users = _read_table(files["u.user"], "|", ("user_id", "age", "gender", "occupation"), 5, "utf-8")
    items = _read_table(files["u.item"], "|", ("item_id", "title"), 24, "latin-1")
    return join_ratings(ratings, users, items, files["u.user"])
