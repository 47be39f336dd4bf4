"""UCI Adult: its column names and a reader of its files (kept for callers and tests; the
contract itself reads the files with the generic loader, as contract.yaml declares). Roles,
types, domains and ranges live in contract.yaml -- the GX suite is generated from them --,
licence and hashes in ATTRIBUTION.md (all in this folder)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from impactflow.errors import DataError
from impactflow.data_contracts.files import concat_frames, file_sha256, read_uci_csv, sha256_files

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ADULT_COLUMNS", "load_uci_adult", "file_sha256", "sha256_files"]

HERE = Path(__file__).resolve().parent

#: The 15 columns of adult.data / adult.test, in file order (adult.names).
ADULT_COLUMNS: tuple[str, ...] = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)


def load_uci_adult(paths: Sequence[Path | str]) -> pd.DataFrame:
    """Read UCI Adult files (gzip or plain; headerless UCI format or a CSV with a header row)
    and concatenate them in order.

    ``?`` -> NaN, adult.test's ``|1x3 Cross validator`` line and blank lines skipped, label
    ``<=50K.`` -> ``<=50K``. No column is added and no dtype is forced: a bad value stays visible
    to the contract. Raises ``DataError`` for a missing, empty, truncated or ragged file.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("no data files given")
    frames = [read_uci_csv(p, ADULT_COLUMNS, label="income") for p in paths]
    return concat_frames(frames, paths)
