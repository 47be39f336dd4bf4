"""A starting ``contract.yaml`` and preset from a profile of a data file (``impactflow init``).

Pure: reads the file with pandas/pyarrow, writes nothing (``flows/cli.py`` writes the texts).
What it guesses, the user reviews; the contract it writes loads with ``get_contract`` and meets
its own generated suite on the file it was profiled from (tests/data_contracts/test_profile.py):

- ``read:``: format (parquet by suffix, else delimited; gzip by its bytes), encoding (utf-8, else
  latin-1), delimiter (``csv.Sniffer`` among , ; tab |), header (the label names a column of the
  first row), NA tokens (those of a fixed list that occur);
- per column: ``integer`` / ``number`` (every value parses) with the observed range, ``category``
  with its observed values (at most ``MAX_CATEGORIES``; the label and the sensitive columns
  always), else ``text``; ``max_missing`` = the observed share, rounded up;
- a numeric sensitive column (e.g. age) becomes a derived ``<name>_band`` split at its median;
- columns that look like identifiers (``impactflow.data_contracts.pii`` rules, or a distinct value per row)
  are excluded from the features, with a ``# REVIEW`` comment;
- ``min_group_size`` 30, lowered to the smallest group when one is smaller (a review line says so).
"""

from __future__ import annotations

import csv
import gzip
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from impactflow.errors import ConfigError

NA_CANDIDATES = ("", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "?", "-")
DELIMITERS = ",;\t|"
MAX_CATEGORIES = 50  # distinct values above which a text column is free text, not a category
SAMPLE_BYTES = 256 * 1024
DEFAULT_MIN_GROUP = 30
POSITIVE_WORDS = ("1", "yes", "true", "y", "t", "positive", "pos")


@dataclass
class Profile:
    """What ``init`` writes and prints."""

    contract_yaml: str
    preset_yaml: str
    review: list[str] = field(default_factory=list)
    name: str = ""
    sensitive: tuple[str, ...] = ()


def _fail(path: Path, problem: str) -> ConfigError:
    return ConfigError(f"{path}: {problem}")


def _head(path: Path) -> tuple[bytes, bool]:
    with open(path, "rb") as f:
        raw = f.read(SAMPLE_BYTES)
    if raw[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as f:
            return f.read(SAMPLE_BYTES), True
    return raw, False


def sniff_read(path: Path, label: str) -> dict[str, Any]:
    """The ``read:`` block for ``path`` (a guess from its first bytes)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        return {"format": "parquet"}
    raw, _ = _head(path)
    if b"\x00" in raw:
        raise _fail(path, "looks binary (not CSV/TSV text); give a .parquet file or a delimited text file")
    for encoding in ("utf-8", "latin-1"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError as exc:
            if exc.start >= len(raw) - 4:  # a character cut by the sample's end
                text = raw[: exc.start].decode(encoding)
                break
    lines = [ln for ln in text.splitlines()[:200] if ln.strip()]
    if len(lines) < 2:
        raise _fail(path, "fewer than two non-empty lines: nothing to profile")
    sample = "\n".join(lines)
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:  # the delimiter whose count is the same on most lines

        def score(d: str) -> tuple[int, int]:
            counts = [ln.count(d) for ln in lines]
            return (max(counts.count(c) for c in set(counts)) if min(counts) else 0, counts[0])

        delimiter = max(DELIMITERS, key=score)
    first = next(csv.reader([lines[0]], delimiter=delimiter))
    if label in [c.strip() for c in first]:
        header = True
    elif re.fullmatch(r"col\d+", label):  # the names init gives the columns of a file without a header
        header = False
    else:
        try:
            header = csv.Sniffer().has_header(sample)
        except csv.Error:
            header = True
    skip_space = all(c.startswith(" ") for c in first[1:]) if len(first) > 1 else False
    out: dict[str, Any] = {"format": "tsv" if delimiter == "\t" else "csv"}
    if delimiter not in (",", "\t"):
        out["delimiter"] = delimiter
    out["header"] = bool(header)
    if encoding != "utf-8":
        out["encoding"] = encoding
    if skip_space:
        out["skip_initial_space"] = True
    return out


def _read_strings(path: Path, read: dict[str, Any]):
    """Every cell as text (nothing missing yet), with the column names the contract will use."""
    import pandas as pd

    if read["format"] == "parquet":
        df = pd.read_parquet(path)
        return df, [str(c) for c in df.columns]
    sep = read.get("delimiter", "\t" if read["format"] == "tsv" else ",")
    try:
        df = pd.read_csv(
            path,
            sep=sep,
            header=0 if read["header"] else None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding=read.get("encoding", "utf-8"),
            compression="infer",
            skipinitialspace=read.get("skip_initial_space", False),
            skip_blank_lines=True,
        )
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"could not be read as {read['format']} with delimiter {sep!r}: {exc}") from None
    if not read["header"]:
        df.columns = [f"col{i + 1}" for i in range(df.shape[1])]
    return df, [str(c) for c in df.columns]


def _number_fmt(x: float) -> Any:
    return int(x) if float(x).is_integer() else float(x)


def _round_up(share: float) -> float:
    return min(1.0, math.ceil(round(share * 100, 6)) / 100)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _flow(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True, sort_keys=False).strip()
    return text[:-3].strip() if text.endswith("\n...") else text


def profile_file(
    path: Path | str,
    label: str,
    sensitive: Sequence[str],
    *,
    name: str | None = None,
    positive_label: str | None = None,
    favourable: str | None = None,
    contract_ref: str = "contract.yaml",
    data_ref: str | None = None,
    min_group_size: int | None = None,
) -> Profile:
    """Profile ``path`` and return the contract, the preset (``contract_ref`` / ``data_ref``: how
    the preset names the contract and the data, relative to where the user runs) and the review
    lines. One ``ConfigError`` line for anything it cannot do (an unknown column, a one-value label)."""
    import pandas as pd

    from impactflow.data_contracts import pii
    from impactflow.data_contracts.spec import did_you_mean

    path = Path(path)
    if not path.is_file():
        raise _fail(path, "not found (or not a regular file)")
    read = sniff_read(path, label)
    df, columns = _read_strings(path, read)
    if len(df) == 0:
        raise _fail(path, "no data rows")
    if len(set(columns)) != len(columns):
        raise _fail(path, f"repeated column names: {sorted({c for c in columns if columns.count(c) > 1})}")
    for key, col in [("--label", label), *(("--sensitive", s) for s in sensitive)]:
        if col not in columns:
            raise ConfigError(
                f"{key} {col!r}: not a column of {path}{did_you_mean(col, columns)} (columns: {', '.join(columns)})"
            )
    if label in sensitive:
        raise ConfigError(f"--sensitive {label!r}: the label cannot also be a sensitive column")
    review: list[str] = []

    # NA tokens: those of the fixed list that occur (a parquet file has its own nulls)
    na_tokens: list[str] = []
    if read["format"] != "parquet":
        present = set()
        for c in columns:
            present |= set(df[c].unique().tolist()) & set(NA_CANDIDATES)
        na_tokens = [t for t in NA_CANDIDATES if t in present or t == ""]
        read["na_values"] = na_tokens
        if set(na_tokens) - {""}:
            review.append(
                f"read.na_values: {', '.join(repr(t) for t in na_tokens)} read as missing; remove any "
                "that is a real value in your data"
            )
        missing = df.isin(na_tokens)
    else:
        missing = df.isna()

    column_lines: list[str] = []
    derived_lines: list[str] = []
    specs: dict[str, dict[str, Any]] = {}
    excluded: list[str] = []
    n = len(df)
    # identifiers: the PII scan's rules, and one distinct value per row
    values_only = df.where(~missing, None)
    findings = {f.column: f for f in pii.scan(values_only, [c for c in columns if c not in (label, *sensitive)])}
    for c in columns:
        s = df[c][~missing[c]]
        comments: list[str] = []
        share = float(missing[c].mean())
        as_text = s.astype(str)
        numbers = (
            pd.to_numeric(as_text, errors="coerce")
            if read["format"] != "parquet"
            else (
                s
                if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
                else pd.to_numeric(as_text, errors="coerce")
            )
        )
        numeric = len(s) > 0 and bool(numbers.notna().all())
        distinct = as_text.nunique()
        spec: dict[str, Any]
        if c == label or c in sensitive or (not numeric and distinct <= MAX_CATEGORIES):
            if c in sensitive and numeric and distinct > 10:
                spec = {
                    "type": "integer" if (numbers % 1 == 0).all() else "number",
                    "min": _number_fmt(numbers.min()),
                    "max": _number_fmt(numbers.max()),
                }
            else:
                # most frequent first; equal counts in the order first seen
                counts = as_text.value_counts(sort=False).sort_values(ascending=False, kind="stable")
                if c != label and c not in sensitive:
                    pass
                elif distinct > MAX_CATEGORIES:
                    raise ConfigError(
                        f"{'--label' if c == label else '--sensitive'} {c!r}: {distinct} distinct values "
                        f"in {path}; a label or sensitive column needs a few groups"
                    )
                spec = {"type": "category", "values": [str(v) for v in counts.index]}
        elif numeric:
            spec = {
                "type": "integer" if (numbers % 1 == 0).all() else "number",
                "min": _number_fmt(numbers.min()),
                "max": _number_fmt(numbers.max()),
            }
            comments.append(f"observed range {spec['min']}..{spec['max']}: widen it to what you expect")
        else:
            spec = {"type": "text"}
            comments.append(f"{distinct} distinct values: free text, not a model input (a category lists its values)")
        if share > 0:
            spec["max_missing"] = _round_up(share)
            if c == label or c in sensitive:
                review.append(
                    f"columns.{c}: {int(missing[c].sum())} missing values, but a label or sensitive column may "
                    "not miss values: the contract will fail on this file until they are filled or dropped"
                )
                spec.pop("max_missing")
        ident = None
        if c in findings:
            ident = pii.RULE_TEXT.get(findings[c].rule, findings[c].rule)
        elif c not in (label, *sensitive) and n >= 20 and distinct == n and share == 0 and spec["type"] != "number":
            ident = "a different value in every row"
        if ident:
            comments = [
                f"REVIEW: looks like an identifier ({ident}): kept out of the model's features; "
                "delete the column from your data if the model must never see it"
            ]
            excluded.append(c)
            review.append(f"columns.{c}: looks like an identifier ({ident}); excluded from the features")
        specs[c] = spec
        for com in comments:
            column_lines.append(f"  # {com}")
        column_lines.append(f"  {_yaml_key(c)}: {_flow(spec)}")

    # sensitive columns: numeric ones get a derived band at the median
    audited: list[str] = []
    for c in sensitive:
        spec = specs[c]
        if spec["type"] == "category":
            audited.append(c)
            continue
        numbers = pd.to_numeric(df[c][~missing[c]], errors="coerce")
        edge = _median_edge(numbers, spec["type"])
        band = f"{_SAFE.sub('_', c)}_band"
        while band in specs:
            band += "_"
        derived_lines.append(
            f"  # REVIEW: {c} is numeric; audited as two groups split at its median {edge}: "
            "choose edges that mean something for your population"
        )
        derived_lines.append(f"  {_yaml_key(band)}: {_flow({'from': c, 'bins': [edge]})}")
        audited.append(band)
        review.append(f"derived.{band}: the sensitive column {c!r} is numeric: audited as bins split at {edge}")

    # group sizes
    smallest = None
    for c in sensitive:
        if specs[c]["type"] == "category":
            sizes = df[c][~missing[c]].astype(str).value_counts()
        else:
            numbers = pd.to_numeric(df[c][~missing[c]], errors="coerce")
            edge = _median_edge(numbers, specs[c]["type"])
            sizes = pd.Series([(numbers < edge).sum(), (numbers >= edge).sum()])
        m = int(sizes.min())
        smallest = m if smallest is None else min(smallest, m)
    mgs = min_group_size or DEFAULT_MIN_GROUP
    if smallest is not None and smallest < mgs and not min_group_size:
        review.append(
            f"min_group_size: lowered from {mgs} to {smallest}, the smallest group's size in this file; "
            "results for groups that small are noisy"
        )
        mgs = max(1, smallest)

    # label roles
    labels = specs[label].get("values", [])
    if specs[label]["type"] != "category" or len(labels) < 2:
        raise ConfigError(
            f"--label {label!r}: {len(labels)} distinct value(s) in {path}; a classifier needs at least two"
        )
    if positive_label is None:
        by_word = [v for v in labels if v.strip().lower() in POSITIVE_WORDS]
        positive_label = by_word[0] if by_word else labels[-1]  # else the rarest label
        review.append(f"positive_label: {positive_label!r} guessed (the class the scores predict); check it")
    elif str(positive_label) not in labels:
        raise ConfigError(
            f"--positive-label {positive_label!r}: not a value of {label!r} (values: {', '.join(labels)})"
        )
    if favourable is None:
        favourable = positive_label
        review.append(
            f"favourable_outcome: {favourable!r} assumed to be the outcome that is good for the person "
            "(a granted loan, not a risk flag); change it if not"
        )
    elif str(favourable) not in labels:
        raise ConfigError(f"--favourable {favourable!r}: not a value of {label!r} (values: {', '.join(labels)})")

    name = name or _SAFE.sub("_", path.name.split(".")[0]).strip("._-") or "my_data"
    lines = [
        f"# Written by `impactflow init` from {path.name} ({n} rows): a starting point to review.",
        "# Reference of every key: docs/own-data.md. Categories and ranges are what this file holds.",
        f"name: {_flow(name)}",
        'source: "REVIEW: where the data comes from"',
        'license: "REVIEW: its licence"',
        f"read: {_flow(read)}",
        "columns:",
        *column_lines,
    ]
    if derived_lines:
        lines += ["derived:", *derived_lines]
    lines += [
        f"target: {_flow(label)}",
        f"positive_label: {_flow(str(positive_label))}",
        "# REVIEW: the outcome that is good for the person (selection-rate checks use it)",
        f"favourable_outcome: {_flow(str(favourable))}",
        f"sensitive: {_flow(audited)}",
        f"min_group_size: {mgs}",
    ]
    if excluded:
        lines.append(f"exclude_from_features: {_flow(excluded)}")
    contract_yaml = "\n".join(lines) + "\n"

    preset = [
        "# Written by `impactflow init`: run it with  impactflow run --config <this file>",
        "extends: tabular",
        f"description: {_flow(f'{name}: a first audited run on my own data')}",
        "data:",
        f"  contract: {_flow(contract_ref)}",
        f"  path: {_flow(data_ref or str(path))}",
        "model:",
        "  baselines: [logreg]",
        "gates:",
        "  fairness:",
        f"    intersections: {_flow([audited]) if len(audited) > 1 else 'null'}",
        "use:  # REVIEW: what the model is for (report sections 3 and 9)",
        f"  purpose: {_flow('REVIEW: what the model decides, for whom')}",
        "  intended_users: []",
        "  out_of_scope_uses: []",
        "  affected_groups: []",
        '  decision_type: ""',
        '  human_review: ""',
        "  affected_jobs: []",
        "  training_needs: []",
        "tracking:",
        "  output_dir: impactflow_runs",
    ]
    return Profile(
        contract_yaml=contract_yaml,
        preset_yaml="\n".join(preset) + "\n",
        review=review,
        name=name,
        sensitive=tuple(audited),
    )


def _median_edge(numbers, ctype: str) -> Any:
    """The median as a bin edge; a whole number for an integer column (rounded up: ``x >= edge``)."""
    median = float(numbers.median())
    return math.ceil(median) if ctype == "integer" else _number_fmt(median)


def _yaml_key(name: str) -> str:
    return _flow(name)
