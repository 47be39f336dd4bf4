"""The contract of a predictions table audited by ``impactflow audit`` (a model not trained here).

The table has a label column, a score column (P(y = 1), in [0, 1]) or a hard-prediction column,
and one or more sensitive columns; other columns are ignored. The GX suite is built from the
command's arguments (``predictions_suite``) and run by the same machinery as every dataset
contract (``impactflow.data_contracts.validation.validate`` with a ``Contract`` made here):
columns exist, at least one row, label/score/prediction not null, label and prediction binary
(within the two label values), score between 0 and 1, every sensitive group at least
``min_group_size`` rows (one row-conditioned ``expect_table_row_count_to_be_between`` each).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from impactflow.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from impactflow.data_contracts import Contract

MISSING_COLUMNS = "{path}: missing column(s) {missing} (the table has {n} column(s){close})"


def read_table(path: Path | str) -> "pd.DataFrame":
    """A CSV (optionally gzipped) or Parquet file as a DataFrame; DataError with the path."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if ".parquet" in suffixes or ".pq" in suffixes:
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path)
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        from impactflow.data_contracts.files import parse_reason

        raise DataError(
            f"{path}: cannot be read as {'Parquet' if '.parquet' in suffixes else 'CSV'} "
            f"({type(exc).__name__}: {parse_reason(exc)})"
        ) from None
    if df.empty:
        raise DataError(f"{path}: the table has no rows")
    df.columns = [str(c) for c in df.columns]
    return df


def require_columns(df: "pd.DataFrame", columns: Sequence[str], path: Path | str) -> None:
    """DataError naming the missing columns. The table's header is not listed (a file given by
    mistake, e.g. a credentials file, would have its first line quoted into errors and MLflow
    tags): only columns close to a missing name are suggested (``'Score'`` for ``score``)."""
    import difflib

    missing = [c for c in columns if c not in df.columns]
    if missing:
        names = [str(c) for c in df.columns]
        close = sorted({m for c in missing for m in difflib.get_close_matches(str(c), names, n=3, cutoff=0.8)})
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise DataError(
            MISSING_COLUMNS.format(path=path, missing=", ".join(repr(m) for m in missing), n=len(names), close=hint)
        )


def parse_sensitive(value: str | Sequence[str]) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    cols = [c.strip() for item in items for c in str(item).split(",") if c.strip()]
    if not cols:
        raise ConfigError("--sensitive: give at least one column (COL or COL1,COL2)")
    if len(set(cols)) != len(cols):
        raise ConfigError(f"--sensitive: a column is listed twice: {cols}")
    return cols


def _key(v: Any) -> str:
    return str(v).strip()


def label_values(df: "pd.DataFrame", label: str, positive_label: str | None) -> tuple[list[Any], Any]:
    """(allowed label values, the positive one). Without ``positive_label`` labels must be 0/1
    (1 positive); with it, the column may hold it and exactly one other value."""
    observed = list(df[label].dropna().unique())
    if positive_label is None:
        return [0, 1, "0", "1"], 1
    pos = [v for v in observed if _key(v) == _key(positive_label)]
    if not pos:
        raise DataError(
            f"column {label!r}: positive label {positive_label!r} does not occur "
            f"(values: {', '.join(map(repr, observed[:6]))})"
        )
    others = [v for v in observed if _key(v) != _key(positive_label)]
    return [pos[0], *others[:1]], pos[0]


def binarize(series: "pd.Series", positive: Any) -> "pd.Series":
    """1 where the value equals the positive label (compared as text: '1' == 1), else 0."""
    return (series.map(_key) == _key(positive)).astype(int)


def sensitive_as_text(df: "pd.DataFrame", sensitive: Sequence[str]) -> "pd.DataFrame":
    """Sensitive columns as text (missing stays missing), so groups and row conditions agree."""
    out = df.copy()
    for c in sensitive:
        s = out[c]
        out[c] = s.astype(object).where(s.isna(), s.map(_key))
    return out


def predictions_suite(
    df: "pd.DataFrame",
    *,
    name: str,
    label: str,
    label_set: list[Any],
    score: str | None,
    prediction: str | None,
    sensitive: Sequence[str],
    min_group_size: int,
) -> dict[str, Any]:
    """The GX 1.x suite (JSON dict) for a predictions table: see the module docstring.
    ``df`` must already have its sensitive columns as text (``sensitive_as_text``)."""
    roles = [label, *(c for c in (score, prediction) if c), *sensitive]
    exps: list[dict[str, Any]] = [{"type": "expect_column_to_exist", "kwargs": {"column": c}} for c in roles]
    exps.append({"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}})
    for c in [label, *(x for x in (score, prediction) if x)]:
        exps.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c}})
    exps.append(
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": label, "value_set": _json_values(label_set)},
            "meta": {"notes": "binary label: the positive label and one other value"},
        }
    )
    if score:
        exps.append(
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": score, "min_value": 0.0, "max_value": 1.0},
                "meta": {"notes": "score = P(y = 1), a probability"},
            }
        )
    if prediction:
        exps.append(
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": prediction, "value_set": _json_values(label_set)},
                "meta": {"notes": "hard predictions in the label's values"},
            }
        )
    for c in sensitive:
        values = sorted({v for v in df[c].dropna().unique()})
        exps.append({"type": "expect_column_values_to_be_in_set", "kwargs": {"column": c, "value_set": values}})
        for v in values:
            exps.append(
                {
                    "type": "expect_table_row_count_to_be_between",
                    # GX renders descriptions as HTML: the column and value are data, escaped here
                    # (validation._failure unescapes them for messages)
                    "description": f"Sensitive group {html.escape(str(c))} == {html.escape(str(v))}: "
                    f"at least {min_group_size} rows",
                    "kwargs": {
                        "min_value": int(min_group_size),
                        "row_condition": {
                            "type": "comparison",
                            "column": {"name": c},
                            "operator": "==",
                            "parameter": v,
                        },
                    },
                    "meta": {"impactflow_check": "min_group_count", "group": {"column": c, "value": v}},
                }
            )
    return {"name": name, "expectations": exps, "meta": {"built_by": "impactflow audit (from its arguments)"}}


def _json_values(values: list[Any]) -> list[Any]:
    out = []
    for v in values:
        if hasattr(v, "item"):
            v = v.item()
        out.append(v)
    return out


def predictions_contract(
    *,
    name: str,
    label: str,
    positive_label: Any,
    sensitive: Sequence[str],
    min_group_size: int,
    suite_path: Path,
    source: str,
    columns: Sequence[str],
) -> "Contract":
    """A ``Contract`` for ``validation.validate`` around a suite written to ``suite_path``."""
    from impactflow.data_contracts import Contract

    def _no_loader(paths):  # the table is read by read_table; a contract needs a loader field
        raise RuntimeError(
            f"contract {name!r} describes a predictions table read by read_table(); it has no file loader"
        )

    return Contract(
        name=name,
        target=label,
        positive_label=None if positive_label is None else str(positive_label),
        labels=(),
        sensitive=tuple(sensitive),
        weight=None,
        exclude_from_features=(),
        categorical=(),
        numeric=(),
        min_group_size=int(min_group_size),
        default_files=(),
        suite_path=Path(suite_path),
        source=source,
        license="unknown (table supplied by the user)",
        loader=_no_loader,
        columns=tuple(columns),
    )


def write_suite(suite: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(suite, indent=2, default=str) + "\n", encoding="utf-8")
    return path
