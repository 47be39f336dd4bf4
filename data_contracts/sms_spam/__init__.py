"""SMS Spam Collection v.1: the loader of its file. Roles live in contract.yaml, expectations in
expectations.json, licence and hashes in ATTRIBUTION.md (all in this folder)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from impactflow.errors import DataError
from impactflow.data_contracts.files import NO_ROWS, _decode, read_bytes

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["load_sms_spam", "parse_tab_lines", "NO_TAB"]

NO_TAB = "{path}: line {line} has no TAB: expected 'label<TAB>message' (is the label column missing?)"


def parse_tab_lines(path: Path, text: str) -> list[tuple[str, str]]:
    """``label<TAB>message`` lines -> (label, message) pairs, split on the *first* TAB only
    (messages contain quotes and may contain TABs; a CSV reader would merge rows).
    Blank lines are skipped; a line without a TAB is an error naming the line."""
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        label, sep, message = line.partition("\t")
        if not sep:
            raise DataError(NO_TAB.format(path=path, line=lineno))
        rows.append((label.strip(), message))
    if not rows:
        raise DataError(NO_ROWS.format(path=path))
    return rows


def load_sms_spam(paths: Sequence[Path | str]) -> pd.DataFrame:
    """Read SMSSpamCollection files (plain or gzip, UTF-8, ``label<TAB>message`` per line) into
    columns ``label``, ``message`` and drop repeated messages (first occurrence kept).

    De-duplication happens *before* any split: the file has 5,574 lines but only 5,171
    distinct messages, and a message in both train and test inflates accuracy and breaks the
    members/non-members premise of membership inference. ``df.attrs["duplicates_dropped"]``
    says how many lines were dropped. Labels and messages are not otherwise changed: an unknown
    label or an empty message stays visible to the contract. ``DataError`` for a missing,
    empty, non-UTF-8 file or a line without a TAB.
    """
    import pandas as pd

    files = [Path(p) for p in paths]
    if not files:
        raise DataError("no data files given")
    rows: list[tuple[str, str]] = []
    for p in files:
        rows += parse_tab_lines(p, _decode(p, read_bytes(p)))
    df = pd.DataFrame(rows, columns=["label", "message"])
    before = len(df)
    df = df.drop_duplicates(subset="message", keep="first").reset_index(drop=True)
    df.attrs["duplicates_dropped"] = before - len(df)
    return df
