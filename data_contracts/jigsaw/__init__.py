"""Jigsaw / Conversation AI identity-term bias sets (Dixon et al. 2018): the loader, the
identity-term list and the held-out template sentences. Roles live in contract.yaml,
expectations in expectations.json, licence, hashes and a content warning in ATTRIBUTION.md.

How the files map onto the pipeline (the ``toxicity`` preset):

- ``bias_madlibs_77k.csv`` (templated sentences, labels BAD / NOT_BAD) is split once, by a
  stable hash of each sentence, into a **training part** (``MADLIBS_TRAIN_SHARE``, returned
  by the loader with ``split = "train"``; the pipeline draws its validation rows from it) and
  a **template part** that the model never sees, used by the Dixon template test
  (``madlibs_template_set``).
- ``toxicity_nonfuzzed_testset.csv`` (real Wikipedia talk comments) is the **official test
  set**: the loader marks it ``split = "test"`` and the contract names ``split`` as its
  ``split_column``, so every evaluation, audit and membership-inference non-member is a real
  comment, never a template.
- ``toxicity_fuzzed_testset.csv`` (the same comments with identity terms swapped) is joined on
  ``rev_id`` as ``text_fuzzed``: a natural counterfactual twin of each test comment.
"""

from __future__ import annotations

import functools
import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from impactflow.errors import DataError
from impactflow.data_contracts.files import NO_ROWS, UNPARSABLE, _decode, parse_reason, read_bytes

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "load_jigsaw",
    "identity_terms",
    "madlibs_template_set",
    "in_training_part",
    "MADLIBS_TRAIN_SHARE",
    "TERMS_FILE",
    "MADLIBS_FILE",
]

HERE = Path(__file__).resolve().parent
TERMS_FILE = HERE / "adjectives_people.txt.gz"
MADLIBS_FILE = HERE / "bias_madlibs_77k.csv.gz"
#: Share of the madlibs sentences the toxicity model trains on (by a stable hash of the text);
#: the rest is the held-out template set of the Dixon test.
MADLIBS_TRAIN_SHARE = 0.2
MADLIBS_COLUMNS = ("Text", "Label", "Template")
COMMENT_COLUMNS = ("rev_id", "comment", "toxic")
LABELS = {"BAD": "toxic", "NOT_BAD": "non_toxic", "True": "toxic", "False": "non_toxic"}
UNKNOWN_FORMAT = (
    "{path}: its header ({header} column(s), not quoted: the file may not be a table) is neither the "
    "madlibs format {madlibs} nor the comments format "
    "{comments} (missing label or text column?)"
)
TWIN_MISMATCH = "{path}: its rev_ids differ from the test comments' ({n} not matched): not the fuzzed twin"


def in_training_part(text: str) -> bool:
    """Stable (seed-free, platform-free) assignment of a madlibs sentence to the training part."""
    bucket = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") / 2**32
    return bucket < MADLIBS_TRAIN_SHARE


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    text = _decode(path, read_bytes(path))
    if not text.strip():
        raise DataError(NO_ROWS.format(path=path))
    try:  # real CSV parsing: comments are quoted fields containing newlines
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(UNPARSABLE.format(path=path, reason=parse_reason(exc))) from None
    if df.empty:
        raise DataError(NO_ROWS.format(path=path))
    return df


def _kind(df: pd.DataFrame, path: Path) -> str:
    cols = set(df.columns)
    if set(MADLIBS_COLUMNS[:2]) <= cols:
        return "madlibs"
    if set(COMMENT_COLUMNS) <= cols:
        return "comments"
    raise DataError(
        UNKNOWN_FORMAT.format(
            path=path, header=len(df.columns), madlibs=list(MADLIBS_COLUMNS), comments=list(COMMENT_COLUMNS)
        )
    )


def load_jigsaw(paths: Sequence[Path | str]) -> pd.DataFrame:
    """Read the madlibs file(s) and the comment test file(s) into one frame with columns
    ``text``, ``label`` (``toxic`` / ``non_toxic``), ``split`` (``train`` / ``test``) and
    ``text_fuzzed`` (the fuzzed twin of a test comment; null for training rows).

    The file kind is recognised by its header. Madlibs rows are kept only when
    ``in_training_part``; the first comments file is the test set, a second comments file
    with the same ``rev_id``s is its fuzzed twin. Labels BAD/True -> ``toxic``, NOT_BAD/False
    -> ``non_toxic``; any other value is kept as is for the contract to report. Repeated
    texts within the training part are dropped. ``DataError`` for a missing, empty, non-UTF-8
    or unparsable file, or a header without the text/label columns.
    """
    import pandas as pd

    files = [Path(p) for p in paths]
    if not files:
        raise DataError("no data files given")
    train_parts, comments = [], []
    for p in files:
        df = _read_csv(p)
        if _kind(df, p) == "madlibs":
            keep = df["Text"].map(in_training_part)
            train_parts.append(pd.DataFrame({"text": df.loc[keep, "Text"], "label": df.loc[keep, "Label"]}))
        else:
            comments.append((p, df))
    frames = []
    if train_parts:
        train = pd.concat(train_parts, ignore_index=True).drop_duplicates(subset="text")
        train["split"] = "train"
        train["text_fuzzed"] = None
        frames.append(train)
    if comments:
        path0, test = comments[0]
        out = pd.DataFrame({"text": test["comment"], "label": test["toxic"], "split": "test"})
        out["text_fuzzed"] = None
        for path, twin in comments[1:2]:
            mapping = dict(zip(twin["rev_id"], twin["comment"]))
            fuzzed = test["rev_id"].map(mapping)
            if fuzzed.isna().any():
                raise DataError(TWIN_MISMATCH.format(path=path, n=int(fuzzed.isna().sum())))
            out["text_fuzzed"] = fuzzed.to_numpy()
        frames.append(out)
    df = pd.concat(frames, ignore_index=True)
    df["label"] = df["label"].map(lambda v: LABELS.get(v, v))
    return df[["text", "label", "split", "text_fuzzed"]].reset_index(drop=True)


@functools.cache
def identity_terms(path: Path | str = TERMS_FILE) -> tuple[str, ...]:
    """The identity terms of Dixon et al. 2018 (adjectives_people.txt: one per line), in file order."""
    p = Path(path)
    terms = [t.strip() for t in _decode(p, read_bytes(p)).splitlines() if t.strip()]
    if not terms:
        raise DataError(NO_ROWS.format(path=p))
    return tuple(terms)


@functools.cache
def madlibs_template_set(path: Path | str = MADLIBS_FILE) -> pd.DataFrame:
    """The held-out madlibs sentences (not ``in_training_part``): columns ``text`` and
    ``label`` (1 = BAD/toxic, 0 = NOT_BAD), duplicates dropped."""
    df = _read_csv(Path(path))
    held = df[~df["Text"].map(in_training_part)].drop_duplicates(subset="Text")
    out = held[["Text", "Label"]].rename(columns={"Text": "text", "Label": "label"})
    out["label"] = (out["label"] == "BAD").astype(int)
    return out.reset_index(drop=True)
